"""lmms-eval model classes over the videolmm engine.

``VideoLMM`` (id ``videolmm``) is generic: the family comes from the checkpoint's config or
``family=NAME``, so a third-party family registered through videolmm's entry points is
evaluable without any change here. ``LlavaNextVideo`` (id ``llava_next_video``) fixes its
family.

What it adds over lmms-eval's built-in wrappers:
- batched generation (``--batch_size``) with left padding;
- the engine loads in a background thread started by the constructor (lmms-eval builds its tasks
  meanwhile); ``generate_until`` starts decoding before it waits for that load, so the first
  batches decode while the model loads (:mod:`videolmm.eval.loading`, :mod:`videolmm.eval.prefetch`);
- the next batches' videos are decoded in background threads while the current batch
  generates (``prefetch`` batches ahead, ``decode_workers`` threads; every core, ``decode_burst``,
  while nothing generates), each video once however many questions ask about it; on CPU, torch's
  threads are sized per batch: every core while decoding is cheap, else the cores the decode threads
  leave (``torch_threads``);
- ``frame_cache=DIR`` (or ``VIDEOLMM_FRAME_CACHE=DIR``) keeps decoded frames on disk, so a second
  run over the same videos and settings skips decoding (:mod:`videolmm.media.cache`);
- a broken video fails only its own sample: its response is ``"[videolmm error] <reason>"``,
  which the logged samples keep; the run completes and scores the rest;
- ``loglikelihood`` is implemented; sharding under ``accelerate launch`` follows the rank.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import weakref
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from lmms_eval.api.instance import GenerationResult, Instance, TokenCounts
from lmms_eval.api.model import lmms
from tqdm import tqdm

from videolmm.errors import ConfigError
from videolmm.eval import until
from videolmm.eval.checkpoint import ResponseCheckpoint
from videolmm.eval.compat import loglikelihood_output
from videolmm.eval.loading import BackgroundLoad, ModelLoadError
from videolmm.eval.loops import generate_continuous, generate_static
from videolmm.eval.markers import ERROR_PREFIX
from videolmm.eval.prefetch import PRELOAD_BYTES, DecodePipeline, EarlyMedia
from videolmm.eval.requests import generation_from_kwargs, split_visuals
from videolmm.eval.startup import Startup
from videolmm.eval.stats import STATS_ENV, EvalStats
from videolmm.eval.threads import set_threads, size_torch_threads, threads_for, usable_cores
from videolmm.log import configure_from_env
from videolmm.media.cores import READS_IN_FLIGHT, Reservation
from videolmm.models.engine import DecodedRequest, Engine, error_text
from videolmm.models.spec import EngineSpec, parse_bool
from videolmm.tokens import separator_stop
from videolmm.types import Request, Result

logger = logging.getLogger(__name__)


class VideoLMM(lmms):
    """lmms-eval model ``videolmm``: any registered videolmm family."""

    is_simple = True
    fixed_family: str | None = None

    def __init__(
        self,
        pretrained: str,
        batch_size: int | str = 1,
        max_new_tokens: int = 256,
        prefetch: int = 2,
        decode_workers: int | None = None,
        decode_burst: int | None = None,
        preload_mb: float = PRELOAD_BYTES / 2**20,
        torch_threads: int | str = "auto",
        freeze_gc: bool | str = True,
        warm_decoder: bool | str = True,
        hold_cores: bool | str = True,
        load_processes: int | str = "auto",
        max_batch_size: int | None = None,  # lmms-eval passes it; batches are fixed-size here
        **options: Any,
    ) -> None:
        """Start loading the engine from ``--model_args`` (in a background thread: see :attr:`engine`).

        The spec, its media settings and the thread sizing are checked here (a bad option raises at
        once); a failure of the load itself is raised where the engine is first needed, as
        :class:`~videolmm.eval.loading.ModelLoadError` naming the checkpoint.

        Args:
            pretrained: checkpoint directory or hub id.
            batch_size: requests per engine call (left-padded batches).
            max_new_tokens: generation budget when a task sets none.
            prefetch: batches decoded ahead in background threads.
            decode_workers: decode threads while generation runs (default ``min(4, cores - 1)``).
            decode_burst: decode threads while nothing generates (the load, generation waiting on a
                batch); default every core, never fewer than ``decode_workers``.
            preload_mb: while the model loads, decode beyond ``prefetch`` batches until this many MiB
                of frames wait (``prefetch > 0`` only).
            torch_threads: ``auto``, ``none`` or an integer (see :mod:`videolmm.eval.threads`).
            freeze_gc: exempt the objects that exist before the load from the cyclic GC until the
                first evaluation call ends (:class:`~videolmm.eval.startup.FrozenHeap`).
            warm_decoder: decode a tiny in-memory clip before the load starts
                (:func:`~videolmm.eval.startup.warm_decoder`).
            load_processes: decode processes forked before the load, taking the decodes started while
                it runs (:mod:`videolmm.eval.forked`); ``auto``: ``min(4, cores - 1)`` on Linux, 0: none.
            hold_cores: while generating with torch threads sized here, hold their cores from the
                ``keyframe`` decoder's reads (:meth:`~videolmm.media.cores.ReadsInFlight.reserve`),
                so that decode threads plan their FFmpeg threads for the cores torch leaves.
            max_batch_size: accepted for lmms-eval's CLI; unused.
            **options: engine options: every :class:`~videolmm.models.spec.EngineSpec` field under
                its name or a seed alias (``max_frames_num``, ``conv_template``,
                ``video_decode_backend``, ``load_in_4bit``, ...); other keys are family options.
        """
        super().__init__()
        import torch

        configure_from_env()
        until.install()  # tasks built after the model: lmms-eval's injected until is marked (eval/until.py)
        from accelerate import Accelerator

        spec = self.spec_from_model_args(pretrained, **options)
        accelerator = Accelerator()
        self._rank = accelerator.process_index
        self._world_size = accelerator.num_processes
        if self._world_size > 1:
            spec = replace(spec, device=str(accelerator.device))
        if str(batch_size).startswith("auto"):
            raise ConfigError("batch_size=auto is not supported by videolmm models; pass an integer")
        self.batch_size_per_gpu = int(batch_size)
        self.max_new_tokens = int(max_new_tokens)
        self.prefetch = int(prefetch)
        workers = decode_workers if decode_workers is not None else min(4, max(1, (os.cpu_count() or 2) - 1))
        self.decode_workers = max(1, int(workers))
        self.decode_burst = max(self.decode_workers, int(decode_burst or usable_cores()))
        self.preload_bytes = int(float(preload_mb) * 2**20)
        self.torch_threads = size_torch_threads(torch_threads, self.decode_workers, spec.device)
        # auto: per batch, every core when decoding is cheap next to generating (see threads_for)
        self._adaptive_threads = str(torch_threads).strip().lower() == "auto" and self.torch_threads > 0
        self._hold_cores = parse_bool(hold_cores, "hold_cores") and self.torch_threads > 0
        self._reservation: Reservation | None = None
        self.stats = EvalStats(
            batch_size=self.batch_size_per_gpu,
            prefetch=self.prefetch,
            decode_workers=self.decode_workers,
            decode_burst=self.decode_burst,
            torch_threads=self.torch_threads,
        )
        self.failures: list[tuple[str, Any, str]] = []
        self._accelerator_device = torch.device(accelerator.device)
        self._engine: Engine | None = None
        self._separator: str = ""  # set with the engine (see engine)
        self._defer_stop = False
        self._media = EarlyMedia(spec)  # decoding needs no weights: from the spec, at once
        # before the load starts: heap frozen, decoder warmed, decode processes forked (eval/startup.py)
        self._startup = Startup(
            self._media, usable_cores(), freeze_gc=freeze_gc, warm_decoder=warm_decoder, load_processes=load_processes
        )
        weakref.finalize(self, self._startup.end)  # a model dropped before any evaluation call
        self.stats = replace(self.stats, warmup_s=self._startup.warmup_s)
        self._load = BackgroundLoad(spec)

    @property
    def engine(self) -> Engine:
        """The loaded engine; waits for the background load the first time.

        Raises:
            ModelLoadError: the load failed (names the checkpoint; raised at every use).
        """
        if self._engine is None:
            engine = self._load.result()
            engine.frame_cache = self._media.frame_cache  # one cache (and its counters) per model
            # the seeds stop at the conversation separator; needed where it is text, not the EOS token
            # (mistral_direct's <|im_end|> on Mistral's tokenizer: LLaVA-NeXT-Video-7B-32K)
            self._separator = separator_stop(engine.template.stop, engine.processor.tokenizer)
            self._engine = engine
            self.stats = replace(self.stats, load_s=self._load.seconds)
            if self._rank == 0 and logger.isEnabledFor(logging.INFO):
                logger.info("videolmm settings: %s (loaded in %.1f s)", engine.describe(), self._load.seconds)
        return self._engine

    @classmethod
    def spec_from_model_args(cls, pretrained: str, **options: Any) -> EngineSpec:
        """The :class:`EngineSpec` that ``--model_args pretrained=...,KEY=VALUE,...`` describes.

        Raises:
            ConfigError: a value does not convert, or ``family`` contradicts the model id's family.
        """
        options = {k: v for k, v in options.items() if v is not None}
        if cls.fixed_family:
            given = options.get("family")
            if given and given != cls.fixed_family:
                raise ConfigError(f"model {cls.__name__} is family {cls.fixed_family!r}; got family={given!r}")
            options["family"] = cls.fixed_family
        return EngineSpec.from_options({"pretrained": pretrained, **options})

    # -- properties lmms-eval reads --------------------------------------------------

    @property
    def model(self) -> Any:
        return self.engine.model

    @property
    def tokenizer(self) -> Any:
        return self.engine.processor.tokenizer

    @property
    def batch_size(self) -> int:
        return self.batch_size_per_gpu

    @property
    def device(self) -> Any:
        """Under ``accelerate launch``, the rank's device (known before the load); else the model's."""
        if self._world_size > 1:
            return self._accelerator_device
        import torch

        return torch.device(self.engine.model.device)

    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    # -- request conversion ------------------------------------------------------------

    def _visuals(self, doc_to_visual: Any, doc_id: Any, task: str, split: str) -> tuple[tuple, tuple]:
        if doc_to_visual is None:
            return (), ()
        visuals = doc_to_visual(self.task_dict[task][split][doc_id])
        if visuals is None:
            return (), ()
        if not isinstance(visuals, (list, tuple)):
            visuals = [visuals]
        return split_visuals(visuals)

    def _to_request(self, instance: Instance, *, continuation: str | None = None) -> Request | DecodedRequest:
        args = instance.args
        context, task, split, doc_id = args[0], args[4], args[5], args[3]
        gen_kwargs = args[1] if continuation is None and isinstance(args[1], dict) else {}
        rid = f"{task}/{split}/{doc_id}"
        try:
            videos, images = self._visuals(args[2], doc_id, task, split)
        except Exception as exc:  # doc_to_visual raised (e.g. a missing file): fail this sample
            req = Request(question=context, request_id=rid)
            return DecodedRequest(req, error=error_text(exc))
        return Request(
            question=context,
            videos=videos,
            images=images,
            generation=self._generation(gen_kwargs, scored=continuation is not None),
            continuation=continuation,
            request_id=rid,
        )

    def _generation(self, gen_kwargs: dict[str, Any], *, scored: bool = False) -> Any:
        """A task's ``gen_kwargs`` as settings, the template's separator a stop string where it is text
        (which needs the tokenizer: ``generate_until`` adds it after the load, :meth:`_finish`)."""
        generation = generation_from_kwargs(dict(gen_kwargs), self.max_new_tokens)
        if scored or self._defer_stop:
            return generation
        return self._with_stop(generation)

    def _with_stop(self, generation: Any) -> Any:
        _ = self.engine  # joins the load: the separator comes with the tokenizer
        separator = self._separator
        if separator and separator not in generation.stop:
            generation = replace(generation, stop=(*generation.stop, separator))
        return generation

    def _finish(self, item: DecodedRequest) -> DecodedRequest:
        """A decoded generation request with the separator stop its conversion deferred."""
        request = item.request
        if item.error is not None or request.continuation is not None:
            return item
        generation = self._with_stop(request.generation)
        if generation is request.generation:
            return item
        return replace(item, request=replace(request, generation=generation))

    @staticmethod
    def _media_key(item: Request | DecodedRequest) -> tuple | None:
        """Requests with equal keys decode to the same frames (same sources, same media settings)."""
        if isinstance(item, DecodedRequest) or not item.videos:
            return None
        key = (item.videos, item.images, item.media)
        try:
            hash(key)
        except TypeError:  # in-memory images: no cheap identity
            return None
        return key

    def _pipeline(self, requests: list[Any]) -> DecodePipeline:
        """Start decoding ``requests`` ahead of generation (see :mod:`videolmm.eval.prefetch`)."""
        forked = self._startup.forked
        return DecodePipeline(
            self._media.decode,
            requests,
            batch_size=self.batch_size_per_gpu,
            prefetch=self.prefetch,
            workers=self.decode_workers,
            burst=self.decode_burst,
            load_decode=forked.decode if forked is not None else None,
            load_workers=forked.processes if forked is not None else None,
            media_key=self._media_key,
            preload_bytes=self.preload_bytes,
            loading=self._engine is None and not self._load.done,
        )

    def _decoded_batches(self, pipe: DecodePipeline) -> Iterator[list[DecodedRequest]]:
        """The pipeline's batches, each request with its separator stop."""
        for batch in pipe.batches():
            yield [self._finish(item) for item in batch]

    # -- lmms-eval API ---------------------------------------------------------------------

    def generate_until(self, requests: list[Instance]) -> list[GenerationResult]:
        """Prefetched generation on the engine's scheduler; failed samples answer ``[videolmm error] ...``.

        Continuous (the default): at most ``batch_size`` samples generate at once and the next one
        joins as soon as one ends, so no sample waits for the longest answer of a batch. Static:
        batch by batch, each to its longest answer. Decoding starts first; then the call waits for
        the model load (if it is still running) and generates.
        """
        self._log_share("generate_until", len(requests))
        started = time.perf_counter()
        self._defer_stop = True  # the separator stop needs the tokenizer: added after the load (_finish)
        try:
            converted = [self._to_request(r) for r in requests]
        finally:
            self._defer_stop = False
        try:
            with self._pipeline(converted) as pipe:
                t0 = time.perf_counter()
                self._load.wait()  # the pipeline decodes meanwhile
                load_wait = time.perf_counter() - t0
                engine = self.engine
                pipe.loaded()
                self._startup.load_ended()
                return self._generate_all(engine, requests, pipe, started, load_wait)
        finally:
            self._thaw()

    def _generate_all(
        self, engine: Engine, requests: list[Instance], pipe: DecodePipeline, started: float, load_wait: float
    ) -> list[GenerationResult]:
        checkpoint = ResponseCheckpoint.from_caller("generate_until", sys._getframe(2))  # --use_cache
        out: list[GenerationResult | None] = [None] * len(requests)
        pbar = tqdm(total=len(requests), disable=self.rank != 0, desc="videolmm generating")
        sums = {"decode": 0.0, "generate": 0.0, "batches": 0}

        def record(i: int, result: Result) -> None:
            instance = requests[i]
            if result.ok:
                text = result.text or ""
                counts = TokenCounts(result.usage.prompt_tokens, result.usage.completion_tokens)
                self.cache_hook.add_partial("generate_until", (instance.args[0], instance.args[1]), text)
            else:
                text, counts = ERROR_PREFIX + (result.error or "unknown error"), None
                self._record_failure(result.request_id, result.error)
            out[i] = GenerationResult(text=text, token_counts=counts)
            if checkpoint is not None and result.ok:  # failures are not checkpointed: a resume retries them
                checkpoint.store(instance, out[i])
            pbar.update(1)

        batches = self._decoded_batches(pipe)
        with READS_IN_FLIGHT.reserve() as self._reservation:  # torch's cores, held from the reads (hold_cores)
            if engine.continuous:
                slots = self.batch_size_per_gpu
                generate_continuous(engine, batches, record, sums, self._size_threads, slots, lambda: pipe.wait_s)
            else:
                generate_static(engine, batches, record, sums, self._size_threads)
        self._reservation = None
        pbar.close()
        self._report_failures()
        sums["wall"] = time.perf_counter() - started
        self._add_stats(len(requests), pipe, load_wait, sums)
        return [o for o in out if o is not None]

    def _size_threads(self, last: tuple[float, float] | None) -> None:
        """``torch_threads=auto``: size torch's threads for the next batch (see :func:`threads_for`)."""
        threads = threads_for(last, usable_cores(), self.decode_workers) if self._adaptive_threads else 0
        if threads:
            set_threads(threads)
        if self._hold_cores and self._reservation is not None:
            self._reservation.hold(threads or self.torch_threads)

    def _add_stats(self, samples: int, pipe: DecodePipeline, load_wait: float, sums: dict[str, float]) -> None:
        """Accumulate into :attr:`stats`; write them to ``$VIDEOLMM_EVAL_STATS`` when it is set."""
        s = self.stats
        self.stats = replace(
            s,
            samples=s.samples + samples,
            decodes=s.decodes + pipe.decodes,
            batches=s.batches + int(sums["batches"]),
            wall_s=s.wall_s + sums["wall"],
            wait_s=s.wait_s + pipe.wait_s,
            first_wait_s=s.first_wait_s + pipe.first_wait_s,
            generate_s=s.generate_s + sums["generate"],
            decode_s=s.decode_s + sums["decode"],
            load_wait_s=s.load_wait_s + load_wait,
            decoded_during_load=s.decoded_during_load + pipe.decoded_during_load,
            depth_reached=max(s.depth_reached, pipe.depth),
        )
        path = os.environ.get(STATS_ENV)
        if path:
            suffix = f".rank{self.rank}" if self.world_size > 1 else ""
            Path(path + suffix).write_text(json.dumps(self.stats.to_dict(), indent=1) + "\n")
        logger.info("videolmm eval stats: %s", self.stats.to_dict())

    def loglikelihood(self, requests: list[Instance]) -> list[Any]:
        """Summed log-probability of each continuation and whether greedy decoding gives it
        (``(logprob, is_greedy)``, wrapped by :mod:`videolmm.eval.compat` where needed)."""
        out: list[tuple[float, bool]] = []
        try:
            for instance in tqdm(requests, disable=self.rank != 0, desc="videolmm loglikelihood"):
                context, target, _, doc_id, task, split = instance.args
                if not isinstance(target, str):
                    target = target(self.task_dict[task][split][doc_id])
                req = self._to_request(instance, continuation=target)
                result = self.engine.loglikelihood([req])[0]
                if result.ok:
                    pair = (float(result.logprob), bool(result.is_greedy))
                    self.cache_hook.add_partial("loglikelihood", (context, target), pair)
                else:
                    self._record_failure(result.request_id, result.error)
                    pair = (float("-inf"), False)
                out.append(loglikelihood_output(*pair))
        finally:
            self._thaw()
        self._report_failures()
        return out

    def _thaw(self) -> None:
        """The first evaluation call is over: the GC walks every object again, the processes stop."""
        self._startup.end()

    def generate_until_multi_round(self, requests: list[Instance]) -> list[str]:
        raise NotImplementedError(
            "videolmm models answer one question per video (generate_until) and score choices "
            "(loglikelihood); multi-round tasks are not supported. Use the task's single-round variant, or serve "
            "the model and evaluate it with lmms-eval's chat-capable `openai` model."
        )

    # -- logging ------------------------------------------------------------------------

    def _log_share(self, kind: str, n: int) -> None:
        """Log how many requests this rank got (shown with ``VIDEOLMM_LOG_LEVEL=INFO``)."""
        logger.info("videolmm rank %d/%d: %d %s requests", self.rank, self.world_size, n, kind)

    def _record_failure(self, request_id: str, error: str | None) -> None:
        self.failures.append((request_id, None, error or ""))
        logger.warning("videolmm sample %s failed: %s", request_id, error)

    def _report_failures(self) -> None:
        if self.failures:
            logger.warning(
                "videolmm: %d sample(s) failed so far; their responses start with %r", len(self.failures), ERROR_PREFIX
            )


