"""lmms-eval model classes over the videolmm engine.

``VideoLMM`` (id ``videolmm``) is generic: the family comes from the checkpoint's config or
``family=NAME``, so a third-party family registered through videolmm's entry points is
evaluable without any change here. ``LlavaNextVideo`` (id ``llava_next_video``) fixes its
family.

What it adds over lmms-eval's built-in wrappers:
- batched generation (``--batch_size``) with left padding;
- the next batches' videos are decoded in background threads while the current batch
  generates (``prefetch`` batches ahead, ``decode_workers`` threads), each video once however
  many questions ask about it; on CPU, torch's threads are sized per batch: every core while decoding
  is cheap, else the cores the decode threads leave (``torch_threads``);
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
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from lmms_eval.api.instance import GenerationResult, Instance, TokenCounts
from lmms_eval.api.model import lmms
from tqdm import tqdm

from videolmm.errors import ConfigError
from videolmm.eval import until
from videolmm.eval.checkpoint import ResponseCheckpoint
from videolmm.eval.compat import loglikelihood_output
from videolmm.eval.markers import ERROR_PREFIX
from videolmm.eval.requests import generation_from_kwargs, split_visuals
from videolmm.eval.threads import set_threads, size_torch_threads, threads_for, usable_cores
from videolmm.load import load_engine
from videolmm.log import configure_from_env
from videolmm.models.engine import DecodedRequest, error_text
from videolmm.models.spec import EngineSpec
from videolmm.tokens import separator_stop
from videolmm.types import Request, Result

logger = logging.getLogger(__name__)


#: Set to a file path to have every ``generate_until`` call write its :class:`EvalStats` there (JSON).
STATS_ENV = "VIDEOLMM_EVAL_STATS"


@dataclass(frozen=True)
class EvalStats:
    """Where the time of the ``generate_until`` calls so far went (cumulative per model instance).

    Attributes:
        samples: requests answered.
        decodes: media decodes made (requests about the same video share one).
        batches: engine calls made.
        wall_s: wall time inside ``generate_until``.
        wait_s: time generation sat blocked waiting for a prefetched batch's decode to finish.
        generate_s: time in ``Engine.generate`` (preprocessing + ``model.generate``).
        decode_s: decode time summed over samples (in the decode threads, overlapping generation).
        batch_size, prefetch, decode_workers, torch_threads: the settings the calls ran with
            (``torch_threads`` 0: left to torch, i.e. not on CPU or set by the user).
    """

    samples: int = 0
    decodes: int = 0
    batches: int = 0
    wall_s: float = 0.0
    wait_s: float = 0.0
    generate_s: float = 0.0
    decode_s: float = 0.0
    batch_size: int = 1
    prefetch: int = 0
    decode_workers: int = 1
    torch_threads: int = 0

    @property
    def wait_share(self) -> float:
        """Share of the wall time generation waited for decoding (0 when nothing ran)."""
        return self.wait_s / self.wall_s if self.wall_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields plus ``wait_share``."""
        return {**asdict(self), "wait_share": self.wait_share}


