"""Ray Serve metrics of the app: request count and latency, queue time, frames decoded, batch sizes.

Created inside a replica (never at import). Ray Serve adds the ``deployment``, ``replica`` and
``application`` tags and exports them through each node's metrics agent in Prometheus format,
prefixed ``ray_`` (e.g. ``ray_videolmm_requests_total``).

| metric | kind | tags | recorded by |
|---|---|---|---|
| ``videolmm_requests_total`` | counter | model, status | ingress, one per HTTP request |
| ``videolmm_request_latency_s`` | histogram | model, status | ingress, whole request |
| ``videolmm_decode_latency_s`` | histogram | model | media deployment (fetch + decode) |
| ``videolmm_frames_decoded_total`` | counter | model | media deployment |
| ``videolmm_queue_time_s`` | histogram | model | model deployment, arrival → batch start |
| ``videolmm_batch_size`` | histogram | model | model deployment, per engine call |
| ``videolmm_generate_latency_s`` | histogram | model | model deployment, per engine call |
"""

from __future__ import annotations

from typing import Any

LATENCY_BOUNDARIES = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0]
BATCH_BOUNDARIES = [1, 2, 4, 8, 16, 32, 64, 128, 256]


def _histogram(name: str, description: str, boundaries: list[float], tags: tuple[str, ...]) -> Any:
    from ray.serve import metrics

    return metrics.Histogram(name, description=description, boundaries=boundaries, tag_keys=tags)


def _counter(name: str, description: str, tags: tuple[str, ...]) -> Any:
    from ray.serve import metrics

    return metrics.Counter(name, description=description, tag_keys=tags)


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

    def record(self, model: str, seconds: float, frames: int) -> None:
        """Record one decoded request."""
        tags = {"model": model}
        self.latency.observe(seconds, tags=tags)
        if frames:
            self.frames.inc(frames, tags=tags)


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

    def record_batch(self, model: str, queue_seconds: list[float], generate_seconds: float) -> None:
        """Record one engine call and the queue time of each of its requests."""
        tags = {"model": model}
        for seconds in queue_seconds:
            self.queue.observe(seconds, tags=tags)
        self.batch.observe(len(queue_seconds), tags=tags)
        self.generate.observe(generate_seconds, tags=tags)


__all__ = ["IngressMetrics", "MediaMetrics", "ModelMetrics"]