class LlavaNextVideo(VideoLMM):
    """lmms-eval model ``llava_next_video``: LLaVA-NeXT-Video 7B/7B-DPO/7B-32K/34B/34B-DPO."""

    fixed_family = "llava_next_video"

    def __init__(self, pretrained: str = "llava-hf/LLaVA-NeXT-Video-7B-hf", **kwargs: Any) -> None:
        super().__init__(pretrained=pretrained, **kwargs)


class LlavaVideoQwen2(VideoLMM):
    """lmms-eval model ``llava_video_qwen2``: LLaVA-Video-7B/72B-Qwen2, converted with
    ``videolmm convert --source llava_video_qwen2`` (no transformers-format checkpoint exists)."""

    fixed_family = "llava_video_qwen2"


class LlavaHound(VideoLMM):
    """lmms-eval model ``llava_hound``: LLaVA-Hound Pretrain/SFT/DPO, converted with
    ``videolmm convert --source llava_hound`` (no transformers-format checkpoint exists)."""

    fixed_family = "llava_hound"


__all__ = [
    "ERROR_PREFIX",
    "ModelLoadError",
    "STATS_ENV",
    "EvalStats",
    "LlavaHound",
    "LlavaNextVideo",
    "LlavaVideoQwen2",
    "VideoLMM",
    "generation_from_kwargs",
    "split_visuals",
]
