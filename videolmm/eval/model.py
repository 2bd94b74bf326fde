"""lmms-eval model classes over the videolmm engine.

``VideoLMM`` (id ``videolmm``) is generic: the family comes from the checkpoint's config or
``family=NAME``, so a third-party family registered through videolmm's entry points is
evaluable without any change here. ``LlavaNextVideo`` (id ``llava_next_video``) fixes its
family.

What it adds over lmms-eval's built-in wrappers:
- batched generation (``--batch_size``) with left padding;
- the next batches' videos are decoded in background threads while the current batch
  generates (``prefetch`` batches ahead, ``decode_workers`` threads);
- a broken video fails only its own sample: its response is ``"[videolmm error] <reason>"``,
  which the logged samples keep; the run completes and scores the rest;
- ``loglikelihood`` is implemented; sharding under ``accelerate launch`` follows the rank.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from lmms_eval.api.instance import GenerationResult, Instance, TokenCounts
from lmms_eval.api.model import lmms
from tqdm import tqdm

from videolmm.eval.compat import loglikelihood_output
from videolmm.eval.markers import ERROR_PREFIX
from videolmm.log import configure_from_env
from videolmm.models.engine import DecodedRequest, Engine, error_text
from videolmm.models.errors import ConfigError
from videolmm.models.families.base import LoadOptions
from videolmm.models.types import GenerationSettings, Request

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".flv", ".mpg", ".mpeg", ".gif", ".ts")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")

#: Seed / lmms-eval spellings accepted for our arguments.
ALIASES = {
    "conv_template": "template",
    "video_decode_backend": "decoder",
    "num_frames": "max_frames_num",
    "for_get_frames_num": "max_frames_num",
    "torch_dtype": "dtype",
    "mm_spatial_pool_stride": "spatial_pool_stride",
    "mm_spatial_pool_mode": "spatial_pool_mode",
}


def _as_bool(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"expected a boolean, got {value!r}")


def split_visuals(visuals: Sequence[Any]) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """Split a task's ``doc_to_visual`` output into (videos, images).

    Strings and paths are videos unless they end in an image extension; directories are
    frame folders (videos); PIL images and arrays are images.
    """
    videos: list[Any] = []
    images: list[Any] = []
    for v in visuals:
        if isinstance(v, (str, os.PathLike)):
            (images if str(v).lower().endswith(IMAGE_EXTENSIONS) else videos).append(str(v))
        elif isinstance(v, (bytes, bytearray)):
            videos.append(bytes(v))
        elif hasattr(v, "convert") or hasattr(v, "shape"):
            images.append(v)
        else:
            raise ConfigError(f"unsupported visual of type {type(v).__name__} from doc_to_visual")
    return tuple(videos), tuple(images)


def generation_from_kwargs(gen_kwargs: dict[str, Any], default_max_new_tokens: int) -> GenerationSettings:
    """Map lmms-eval's ``gen_kwargs`` to :class:`GenerationSettings` (greedy unless sampling)."""
    until = gen_kwargs.get("until") or ()
    if isinstance(until, str):
        until = (until,)
    temperature = float(gen_kwargs.get("temperature") or 0.0)
    if gen_kwargs.get("do_sample") is False:
        temperature = 0.0
    top_p = gen_kwargs.get("top_p")
    return GenerationSettings(
        max_new_tokens=int(gen_kwargs.get("max_new_tokens") or default_max_new_tokens),
        temperature=temperature,
        top_p=float(top_p) if top_p is not None else None,
        num_beams=int(gen_kwargs.get("num_beams") or 1),
        stop=tuple(until),
    )