class VideoLMM(lmms):
    """lmms-eval model ``videolmm``: any registered videolmm family."""

    is_simple = True
    fixed_family: str | None = None
    _separator_stop: str = ""

    def __init__(
        self,
        pretrained: str,
        batch_size: int | str = 1,
        max_new_tokens: int = 256,
        prefetch: int = 2,
        decode_workers: int | None = None,
        torch_threads: int | str = "auto",
        max_batch_size: int | None = None,  # lmms-eval passes it; batches are fixed-size here
        **options: Any,
    ) -> None:
        """Load the engine from ``--model_args``.

        Args:
            pretrained: checkpoint directory or hub id.
            batch_size: requests per engine call (left-padded batches).
            max_new_tokens: generation budget when a task sets none.
            prefetch: batches decoded ahead in background threads.
            decode_workers: decode threads (default ``min(4, cores - 1)``).
            torch_threads: ``auto``, ``none`` or an integer (see :mod:`videolmm.eval.threads`).
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
        self.torch_threads = size_torch_threads(torch_threads, self.decode_workers, spec.device)
        # auto: per batch, every core when decoding is cheap next to generating (see threads_for)
        self._adaptive_threads = str(torch_threads).strip().lower() == "auto" and self.torch_threads > 0
        self.stats = EvalStats(
            batch_size=self.batch_size_per_gpu,
            prefetch=self.prefetch,
            decode_workers=self.decode_workers,
            torch_threads=self.torch_threads,
        )
        self._wait_s = 0.0
        self._decodes = 0
        self.engine = load_engine(spec)
        self._device = torch.device(self.engine.model.device)
        # the seeds stop at the conversation separator; needed where it is text, not the EOS token
        # (mistral_direct's <|im_end|> on Mistral's tokenizer: LLaVA-NeXT-Video-7B-32K)
        self._separator_stop = separator_stop(self.engine.template.stop, self.engine.processor.tokenizer)
        self.failures: list[tuple[str, Any, str]] = []
        if self._rank == 0:
            logger.info("videolmm settings: %s", self.engine.describe())

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
        return self._device

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
        """A task's ``gen_kwargs`` as settings, the template's separator a stop string where it is text."""
        generation = generation_from_kwargs(dict(gen_kwargs), self.max_new_tokens)
        if not scored and self._separator_stop and self._separator_stop not in generation.stop:
            generation = replace(generation, stop=(*generation.stop, self._separator_stop))
        return generation

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

    def _decoded_batches(self, requests: list[Any]) -> Iterator[list[DecodedRequest]]:
        """Yield batches of decoded requests, decoding ``prefetch`` batches ahead in threads.

        Requests about the same media (several questions per video) share one decode; the frames
        are dropped once the last request that needs them has been yielded.
        """
        bs = max(1, self.batch_size_per_gpu)
        keys = [self._media_key(r) for r in requests]
        last_use = {k: i for i, k in enumerate(keys) if k is not None}
        shared: dict[tuple, Future] = {}

        def submit(pool: ThreadPoolExecutor, i: int) -> tuple[Future, bool]:
            key = keys[i]
            if key is not None and key in shared:
                return shared[key], True
            self._decodes += 1
            future = pool.submit(self.engine.decode, requests[i])
            if key is not None:
                shared[key] = future
            return future, False

        def result(i: int, future: Future, reused: bool) -> DecodedRequest:
            done = future.result()
            if not reused:
                return done
            return DecodedRequest(requests[i], done.videos, done.images, done.error, decode_seconds=0.0)

        starts = list(range(0, len(requests), bs))
        with ThreadPoolExecutor(max_workers=self.decode_workers, thread_name_prefix="videolmm-decode") as pool:
            pending: deque[list[tuple[int, Future, bool]]] = deque()
            nxt = 0
            for _ in starts:
                while nxt < len(starts) and len(pending) <= self.prefetch:
                    span = range(starts[nxt], min(starts[nxt] + bs, len(requests)))
                    pending.append([(i, *submit(pool, i)) for i in span])
                    nxt += 1
                start = time.perf_counter()
                entries = pending.popleft()
                batch = [result(*entry) for entry in entries]
                self._wait_s += time.perf_counter() - start
                end = entries[-1][0]
                for key in [k for k in shared if last_use[k] <= end]:
                    del shared[key]
                yield batch

    # -- lmms-eval API ---------------------------------------------------------------------

    def generate_until(self, requests: list[Instance]) -> list[GenerationResult]:
        """Prefetched generation on the engine's scheduler; failed samples answer ``[videolmm error] ...``.

        Continuous (the default): at most ``batch_size`` samples generate at once and the next one
        joins as soon as one ends, so no sample waits for the longest answer of a batch. Static:
        batch by batch, each to its longest answer.
        """
        self._log_share("generate_until", len(requests))
        started, self._wait_s, self._decodes = time.perf_counter(), 0.0, 0
        converted = [self._to_request(r) for r in requests]
        checkpoint = ResponseCheckpoint.from_caller("generate_until")  # --use_cache: store per sample
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

        if self.engine.continuous:
            self._generate_continuous(converted, record, sums)
        else:
            self._generate_static(converted, record, sums)
        pbar.close()
        self._report_failures()
        wall = time.perf_counter() - started
        self._add_stats(len(requests), int(sums["batches"]), wall, self._wait_s, sums["generate"], sums["decode"])
        return [o for o in out if o is not None]

    def _generate_static(self, converted: list[Any], record: Any, sums: dict[str, float]) -> None:
        last: tuple[float, float] | None = None  # (decode, generate) seconds of the previous batch
        done = 0
        for batch in self._decoded_batches(converted):
            if self._adaptive_threads:
                set_threads(threads_for(last, usable_cores(), self.decode_workers))
            t0 = time.perf_counter()
            results = self.engine.generate(batch, batch_size=len(batch))
            last = (sum(item.decode_seconds for item in batch), time.perf_counter() - t0)
            sums["generate"] += last[1]
            sums["decode"] += last[0]
            sums["batches"] += 1
            for result in results:
                record(done, result)
                done += 1

    def _generate_continuous(self, converted: list[Any], record: Any, sums: dict[str, float]) -> None:
        from videolmm.models.scheduler import generate_continuous

        def items() -> Iterator[DecodedRequest]:
            last: tuple[float, float] | None = None
            mark = time.perf_counter()
            for batch in self._decoded_batches(converted):  # prefetched batches, handed over one by one
                now = time.perf_counter()
                if self._adaptive_threads:
                    set_threads(threads_for(last, usable_cores(), self.decode_workers))
                decode = sum(item.decode_seconds for item in batch)
                last, mark = (decode, now - mark), now
                sums["decode"] += decode
                sums["batches"] += 1
                yield from batch

        t0 = time.perf_counter()
        wait_before = self._wait_s
        # newcomers join once half the slots are free: prefilled together, as a static batch would be
        slots = self.batch_size_per_gpu
        generate_continuous(self.engine, items(), max_batch_size=slots, on_result=record, min_join=max(1, slots // 2))
        sums["generate"] += time.perf_counter() - t0 - (self._wait_s - wait_before)

    def _add_stats(self, samples: int, batches: int, wall: float, wait: float, gen: float, dec: float) -> None:
        """Accumulate into :attr:`stats`; write them to ``$VIDEOLMM_EVAL_STATS`` when it is set."""
        s = self.stats
        self.stats = replace(
            s,
            samples=s.samples + samples,
            decodes=s.decodes + self._decodes,
            batches=s.batches + batches,
            wall_s=s.wall_s + wall,
            wait_s=s.wait_s + wait,
            generate_s=s.generate_s + gen,
            decode_s=s.decode_s + dec,
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
        self._report_failures()
        return out

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
    "STATS_ENV",
    "EvalStats",
    "LlavaHound",
    "LlavaNextVideo",
    "LlavaVideoQwen2",
    "VideoLMM",
    "generation_from_kwargs",
    "split_visuals",
]
