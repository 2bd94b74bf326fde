"""The two worker deployments: a CPU media decoder and the model server.

* :class:`MediaDecoder` fetches, checks and decodes a request's media into the core's
  :class:`~videolmm.models.engine.DecodedRequest` (frames sampled with the model's defaults).
  It imports neither torch nor transformers and autoscales on its own.
* :class:`ModelServer` runs the core :class:`~videolmm.models.engine.Engine`. Requests for the
  same model are batched dynamically (``@serve.batch``; Serve splits batches by model id) and
  several engines stay loaded per replica (``@serve.multiplexed``, least recently used evicted);
  the ingress routes by the request's ``model`` with ``multiplexed_model_id``.

Both return :class:`~videolmm.serve.errors.ApiError` values for per-request failures instead of
raising across Ray; one bad request never fails another or the replica.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, replace

from ray import serve

from videolmm.load import load_engine as load_core_engine
from videolmm.models.engine import DecodedRequest, Engine, error_text
from videolmm.serve.config import ServeArgs
from videolmm.serve.context import batch_request_ids, set_batch_request_ids
from videolmm.serve.decode import MediaPipeline
from videolmm.serve.errors import ApiError, ServeError
from videolmm.serve.jobs import ChatJob, Generated
from videolmm.serve.metrics import MediaMetrics, ModelMetrics
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

    async def decode(self, job: ChatJob) -> DecodedRequest | ApiError:
        """Decode a job's media; a refused or broken input comes back as an :class:`ApiError`."""
        start = time.perf_counter()
        try:
            decoded = await self.pipeline.run(job)
        except ServeError as exc:
            logger.info("rid=%s media refused (%d): %s", job.request_id, exc.error.status, exc.error.message)
            return exc.error
        self.metrics.record(job.model_id, time.perf_counter() - start, sum(v.num_frames for v in decoded.videos))
        return decoded


@serve.deployment(name="MediaDecoder")
class MediaDecoder:
    """Fetch → limits → decode + sample, on CPU.

    Args:
        args: the app's configuration.
    """

    def __init__(self, args: ServeArgs) -> None:
        self.stage = MediaStage(args)

    async def decode(self, job: ChatJob) -> DecodedRequest | ApiError:
        """Decode a job's media; a refused or broken input comes back as an :class:`ApiError`."""
        return await self.stage.decode(job)


@dataclass(frozen=True)
class _Pending:
    """A request waiting in the batch queue."""

    item: DecodedRequest
    model_id: str
    arrived: float


@serve.deployment(name="ModelServer")
class ModelServer:
    """Batched, multiplexed generation with the core engine.

    Args:
        args: the app's configuration (models, batching, engines per replica).
    """

    def __init__(self, args: ServeArgs) -> None:
        self.models = {m.model_id: m for m in args.models}
        self.metrics = ModelMetrics()
        self.generate_batch.set_max_batch_size(args.batching.max_batch_size)
        self.generate_batch.set_batch_wait_timeout_s(args.batching.batch_wait_timeout_s)
        models = self.models

        async def load_engine(model_id: str) -> Engine:
            config = models[model_id]
            start = time.perf_counter()
            # videolmm.load hands the engine the plugin host's registry and hooks
            engine = await asyncio.to_thread(load_core_engine, config.engine)
            logger.info(
                "rids=%s loaded model %s from %s in %.1f s",
                list(batch_request_ids()),
                model_id,
                config.pretrained,
                time.perf_counter() - start,
            )
            return engine

        # Built here so the LRU size comes from the config (Ray LLM's pattern).
        self.engine = serve.multiplexed(max_num_models_per_replica=args.max_models_per_replica)(load_engine)
        # no MediaDecoder deployment with decode_in: model_replica: decode here, before batching
        self.media = MediaStage(args) if args.decode_in == "model_replica" else None

    async def generate_job(self, job: ChatJob) -> Generated | ApiError:
        """Decode a job's media in this replica, then generate (``decode_in: model_replica``)."""
        if self.media is None:
            raise RuntimeError("generate_job needs decode_in: model_replica; this app decodes in MediaDecoder")
        decoded = await self.media.decode(job)
        if isinstance(decoded, ApiError):
            return decoded
        return await self.generate(decoded)

    async def generate(self, item: DecodedRequest) -> Generated:
        """Generate for one decoded request (batched with concurrent requests for the same model)."""
        model_id = serve.get_multiplexed_model_id()
        if model_id not in self.models:
            error = f"ConfigError: unknown model {model_id!r}"
            return Generated(Result(request_id=item.request.request_id, error=error))
        return await self.generate_batch(_Pending(item, model_id, time.perf_counter()))

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def generate_batch(self, pending: list[_Pending]) -> list[Generated]:
        """One engine call for a batch of requests for the same model (Serve splits by model id)."""
        model_id = pending[0].model_id
        started = time.perf_counter()
        ids = [p.item.request.request_id for p in pending]
        set_batch_request_ids(tuple(ids))  # a model load these trigger logs them
        try:
            engine = await self.engine(model_id)
        except Exception as exc:  # a model that cannot load fails these requests, not the replica
            logger.exception("rids=%s model %s failed to load", ids, model_id)
            error = f"ModelLoadError: {model_id}: {error_text(exc)}"
            return [Generated(Result(request_id=i, error=error), len(ids)) for i in ids]
        results = await asyncio.to_thread(engine.generate, [p.item for p in pending], batch_size=len(pending))
        elapsed = time.perf_counter() - started
        queued = [started - p.arrived for p in pending]
        self.metrics.record_batch(model_id, queued, elapsed)
        logger.info("rids=%s model %s generated a batch of %d in %.3f s", ids, model_id, len(pending), elapsed)
        return [
            Generated(replace(r, timings={**r.timings, "queue": q}), len(pending))
            for r, q in zip(results, queued, strict=True)
        ]


__all__ = ["MediaDecoder", "ModelServer"]
