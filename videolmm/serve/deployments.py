"""The two worker deployments: a CPU media decoder and the model server.

* :class:`MediaDecoder` fetches, checks and decodes a request's media into the core's
  :class:`~videolmm.models.engine.DecodedRequest` (frames sampled with the model's defaults, and
  resized to the model's input size where the job carries the model's
  :class:`~videolmm.media.resize.FrameResize`: ``media_resize``). It never imports transformers,
  torch only to resize, and autoscales on its own.
* :class:`ModelServer` runs the core :class:`~videolmm.models.engine.Engine`. Several engines
  stay loaded per replica (``@serve.multiplexed``, least recently used evicted; the ingress routes
  by the request's ``model`` with ``multiplexed_model_id``). An engine on the ``continuous``
  scheduler (the default) gets one :class:`~videolmm.models.scheduler.Scheduler`: requests join
  its running batch at the next step and leave at their own end, and :meth:`ModelServer.generate_stream`
  yields their text as it is generated; a caller that goes away cancels its request. Engines with
  ``scheduler: static`` are batched dynamically (``@serve.batch``; Serve splits batches by model id).

Both return :class:`~videolmm.serve.errors.ApiError` values for per-request failures instead of
raising across Ray; one bad request never fails another or the replica.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

from ray import serve

from videolmm.load import load_engine as load_core_engine
from videolmm.media.cache import CacheStats
from videolmm.media.resize import FrameResize, frame_resize_for
from videolmm.models.engine import DecodedRequest, Engine
from videolmm.models.scheduler import Scheduler
from videolmm.serve.config import ServeArgs
from videolmm.serve.context import batch_request_ids, set_batch_request_ids
from videolmm.serve.decode import MediaPipeline
from videolmm.serve.errors import ApiError, ServeError, internal_error, model_unavailable
from videolmm.serve.jobs import ChatJob, Generated
from videolmm.serve.metrics import MediaMetrics, ModelMetrics, TokenMetrics
from videolmm.tokens import separator_stop
from videolmm.types import Result

logger = logging.getLogger("ray.serve.videolmm")


class MediaStage:
    """Fetch → limits → decode + sample one job, recording the media metrics.

    What the MediaDecoder deployment runs, and the model replica itself with
    ``decode_in: model_replica``.

    Args:
        args: the app's configuration (its default frame counts are checked against the limits).
    """

    def __init__(self, args: ServeArgs) -> None:
        self.pipeline = MediaPipeline(args)
        self.pipeline.check_defaults()
        self.metrics = MediaMetrics()
        self._cache_seen: dict[str, CacheStats] = {}

    async def decode(self, job: ChatJob) -> DecodedRequest | ApiError:
        """Decode a job's media; a refused or broken input comes back as an :class:`ApiError`."""
        start = time.perf_counter()
        try:
            decoded = await self.pipeline.run(job)
        except ServeError as exc:
            logger.info("rid=%s media refused (%d): %s", job.request_id, exc.error.status, exc.error.message)
            return exc.error
        except Exception:  # a bug or an untyped library error: logged here, never its text in the answer
            logger.exception("rid=%s media stage failed", job.request_id)
            return internal_error(job.request_id, "the media stage")
        self.metrics.record(job.model_id, time.perf_counter() - start, sum(v.num_frames for v in decoded.videos))
        self._record_cache(job.model_id)
        return decoded

    def _record_cache(self, model_id: str) -> None:
        """Frame-cache hits and misses since the last request of ``model_id`` (its loader's counters)."""
        cache = self.pipeline.frame_loader(model_id).cache
        if cache is None:
            return
        now = cache.stats
        seen = self._cache_seen.get(model_id)
        self._cache_seen[model_id] = now
        hits, misses = now.hits - (seen.hits if seen else 0), now.misses - (seen.misses if seen else 0)
        self.metrics.record_cache(model_id, hits, misses)


@serve.deployment(name="MediaDecoder")
class MediaDecoder:
    """Fetch → limits → decode + sample, on CPU.

    Args:
        args: the app's configuration.
    """

    def __init__(self, args: ServeArgs) -> None:
        self.stage = MediaStage(args)
        if args.media_resize:
            # Imported while the replica starts (seconds), not in its first request. Each resize runs in
            # its request's decode thread, beside the others: one torch thread each.
            import torch
            import torchvision.transforms.v2.functional  # noqa: F401

            torch.set_num_threads(1)

    async def decode(self, job: ChatJob) -> DecodedRequest | ApiError:
        """Decode a job's media; a refused or broken input comes back as an :class:`ApiError`."""
        return await self.stage.decode(job)


