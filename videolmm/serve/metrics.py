"""Ray Serve metrics of the app: request count and latency, queue time, frames decoded, batch sizes.

Created inside a replica (never at import). Ray Serve adds the ``deployment``, ``replica`` and
``application`` tags and exports them through each node's metrics agent in Prometheus format,
prefixed ``ray_`` (e.g. ``ray_videolmm_requests_total``).

| metric | kind | tags | recorded by |
|---|---|---|---|
| ``videolmm_requests_total`` | counter | model, status | ingress, one per HTTP request (499: client gone) |
| ``videolmm_request_latency_s`` | histogram | model, status | ingress, whole request |
| ``videolmm_decode_latency_s`` | histogram | model | media deployment (fetch + decode) |
| ``videolmm_frames_decoded_total`` | counter | model | media deployment |
| ``videolmm_frame_cache_hits_total`` | counter | model | media deployment: videos read back from the frame cache |
| ``videolmm_frame_cache_misses_total`` | counter | model | media deployment: cacheable videos decoded (then stored) |
| ``videolmm_queue_time_s`` | histogram | model | model deployment, arrival → batch start / admission |
| ``videolmm_batch_size`` | histogram | model | per engine call (static); per request, most running (continuous) |
| ``videolmm_generate_latency_s`` | histogram | model | per engine call (static); per request (continuous) |
| ``videolmm_time_to_first_token_s`` | histogram | model | per request, arrival at the model replica → first token |
| ``videolmm_inter_token_latency_s`` | histogram | model | per request, mean seconds between tokens after the first |
| ``videolmm_prompt_tokens_total`` | counter | model | model deployment (visual placeholders included) |
| ``videolmm_completion_tokens_total`` | counter | model | model deployment |
| ``videolmm_cancelled_total`` | counter | model | model deployment: caller went away, slot freed |
| ``videolmm_running_requests`` | gauge | model | continuous scheduler: requests in the running batch |
| ``videolmm_waiting_requests`` | gauge | model | continuous scheduler: requests waiting for a slot |
"""

from __future__ import annotations

from typing import Any

LATENCY_BOUNDARIES = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0]
BATCH_BOUNDARIES = [1, 2, 4, 8, 16, 32, 64, 128, 256]
TOKEN_BOUNDARIES = [0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5]


def _histogram(name: str, description: str, boundaries: list[float], tags: tuple[str, ...]) -> Any:
    from ray.serve import metrics

    return metrics.Histogram(name, description=description, boundaries=boundaries, tag_keys=tags)


def _counter(name: str, description: str, tags: tuple[str, ...]) -> Any:
    from ray.serve import metrics

    return metrics.Counter(name, description=description, tag_keys=tags)


def _gauge(name: str, description: str, tags: tuple[str, ...]) -> Any:
    from ray.serve import metrics

    return metrics.Gauge(name, description=description, tag_keys=tags)


class IngressMetrics:
    """Per HTTP request: count and latency by model and status code."""

    def __init__(self) -> None:
        self.requests = _counter("videolmm_requests_total", "HTTP requests by model and status.", ("model", "status"))
        self.latency = _histogram(
            "videolmm_request_latency_s", "Whole-request latency in seconds.", LATENCY_BOUNDARIES, ("model", "status")
        )

    def record(self, model: str, status: int, seconds: float) -> None:
        """Count one finished request."""
        tags = {"model": model or "-", "status": str(status)}
        self.requests.inc(1, tags=tags)
        self.latency.observe(seconds, tags=tags)


class MediaMetrics:
    """Per decoded request: fetch + decode latency and frames decoded."""

    def __init__(self) -> None:
        self.latency = _histogram(
            "videolmm_decode_latency_s", "Fetch + decode seconds per request.", LATENCY_BOUNDARIES, ("model",)
        )
        self.frames = _counter("videolmm_frames_decoded_total", "Video frames decoded.", ("model",))
        self.cache_hits = _counter("videolmm_frame_cache_hits_total", "Videos read from the frame cache.", ("model",))
        self.cache_misses = _counter(
            "videolmm_frame_cache_misses_total", "Cacheable videos decoded (then cached).", ("model",)
        )

    def record(self, model: str, seconds: float, frames: int) -> None:
        """Record one decoded request."""
        tags = {"model": model}
        self.latency.observe(seconds, tags=tags)
        if frames:
            self.frames.inc(frames, tags=tags)

    def record_cache(self, model: str, hits: int, misses: int) -> None:
        """Count frame-cache hits and misses since the last call for ``model``."""
        tags = {"model": model}
        if hits:
            self.cache_hits.inc(hits, tags=tags)
        if misses:
            self.cache_misses.inc(misses, tags=tags)


