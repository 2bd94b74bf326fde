"""The engine: decode → sample → preprocess → prompt → batched generate, one result per request.

One ``Engine`` wraps one checkpoint. Both integrations (lmms-eval and the Serve app) build
``Request`` objects and call :meth:`Engine.generate` / :meth:`Engine.loglikelihood`, so the
same request gives the same answer on both paths.

Failure isolation: a request whose media cannot be decoded, or whose prompt does not match
its inputs, gets a ``Result`` with ``error`` set ("ErrorType: source: reason"); the other
requests of the batch still run. A batch that fails as a whole is retried one request at a
time so that only the culprit fails.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from videolmm.errors import ConfigError, ContextLengthExceeded, PromptError, TokenCountMismatch
from videolmm.media.cache import FrameCache
from videolmm.media.images import load_image
from videolmm.media.loader import FrameLoader
from videolmm.models.batch import DecodedRequest, EngineSettings, PreparedBatch, cut_at_stop, error_text
from videolmm.models.continuous import continuous_unsupported
from videolmm.models.families.base import Family
from videolmm.models.inspect import describe
from videolmm.models.prompts import TurnSlot, build_content, conversation_layout
from videolmm.models.spec import EngineSpec, resolve
from videolmm.registry import Registry
from videolmm.types import (
    Frames,
    GenerationSettings,
    MediaSettings,
    Request,
    Result,
    Usage,
)

logger = logging.getLogger(__name__)

CANONICAL_VIDEO = "<video>"
CANONICAL_IMAGE = "<image>"


class Engine:
    """One checkpoint, ready to answer :class:`Request` batches.

    Build with :meth:`from_pretrained`. ``model`` may be None (``load_model=False``) for
    inspection: everything up to the model call (decode, prompt, token counts) still works.
    """

    def __init__(
        self,
        *,
        settings: EngineSettings,
        family: Family,
        config: Any,
        processor: Any,
        model: Any,
        registry: Registry,
        hooks: Any = None,
        frame_cache: FrameCache | None = None,
    ) -> None:
        self.settings = settings
        self.family = family
        self.config = config
        self.processor = processor
        self.model = model
        #: The plugin host's hook caller (``pm.hook``); None runs :meth:`run_batch` directly.
        self.hooks = hooks
        self.registry = registry
        self.template = registry.template(settings.template)
        #: ``continuous`` or ``static`` (:meth:`generate`).
        self.scheduler = settings.scheduler
        #: Optional on-disk cache of decoded frames (``frame_cache=`` or ``VIDEOLMM_FRAME_CACHE``); None decodes.
        self.frame_cache = frame_cache

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_spec(cls, spec: EngineSpec, *, registry: Registry, hooks: Any = None, load_model: bool = True) -> Engine:
        """Load a checkpoint as ``spec`` says, with the seed's defaults for everything it leaves unset.

        Args:
            spec: the engine options (see :class:`~videolmm.models.spec.EngineSpec`).
            registry: the component registry (built by the plugin host, :mod:`videolmm.load`).
            hooks: the host's hook caller (``pm.hook``): ``resolve_family`` and ``generate_batch``.
            load_model: False loads config and processor only (for ``videolmm inspect``).

        Raises:
            ConfigError / RegistryError: a name or option is unknown (the message lists the
                known ones).
        """
        resolved = resolve(spec, registry, hooks)
        fam, load = resolved.family, spec.load_options()
        config = fam.load_config(spec.pretrained, load)
        fam.apply_options(config, {k: v for k, v in resolved.family_options.items() if v is not None})
        processor = fam.load_processor(spec.pretrained, config, load)
        settings = EngineSettings(
            pretrained=spec.pretrained,
            family=fam.name,
            template=resolved.template or fam.default_template(config),
            system_prompt=spec.system_prompt,
            media=resolved.media,
            family_options=fam.effective_options(config),
            load=load,
        )
        model = fam.load_model(spec.pretrained, config, load) if load_model else None
        scheduler = spec.scheduler
        why = continuous_unsupported(model) if model is not None and scheduler == "continuous" else None
        if why:
            logger.warning("%s: %s; it runs the static scheduler", spec.pretrained, why)
            scheduler = "static"
        settings = replace(settings, scheduler=scheduler)
        cache = FrameCache(spec.frame_cache) if spec.frame_cache else FrameCache.from_env()
        return cls(
            settings=settings,
            family=fam,
            config=config,
            processor=processor,
            model=model,
            registry=registry,
            hooks=hooks,
            frame_cache=cache,
        )

    # ------------------------------------------------------------------ media

    def media_for(self, request: Request) -> MediaSettings:
        """The media settings a request runs with (its own override, else the engine's)."""
        return request.media or self.settings.media

    def load_video(self, source: Any, media: MediaSettings | None = None) -> Frames:
        """Decode and sample one video source with the engine's (or the given) settings, through
        the engine's frame cache when it has one."""
        return FrameLoader(self.registry, cache=self.frame_cache).load(source, media or self.settings.media)

    def decode(self, request: Request | DecodedRequest) -> DecodedRequest:
        """Decode a request's videos and images; a failure is recorded, never raised."""
        if isinstance(request, DecodedRequest):
            return request
        start = time.perf_counter()
        try:
            media = self.media_for(request)
            videos = tuple(self.load_video(src, media) for src in request.videos)
            images = tuple(load_image(img) for img in request.images)
        except Exception as exc:  # isolate: this request fails, the batch goes on
            logger.warning("request %s: media failed: %s", request.request_id or "-", error_text(exc))
            return DecodedRequest(request, error=error_text(exc), decode_seconds=time.perf_counter() - start)
        return DecodedRequest(request, videos, images, decode_seconds=time.perf_counter() - start)

    # ------------------------------------------------------------------ prompt

    def render_prompt(self, request: Request, videos: Sequence[Frames] = (), continuation: str = "") -> str:
        """The exact prompt text for a request (placeholders in the processor's tokens).

        Each user turn (the earlier ``request.turns`` and the question) gets its own visuals'
        placeholder lines before its text, and the family's extra text (LLaVA-Video's time
        instruction) for the first video it carries; the template renders the conversation.
        """
        slots = conversation_layout(
            request.turns, request.question, len(request.videos), len(request.images), request_id=request.request_id
        )
        messages = [(slot.role, self._turn_content(slot, videos)) for slot in slots]
        system = request.system_prompt if request.system_prompt is not None else self.settings.system_prompt
        prompt = self.template.render_conversation(messages, system=system, tokenizer=self.processor.tokenizer)
        video_tok = getattr(self.processor, "video_token", CANONICAL_VIDEO)
        image_tok = getattr(self.processor, "image_token", CANONICAL_IMAGE)
        if video_tok != CANONICAL_VIDEO:
            prompt = prompt.replace(CANONICAL_VIDEO, video_tok)
        if image_tok != CANONICAL_IMAGE:
            prompt = prompt.replace(CANONICAL_IMAGE, image_tok)
        return prompt + continuation

    def _turn_content(self, slot: TurnSlot, videos: Sequence[Frames]) -> str:
        """A user turn's content: its placeholders, the family's extras for its first video, its text."""
        if slot.role != "user":
            return slot.text
        text = slot.text
        first = slot.videos.start
        if slot.videos and first < len(videos):
            extras = self.family.content_extras(videos[first], config=self.config)
            text = f"{extras}\n{text}" if extras else text
        return build_content(text, [CANONICAL_IMAGE] * len(slot.images) + [CANONICAL_VIDEO] * len(slot.videos))

    def expected_video_tokens(self, videos: Sequence[Frames], pixel_values_videos: Any) -> int:
        """Visual tokens the config implies for these videos at their processed size."""
        height, width = (int(x) for x in pixel_values_videos.shape[-2:])
        return sum(self.family.video_tokens(self.config, v.num_frames, height, width) for v in videos)

    # ------------------------------------------------------------------ preprocessing

    def processor_inputs(self, items: Sequence[DecodedRequest], prompts: list[str]) -> Any:
        """Run the processor exactly as generation does: ``prompts[i]`` with item i's videos and
        images, padded on the left. Training uses this so that it sees the same inputs."""
        kwargs: dict[str, Any] = {"text": prompts, "return_tensors": "pt", "padding": True}
        videos = [v.array for it in items for v in it.videos]
        images = [img for it in items for img in it.images]
        if videos:
            kwargs["videos"] = videos
        if images:
            kwargs["images"] = images
        return self.processor(**kwargs)

    def _check_visual_tokens(self, items: Sequence[DecodedRequest], inputs: Any) -> list[int]:
        ids = inputs["input_ids"]
        video_id = _token_id(self.processor, "video")
        image_id = _token_id(self.processor, "image")
        counts: list[int] = []
        pv = inputs.get("pixel_values_videos")
        for row, item in enumerate(items):
            n_video = int((ids[row] == video_id).sum()) if video_id is not None else 0
            n_image = int((ids[row] == image_id).sum()) if image_id is not None else 0
            if item.videos:
                want = self.expected_video_tokens(item.videos, pv)
                if n_video != want:
                    raise TokenCountMismatch(
                        f"{self.settings.pretrained}: the processor inserted {n_video} video tokens but the config "
                        f"implies {want} ({self.family.name}, {len(item.videos)} video(s) of "
                        f"{item.videos[0].num_frames} frames)"
                    )
            counts.append(n_video + n_image)
        return counts

    def prepare(self, items: Sequence[DecodedRequest], generation: GenerationSettings) -> PreparedBatch:
        """Render prompts and run the processor for requests that share visual shapes."""
        start = time.perf_counter()
        prompts = [self.render_prompt(it.request, it.videos) for it in items]
        inputs = self.processor_inputs(items, prompts)
        visual_tokens = self._check_visual_tokens(items, inputs)
        if self.model is not None:
            inputs = _to_device(inputs, self.model)
        return PreparedBatch(
            list(items), prompts, inputs, visual_tokens, generation, {"preprocess": time.perf_counter() - start}
        )

    # ------------------------------------------------------------------ generation

    def generate(self, requests: Sequence[Request | DecodedRequest], batch_size: int = 8) -> list[Result]:
        """Answer requests in batches of at most ``batch_size``; one result per request, in order.

        ``continuous`` (the default scheduler): at most ``batch_size`` requests run at once, each
        leaves at its own end and the next joins at once (:mod:`videolmm.models.scheduler`).
        ``static``: requests are grouped by visual shapes and generation settings (a batch must
        share them); each group runs through the ``generate_batch`` hook until its longest answer
        ends.
        """
        self._require_model()
        decoded = [self.decode(r) for r in requests]
        if self.continuous:
            from videolmm.models.scheduler import generate_continuous

            return generate_continuous(self, decoded, max_batch_size=batch_size)
        return self.generate_static(decoded, batch_size=batch_size)

    def generate_static(self, decoded: Sequence[DecodedRequest], batch_size: int = 8) -> list[Result]:
        """The static path: groups of equal shapes and settings, each run to its longest answer."""
        results: list[Result | None] = [None] * len(decoded)
        groups: dict[Any, list[int]] = defaultdict(list)
        for i, item in enumerate(decoded):
            if item.error is not None:
                results[i] = _failed(item, item.error)
            else:
                groups[_group_key(item)].append(i)
        for indices in groups.values():
            for chunk in _chunks(indices, max(1, batch_size)):
                for i, res in zip(chunk, self._run_isolated([decoded[i] for i in chunk]), strict=True):
                    results[i] = res
        return [r for r in results if r is not None]

    @property
    def context_length(self) -> int | None:
        """Tokens the language model can attend over: ``max_position_embeddings`` times a RoPE
        scaling factor when the config declares one (``rope_scaling``/``rope_parameters`` or a flat
        ``factor``, as some LLaVA-NeXT-Video configs have); None when the config does not say."""
        text = getattr(self.config, "text_config", None) or self.config
        positions = getattr(text, "max_position_embeddings", None)
        if not isinstance(positions, int) or positions <= 0:
            return None
        factors = [getattr(text, "factor", None)]
        for name in ("rope_scaling", "rope_parameters"):
            scaling = getattr(text, name, None)
            if isinstance(scaling, Mapping):
                factors.append(scaling.get("factor"))
        factor = max([1.0, *(float(f) for f in factors if isinstance(f, int | float))])
        return int(positions * factor)

    def check_context(self, batch: PreparedBatch, per_request: bool = False) -> None:
        """Refuse a batch whose prompt tokens plus ``max_new_tokens`` exceed :attr:`context_length`
        (each request's own ``max_new_tokens`` with ``per_request``, else the batch's).

        Raises:
            ContextLengthExceeded: naming the request, its prompt tokens (visual included), the
                requested new tokens and the model's context.
        """
        limit = self.context_length
        if limit is None:
            return
        lengths = [int(n) for n in batch.inputs["attention_mask"].sum(dim=1).tolist()]
        for item, prompt, visual in zip(batch.items, lengths, batch.visual_tokens, strict=True):
            wanted = (item.request.generation if per_request else batch.generation).max_new_tokens
            if prompt + wanted > limit:
                raise ContextLengthExceeded(
                    f"request {item.request.request_id or '-'}: the prompt is {prompt} tokens ({visual} visual) and "
                    f"max_new_tokens is {wanted}: {prompt + wanted} tokens exceed the model's context of {limit} "
                    "tokens; shorten the question, send fewer frames or ask for fewer tokens"
                )

    def _run_isolated(self, items: list[DecodedRequest]) -> list[Result]:
        try:
            batch = self.prepare(items, items[0].request.generation)
            self.check_context(batch)
            out = self.run_batch(batch) if self.hooks is None else self.hooks.generate_batch(engine=self, batch=batch)
            if out is None or len(out) != len(items):
                raise RuntimeError("generate_batch returned no result for some requests")
            return list(out)
        except Exception as exc:  # isolate: retry one by one so only the culprit fails
            if len(items) > 1:
                rids = ",".join(it.request.request_id or "-" for it in items)
                reason = error_text(exc)
                logger.warning("batch of %d (requests %s) failed (%s); retrying one by one", len(items), rids, reason)
                return [res for it in items for res in self._run_isolated([it])]
            logger.warning("request %s failed: %s", items[0].request.request_id or "-", error_text(exc))
            return [_failed(items[0], error_text(exc))]

    def run_batch(self, batch: PreparedBatch) -> list[Result]:
        """Call ``model.generate`` on a prepared batch (the built-in ``generate_batch``)."""
        import torch

        gen = batch.generation
        tokenizer = self.processor.tokenizer
        kwargs: dict[str, Any] = {
            "max_new_tokens": gen.max_new_tokens,
            "do_sample": gen.do_sample,
            "num_beams": gen.num_beams,
            "pad_token_id": tokenizer.pad_token_id,
        }
        if gen.do_sample:
            kwargs["temperature"] = gen.temperature
            if gen.top_p is not None:
                kwargs["top_p"] = gen.top_p
        else:  # silence sampling defaults a checkpoint's generation_config may carry
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if gen.stop:
            kwargs.update(stop_strings=list(gen.stop), tokenizer=tokenizer)
        if gen.seed is not None:
            torch.manual_seed(gen.seed)
        start = time.perf_counter()
        with torch.inference_mode():
            out = self.model.generate(**batch.inputs, **kwargs)
        elapsed = time.perf_counter() - start
        prompt_len = batch.inputs["input_ids"].shape[1]
        new_tokens = out[:, prompt_len:]
        stop_ids = {i for i in (tokenizer.eos_token_id, tokenizer.pad_token_id) if i is not None}
        mask = batch.inputs["attention_mask"]
        results = []
        for row, item in enumerate(batch.items):
            ids = new_tokens[row].tolist()
            n = next((k for k, t in enumerate(ids) if t in stop_ids), len(ids))
            text = cut_at_stop(tokenizer.decode(ids[:n], skip_special_tokens=True), gen.stop)
            results.append(
                Result(
                    request_id=item.request.request_id,
                    text=text.strip(),
                    usage=Usage(int(mask[row].sum()), n, batch.visual_tokens[row]),
                    prompt=batch.prompts[row],
                    timings={"decode": item.decode_seconds, **batch.timings, "generate": elapsed},
                    frames=tuple(v.indices for v in item.videos),
                    timestamps=tuple(v.timestamps for v in item.videos),
                    finish_reason="length" if n >= gen.max_new_tokens else "stop",
                )
            )
        return results

    # ------------------------------------------------------------------ log-likelihood

    def loglikelihood(self, requests: Sequence[Request | DecodedRequest]) -> list[Result]:
        """Summed log-probability of each request's ``continuation`` after its prompt."""
        self._require_model()
        return [self._loglikelihood_one(self.decode(r)) for r in requests]

    def _loglikelihood_one(self, item: DecodedRequest) -> Result:
        import torch

        if item.error is not None:
            return _failed(item, item.error)
        cont = item.request.continuation
        try:
            if not cont:
                raise PromptError("log-likelihood request without a continuation")
            ctx = self.prepare([item], item.request.generation)
            full_prompt = ctx.prompts[0] + cont
            full = _to_device(self.processor_inputs([item], [full_prompt]), self.model)
            ctx_len = ctx.inputs["input_ids"].shape[1]
            ids = full["input_ids"]
            if ids.shape[1] <= ctx_len:
                raise PromptError(f"continuation {cont!r} adds no tokens after the prompt")
            with torch.inference_mode():
                logits = self.model(**full).logits[0, ctx_len - 1 : -1].float()
            targets = ids[0, ctx_len:]
            logprobs = torch.log_softmax(logits, dim=-1)
            total = float(logprobs.gather(-1, targets[:, None]).sum())
            greedy = bool((logits.argmax(-1) == targets).all())
        except Exception as exc:  # isolate this request
            logger.warning("request %s failed: %s", item.request.request_id or "-", error_text(exc))
            return _failed(item, error_text(exc))
        return Result(
            request_id=item.request.request_id,
            text=cont,
            logprob=total,
            is_greedy=greedy,
            usage=Usage(int(ids.shape[1]), 0, ctx.visual_tokens[0]),
            prompt=ctx.prompts[0],
            frames=tuple(v.indices for v in item.videos),
            timestamps=tuple(v.timestamps for v in item.videos),
        )

    # ------------------------------------------------------------------ inspection

    def describe(self, request: Request | None = None) -> dict[str, Any]:
        """Effective settings as a JSON-ready dict; with a request, also its sampled frames,
        rendered prompt and visual token counts (see :func:`videolmm.models.inspect.describe`)."""
        return describe(self, request)

    @property
    def continuous(self) -> bool:
        """Whether :meth:`generate` runs the continuous scheduler now (``scheduler=continuous`` and
        no plugin wrapping ``generate_batch``)."""
        return self.scheduler == "continuous" and not self._batches_hooked()

    def _batches_hooked(self) -> bool:
        """Whether a plugin besides the built-in one implements ``generate_batch`` (looked up per
        call): its batches then run on the static scheduler, which that hook wraps."""
        impls = getattr(getattr(self.hooks, "generate_batch", None), "get_hookimpls", None)
        hooked = impls is not None and len(impls()) > 1
        if hooked and self.scheduler == "continuous" and not getattr(self, "_warned_hooked", False):
            self._warned_hooked = True
            logger.warning(
                "%s: a plugin implements generate_batch; generating on the static scheduler", self.settings.pretrained
            )
        return hooked

    def _require_model(self) -> None:
        if self.model is None:
            raise ConfigError(f"{self.settings.pretrained}: engine was built with load_model=False")


# ---------------------------------------------------------------------- helpers


def _token_id(processor: Any, kind: str) -> int | None:
    value = getattr(processor, f"{kind}_token_id", None)
    if value is not None:
        return int(value)
    token = getattr(processor, f"{kind}_token", None)
    return processor.tokenizer.convert_tokens_to_ids(token) if token else None


def _to_device(inputs: Any, model: Any) -> Any:
    import torch

    device, dtype = model.device, model.dtype
    return type(inputs)(
        {
            k: (v.to(device, dtype=dtype) if torch.is_floating_point(v) else v.to(device))
            if isinstance(v, torch.Tensor)
            else v
            for k, v in inputs.items()
        }
    )


def _group_key(item: DecodedRequest) -> tuple[Any, ...]:
    return (
        tuple(v.array.shape for v in item.videos),
        tuple(img.shape for img in item.images),
        item.request.generation,
    )


def _chunks(seq: list[int], n: int) -> list[list[int]]:
    return [seq[i : i + n] for i in range(0, len(seq), n)]


def _failed(item: DecodedRequest, error: str) -> Result:
    return Result(request_id=item.request.request_id, error=error, timings={"decode": item.decode_seconds})


__all__ = [
    "DecodedRequest",
    "Engine",
    "EngineSettings",
    "PreparedBatch",
    "cut_at_stop",
    "error_text",
]