_DONE = object()


@dataclass(frozen=True)
class _Pending:
    """A request waiting in the static path's batch queue."""

    item: DecodedRequest
    model_id: str
    arrived: float


class LoadedEngine:
    """An engine loaded in a model replica and, on the continuous scheduler, its
    :class:`~videolmm.models.scheduler.Scheduler` (closed when multiplexing evicts the engine:
    Serve calls ``__del__`` then).

    Args:
        engine: the loaded core engine.
        model_id: the served model it is.
        max_batch_size: running requests at most (``batching.max_batch_size``).
        metrics: records the scheduler's running and waiting counts after each step.
    """

    def __init__(self, engine: Engine, model_id: str, max_batch_size: int, metrics: TokenMetrics) -> None:
        self.engine = engine
        self.model_id = model_id
        self.metrics = metrics
        #: the running batch size after the last step (continuous)
        self.running = 0
        #: per request in flight, the most requests that ran beside it (continuous)
        self.peaks: dict[int, int] = {}
        self.lock = threading.Lock()
        #: the template's separator where it is text, a stop string as lmms-eval's path adds it
        self.separator = separator_stop(engine.template.stop, engine.processor.tokenizer)
        self.scheduler: Scheduler | None = None
        if engine.continuous:
            self.scheduler = Scheduler(engine, max_batch_size=max_batch_size, on_step=self._on_step)

    def with_separator_stop(self, item: DecodedRequest) -> DecodedRequest:
        """``item`` with :attr:`separator` among its stop strings (the seeds stop at the separator)."""
        gen = item.request.generation
        if not self.separator or self.separator in gen.stop:
            return item
        return replace(item, request=replace(item.request, generation=replace(gen, stop=(*gen.stop, self.separator))))

    def _on_step(self, running: int, waiting: int) -> None:
        """After every scheduler step, on its thread: never raise (it would stop the scheduler)."""
        try:
            self.running = running
            with self.lock:
                for key, peak in self.peaks.items():
                    if running > peak:
                        self.peaks[key] = running
            self.metrics.record_step(self.model_id, running, waiting)
        except Exception:  # metrics must never stop generation
            logger.debug("scheduler step metrics failed", exc_info=True)

    def close(self) -> None:
        """Stop the scheduler after its running requests (idempotent)."""
        if self.scheduler is not None:
            self.scheduler.close()

    def __del__(self) -> None:
        self.close()