class ModelMetrics:
    """Per engine call: batch size and generate latency; per request: queue time."""

    def __init__(self) -> None:
        self.queue = _histogram(
            "videolmm_queue_time_s", "Seconds from arrival at the model replica to batch start.",
            LATENCY_BOUNDARIES, ("model",),
        )  # fmt: skip
        self.batch = _histogram("videolmm_batch_size", "Requests per engine call.", BATCH_BOUNDARIES, ("model",))
        self.generate = _histogram(
            "videolmm_generate_latency_s", "Seconds per engine call.", LATENCY_BOUNDARIES, ("model",)
        )

    def record_batch(
        self, model: str, queue_seconds: list[float], generate_seconds: float, batch_size: int | None = None
    ) -> None:
        """Record one engine call and the queue time of each of its requests (``batch_size``: the
        requests that ran together, when not ``len(queue_seconds)``: continuous batching)."""
        tags = {"model": model}
        for seconds in queue_seconds:
            self.queue.observe(seconds, tags=tags)
        self.batch.observe(batch_size if batch_size is not None else len(queue_seconds), tags=tags)
        self.generate.observe(generate_seconds, tags=tags)


class TokenMetrics:
    """Per request: time to first token, inter-token latency, token counts, cancels; per
    continuous scheduler step: running and waiting requests (gauges, set when they change)."""

    def __init__(self) -> None:
        self.ttft = _histogram(
            "videolmm_time_to_first_token_s", "Seconds from arrival at the model replica to the first token.",
            LATENCY_BOUNDARIES, ("model",),
        )  # fmt: skip
        self.itl = _histogram(
            "videolmm_inter_token_latency_s", "Per request, mean seconds between tokens after the first.",
            TOKEN_BOUNDARIES, ("model",),
        )  # fmt: skip
        self.prompt = _counter("videolmm_prompt_tokens_total", "Prompt tokens (visual included).", ("model",))
        self.completion = _counter("videolmm_completion_tokens_total", "Generated tokens.", ("model",))
        self.cancelled = _counter("videolmm_cancelled_total", "Requests cancelled by their caller.", ("model",))
        self.running = _gauge("videolmm_running_requests", "Requests in the running batch.", ("model",))
        self.waiting = _gauge("videolmm_waiting_requests", "Requests waiting for a slot.", ("model",))
        self._last: dict[str, tuple[int, int]] = {}

    def record_request(
        self, model: str, *, first_token_s: float | None, generate_s: float, prompt: int, completion: int
    ) -> None:
        """Record one finished request (``first_token_s``: arrival → first token; None: no token)."""
        tags = {"model": model}
        if first_token_s is not None and completion > 0:
            self.ttft.observe(first_token_s, tags=tags)
        if completion > 1:
            self.itl.observe(max(0.0, generate_s) / (completion - 1), tags=tags)
        if prompt:
            self.prompt.inc(prompt, tags=tags)
        if completion:
            self.completion.inc(completion, tags=tags)

    def record_cancel(self, model: str) -> None:
        """Count one request whose caller went away."""
        self.cancelled.inc(1, tags={"model": model})

    def record_step(self, model: str, running: int, waiting: int) -> None:
        """Set the scheduler gauges (only when they changed: called after every step)."""
        if self._last.get(model) == (running, waiting):
            return
        self._last[model] = (running, waiting)
        tags = {"model": model}
        self.running.set(running, tags=tags)
        self.waiting.set(waiting, tags=tags)


__all__ = ["IngressMetrics", "MediaMetrics", "ModelMetrics", "TokenMetrics"]