class VideoLMM(lmms):
    """lmms-eval model ``videolmm``: any registered videolmm family."""

    is_simple = True
    fixed_family: str | None = None

    def __init__(
        self,
        pretrained: str,
        family: str | None = None,
        template: str | None = None,
        system_prompt: str | None = None,
        decoder: str | None = None,
        sampler: str | None = None,
        max_frames_num: int | None = None,
        fps: float | None = None,
        force_sample: Any = None,
        reverse_frames: Any = None,
        device: str = "auto",
        dtype: str = "auto",
        device_map: str | None = None,
        attn_implementation: str | None = None,
        load_in_4bit: Any = False,
        load_in_8bit: Any = False,
        batch_size: int | str = 1,
        max_new_tokens: int = 256,
        prefetch: int = 2,
        decode_workers: int | None = None,
        max_batch_size: int | None = None,  # lmms-eval passes it; batches are fixed-size here
        **kwargs: Any,
    ) -> None:
        super().__init__()
        import torch

        configure_from_env()
        from accelerate import Accelerator

        family_options = {}
        for key, value in kwargs.items():
            canonical = ALIASES.get(key, key)
            if canonical == "template":
                template = template or value
            elif canonical == "decoder":
                decoder = decoder or value
            elif canonical == "max_frames_num":
                max_frames_num = max_frames_num or value
            elif canonical == "dtype":
                dtype = value
            else:
                family_options[canonical] = value
        if self.fixed_family and family and family != self.fixed_family:
            raise ConfigError(f"model {type(self).__name__} is family {self.fixed_family!r}; got family={family!r}")

        accelerator = Accelerator()
        self._rank = accelerator.process_index
        self._world_size = accelerator.num_processes
        if self._world_size > 1:
            device = str(accelerator.device)
        if str(batch_size).startswith("auto"):
            raise ConfigError("batch_size=auto is not supported by videolmm models; pass an integer")
        self.batch_size_per_gpu = int(batch_size)
        self.max_new_tokens = int(max_new_tokens)
        self.prefetch = int(prefetch)
        workers = decode_workers if decode_workers is not None else min(4, max(1, (os.cpu_count() or 2) - 1))
        self.decode_workers = max(1, int(workers))
        quant = "4bit" if _as_bool(load_in_4bit) else "8bit" if _as_bool(load_in_8bit) else None
        self.engine = Engine.from_pretrained(
            pretrained,
            family=self.fixed_family or family,
            template=template,
            system_prompt=system_prompt,
            decoder=decoder,
            sampler=sampler,
            num_frames=int(max_frames_num) if max_frames_num is not None else None,
            fps=float(fps) if fps is not None else None,
            force_sample=_as_bool(force_sample),
            reverse_frames=_as_bool(reverse_frames),
            family_options=family_options,
            load=LoadOptions(
                device=device,
                dtype=dtype,
                device_map=device_map,
                attn_implementation=attn_implementation,
                quantization=quant,
            ),
        )
        self._device = torch.device(self.engine.model.device)
        self.failures: list[tuple[str, Any, str]] = []
        if self._rank == 0:
            logger.info("videolmm settings: %s", self.engine.describe())

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
            generation=generation_from_kwargs(dict(gen_kwargs), self.max_new_tokens),
            continuation=continuation,
            request_id=rid,
        )

    def _decoded_batches(self, requests: list[Any]) -> Iterator[list[DecodedRequest]]:
        """Yield batches of decoded requests, decoding ``prefetch`` batches ahead in threads."""
        bs = max(1, self.batch_size_per_gpu)
        batches = [requests[i : i + bs] for i in range(0, len(requests), bs)]
        with ThreadPoolExecutor(max_workers=self.decode_workers, thread_name_prefix="videolmm-decode") as pool:
            pending: deque[list[Future]] = deque()
            nxt = 0
            for _ in range(len(batches)):
                while nxt < len(batches) and len(pending) <= self.prefetch:
                    pending.append([pool.submit(self.engine.decode, r) for r in batches[nxt]])
                    nxt += 1
                yield [f.result() for f in pending.popleft()]

    # -- lmms-eval API ---------------------------------------------------------------------

    def generate_until(self, requests: list[Instance]) -> list[GenerationResult]:
        """Batched, prefetched generation; failed samples answer ``[videolmm error] ...``."""
        self._log_share("generate_until", len(requests))
        converted = [self._to_request(r) for r in requests]
        out: list[GenerationResult] = []
        pbar = tqdm(total=len(requests), disable=self.rank != 0, desc="videolmm generating")
        for batch in self._decoded_batches(converted):
            for item, result in zip(batch, self.engine.generate(batch, batch_size=len(batch)), strict=True):
                instance = requests[len(out)]
                if result.ok:
                    text = result.text or ""
                    counts = TokenCounts(result.usage.prompt_tokens, result.usage.completion_tokens)
                    self.cache_hook.add_partial("generate_until", (instance.args[0], instance.args[1]), text)
                else:
                    text, counts = ERROR_PREFIX + (result.error or "unknown error"), None
                    self._record_failure(item.request.request_id, result.error)
                out.append(GenerationResult(text=text, token_counts=counts))
                pbar.update(1)
        pbar.close()
        self._report_failures()
        return out

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
    "LlavaHound",
    "LlavaNextVideo",
    "LlavaVideoQwen2",
    "VideoLMM",
    "generation_from_kwargs",
    "split_visuals",
]