@serve.deployment(name="ModelServer")
class ModelServer:
    """Multiplexed generation with the core engine: continuous batching (a scheduler per engine,
    token streaming) or, for ``scheduler: static`` engines, dynamic batches (``@serve.batch``).

    Args:
        args: the app's configuration (models, batching, engines per replica).
    """

    def __init__(self, args: ServeArgs) -> None:
        self.models = {m.model_id: m for m in args.models}
        self._described: dict[str, dict[str, Any]] | None = None
        self._resizes: dict[str, FrameResize | None] = {}
        self.metrics = ModelMetrics()
        self.tokens = TokenMetrics()
        self.generate_batch.set_max_batch_size(args.batching.max_batch_size)
        self.generate_batch.set_batch_wait_timeout_s(args.batching.batch_wait_timeout_s)
        models, tokens, max_batch_size = self.models, self.tokens, args.batching.max_batch_size

        async def load_engine(model_id: str) -> LoadedEngine:
            config = models[model_id]
            start = time.perf_counter()
            # videolmm.load hands the engine the plugin host's registry and hooks
            engine = await asyncio.to_thread(load_core_engine, config.engine)
            loaded = LoadedEngine(engine, model_id, max_batch_size, tokens)
            logger.info(
                "rids=%s loaded model %s from %s in %.1f s (%s scheduler)",
                list(batch_request_ids()),
                model_id,
                config.pretrained,
                time.perf_counter() - start,
                "continuous" if loaded.scheduler is not None else "static",
            )
            return loaded

        # Built here so the LRU size comes from the config (Ray LLM's pattern).
        self.engine = serve.multiplexed(max_num_models_per_replica=args.max_models_per_replica)(load_engine)
        # decode here, before batching: every request with decode_in: model_replica, else the requests the
        # ingress routes here (no or small local media: routing.DecodeRouter)
        self.media = MediaStage(args)

    async def describe_models(self) -> dict[str, dict[str, Any]]:
        """Per model: family, default frames, sampler and context length (vLLM's ``max_model_len``),
        from the resolved settings and the config, without loading weights; a model whose
        checkpoint cannot be read maps to ``{"error": ...}``. Cached: settings do not change."""
        if self._described is None:
            self._described = await asyncio.to_thread(self._describe_all)
        return self._described

    async def frame_resizes(self) -> dict[str, FrameResize | None]:
        """Per model: the resize its video processor does, for the MediaDecoder to run first
        (:func:`~videolmm.media.resize.frame_resize_for`: checked bit-exact on a probe clip), or
        None (not possible for its processor, or the checkpoint cannot be read). Computed with
        :meth:`describe_models`, without weights."""
        await self.describe_models()
        return dict(self._resizes)

    def _describe_all(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for model_id, config in self.models.items():
            try:
                engine = load_core_engine(config.engine, load_model=False)
            except Exception as exc:  # reported per model: /v1/models still lists the others
                logger.warning("describing model %s failed: %s", model_id, exc)
                out[model_id] = {"error": type(exc).__name__}
                self._resizes[model_id] = None
                continue
            try:
                self._resizes[model_id] = frame_resize_for(engine.processor)
            except Exception:  # the frames then travel at their decoded size: slower, never wrong
                logger.warning("model %s: no frame resize for the MediaDecoder", model_id, exc_info=True)
                self._resizes[model_id] = None
            logger.info("model %s: MediaDecoder frame resize %s", model_id, self._resizes[model_id])
            media = engine.settings.media
            out[model_id] = {
                "root": config.pretrained,
                "family": engine.settings.family,
                "num_frames": media.sampling.num_frames,
                "sampler": media.sampler,
                "max_model_len": engine.context_length,
            }
        return out

    async def generate(self, item: DecodedRequest | ChatJob | ApiError) -> Generated | ApiError:
        """Generate for one request and return its result.

        ``item`` is what the media stage made (Serve resolves the ingress's ``DecodedRequest``
        response here): a refusal (:class:`ApiError`) is passed back as it is; a :class:`ChatJob`
        is decoded here first (``decode_in: model_replica``, or no or small media: :mod:`~videolmm.serve.routing`).
        """
        out: Generated | ApiError | None = None
        async for event in self._events(item, stream=False):
            if not isinstance(event, str):
                out = event
        assert out is not None
        return out

    async def generate_stream(
        self, item: DecodedRequest | ChatJob | ApiError
    ) -> AsyncIterator[str | Generated | ApiError]:
        """Generate for one request, streaming (call with ``handle.options(stream=True)``).

        Yields text deltas (``str``) as they are generated, then the final :class:`Generated`
        (whose text is the deltas joined), or only an :class:`ApiError`. When the caller goes
        away (Serve cancels this call), the request is cancelled and its slot freed.
        """
        async for event in self._events(item, stream=True):
            yield event

    async def generate_job(self, job: ChatJob) -> Generated | ApiError:
        """Decode a job's media in this replica, then generate (``decode_in: model_replica``)."""
        return await self.generate(job)

    async def _events(
        self, item: DecodedRequest | ChatJob | ApiError, *, stream: bool
    ) -> AsyncIterator[str | Generated | ApiError]:
        arrived = time.perf_counter()
        if isinstance(item, ApiError):
            yield item
            return
        if isinstance(item, ChatJob):
            decoded = await self.media.decode(item)
            if isinstance(decoded, ApiError):
                yield decoded
                return
            item = decoded
            arrived = time.perf_counter()  # the decode has its own timing: queue starts after it
        rid = item.request.request_id
        model_id = serve.get_multiplexed_model_id()
        if model_id not in self.models:
            yield Generated(Result(request_id=rid, error=f"ConfigError: unknown model {model_id!r}"))
            return
        set_batch_request_ids((rid,))  # a model load this triggers logs it
        try:
            loaded = await self.engine(model_id)
        except Exception as exc:  # a model that cannot load fails this request (503), not the replica
            logger.exception("rids=%s model %s failed to load", [rid], model_id)
            yield _load_failed(model_id, exc, rid)
            return
        item = loaded.with_separator_stop(item)
        if loaded.scheduler is None:  # static: Serve's dynamic batches
            generated = await self.generate_batch(_Pending(item, model_id, arrived))
            if isinstance(generated, ApiError):
                yield generated
                return
            if stream and generated.result.ok and generated.result.text:
                yield generated.result.text
            yield generated
            return
        async for event in self._continuous(loaded, item, arrived, stream=stream):
            yield event

    async def _continuous(
        self, loaded: LoadedEngine, item: DecodedRequest, arrived: float, *, stream: bool
    ) -> AsyncIterator[str | Generated]:
        """Submit to the engine's scheduler; bridge its thread's deltas and result into this loop."""
        assert loaded.scheduler is not None
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[object] = asyncio.Queue()

        def post(value: object) -> None:  # on the scheduler's thread: never raise into it
            try:
                loop.call_soon_threadsafe(inbox.put_nowait, value)
            except RuntimeError:  # the loop is closed: the caller is gone
                pass

        rid, model_id = item.request.request_id, loaded.model_id
        try:
            ticket = loaded.scheduler.submit(item, post if stream else None)
        except RuntimeError:  # evicted and closed between lookup and submit: load it again
            loaded = await self.engine(model_id)
            assert loaded.scheduler is not None
            ticket = loaded.scheduler.submit(item, post if stream else None)
        key = id(ticket)
        with loaded.lock:
            loaded.peaks[key] = 1
        # the future is never cancelled from here (a cancelled Future would break the scheduler's set_result)
        ticket.future.add_done_callback(lambda _: post(_DONE))
        finished = False
        pieces = 0
        try:
            while True:
                value = await inbox.get()
                if value is _DONE:
                    break
                # coalesce without waiting: a chunk leaves as soon as there is text, and what piled up
                # meanwhile (a slow consumer, a fast model) leaves with it
                text, done = str(value), False
                while not inbox.empty():
                    value = inbox.get_nowait()
                    if value is _DONE:
                        done = True
                        break
                    text += str(value)
                if text:
                    pieces += 1
                    yield text
                if done:
                    break
            finished = True
        finally:
            with loaded.lock:
                peak = loaded.peaks.pop(key, 1)
            if not finished:
                ticket.cancel()
                self.tokens.record_cancel(model_id)
                logger.info("rids=%s model %s request cancelled: the caller went away; slot freed", [rid], model_id)
        result = ticket.future.result()
        elapsed = time.perf_counter() - arrived
        generate_s = result.timings.get("generate", 0.0)
        queued = max(0.0, elapsed - generate_s)
        first_token = result.timings.get("first_token")
        self.tokens.record_request(
            model_id,
            first_token_s=queued + first_token if first_token is not None else None,
            generate_s=generate_s - (first_token or 0.0),
            prompt=result.usage.prompt_tokens,
            completion=result.usage.completion_tokens,
        )
        if result.ok:
            self.metrics.record_batch(model_id, [queued], generate_s, batch_size=peak)
        logger.info(
            "rids=%s model %s generated %d tokens in %.3f s (continuous, up to %d running, %d chunks%s)",
            [rid], model_id, result.usage.completion_tokens, elapsed, peak, pieces,
            "" if result.ok else f", error {result.error}",
        )  # fmt: skip
        timings = {**result.timings, "queue": queued}
        if "preprocess_prefill" in timings:  # the response's stage names: preprocess (here with the prefill)
            timings["preprocess"] = timings.pop("preprocess_prefill")
        yield Generated(replace(result, timings=timings), peak)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def generate_batch(self, pending: list[_Pending]) -> list[Generated] | list[ApiError]:
        """One engine call for a batch of requests for the same model (Serve splits by model id)."""
        model_id = pending[0].model_id
        started = time.perf_counter()
        ids = [p.item.request.request_id for p in pending]
        set_batch_request_ids(tuple(ids))  # a model load these trigger logs them
        try:
            loaded = await self.engine(model_id)
        except Exception as exc:  # a model that cannot load fails these requests (503), not the replica
            logger.exception("rids=%s model %s failed to load", ids, model_id)
            return [_load_failed(model_id, exc, i) for i in ids]
        results = await asyncio.to_thread(
            loaded.engine.generate_static, [p.item for p in pending], batch_size=len(pending)
        )
        elapsed = time.perf_counter() - started
        queued = [started - p.arrived for p in pending]
        self.metrics.record_batch(model_id, queued, elapsed)
        for r in results:
            self.tokens.record_request(
                model_id, first_token_s=None, generate_s=0.0,
                prompt=r.usage.prompt_tokens, completion=r.usage.completion_tokens,
            )  # fmt: skip
        logger.info("rids=%s model %s generated a batch of %d in %.3f s", ids, model_id, len(pending), elapsed)
        return [
            Generated(replace(r, timings={**r.timings, "queue": q}), len(pending))
            for r, q in zip(results, queued, strict=True)
        ]


def _load_failed(model_id: str, exc: BaseException, rid: str) -> ApiError:
    """503 for a model whose checkpoint failed to load: the error's type, not its text (paths, hosts)."""
    return model_unavailable(
        model_id, f"its checkpoint failed to load ({type(exc).__name__}); the server log has the details under "
        f"request id {rid}",
    )  # fmt: skip


__all__ = ["LoadedEngine", "MediaDecoder", "ModelServer"]
