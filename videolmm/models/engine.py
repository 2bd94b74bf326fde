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
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from videolmm.errors import ConfigError, ContextLengthExceeded, PromptError, TokenCountMismatch
from videolmm.media import decoders as media_mod
from videolmm.media.cache import FrameCache
from videolmm.media.images import load_image
from videolmm.models.families.base import Family, LoadOptions, read_config_dict
from videolmm.models.prompts import build_content
from videolmm.registry import Registry
from videolmm.types import (
    Frames,
    GenerationSettings,
    MediaSettings,
    Request,
    Result,
    SamplingSpec,
    Usage,
)

logger = logging.getLogger(__name__)

CANONICAL_VIDEO = "<video>"
CANONICAL_IMAGE = "<image>"


def error_text(exc: BaseException) -> str:
    """``"ErrorType: message"`` — the form every per-sample error takes."""
    return f"{type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class DecodedRequest:
    """A request with its media decoded (or the reason it could not be).

    Attributes:
        request: the original request.
        videos: one :class:`Frames` per video source, in order.
        images: RGB images as ``(H, W, 3)`` uint8 arrays, in order.
        error: ``"ErrorType: message"`` when decoding failed, else None.
        decode_seconds: wall time spent decoding this request's media.
    """

    request: Request
    videos: tuple[Frames, ...] = ()
    images: tuple[np.ndarray, ...] = ()
    error: str | None = None
    decode_seconds: float = 0.0


@dataclass
class PreparedBatch:
    """Requests that share visual shapes and generation settings, ready for the model.

    Attributes:
        items: the decoded requests, in batch order.
        prompts: the rendered prompt of each item.
        inputs: processor output (``input_ids`` ``(B, L)`` left-padded, ``attention_mask``,
            ``pixel_values_videos`` ``(B, T, 3, H, W)`` and/or image tensors) on the model's
            device.
        visual_tokens: visual placeholder tokens per item (checked against the config).
        generation: the batch's shared generation settings.
        timings: seconds spent per stage for the whole batch.
    """

    items: list[DecodedRequest]
    prompts: list[str]
    inputs: Any
    visual_tokens: list[int]
    generation: GenerationSettings
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class EngineSettings:
    """The effective settings of an engine: everything that decides the model's input.

    Attributes:
        pretrained: checkpoint path or hub id.
        family: family name.
        template: conversation template name.
        system_prompt: replacement system message, or None for the template's own.
        media: decoder, sampler and sampling numbers.
        family_options: family-specific options as applied to the config.
        load: device, dtype and quantisation.
    """

    pretrained: str
    family: str
    template: str
    system_prompt: str | None
    media: MediaSettings
    family_options: Mapping[str, Any]
    load: LoadOptions


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
        registry.decoder(settings.media.decoder)  # fail early on unknown names
        registry.sampler(settings.media.sampler)
        if settings.media.frames_sampler:
            registry.sampler(settings.media.frames_sampler)
        #: Optional on-disk cache of decoded frames (``VIDEOLMM_FRAME_CACHE``); None decodes every time.
        self.frame_cache: FrameCache | None = FrameCache.from_env()

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_pretrained(
        cls,
        pretrained: str,
        *,
        registry: Registry,
        hooks: Any = None,
        family: str | None = None,
        template: str | None = None,
        system_prompt: str | None = None,
        decoder: str | None = None,
        sampler: str | None = None,
        num_frames: int | None = None,
        fps: float | None = None,
        force_sample: bool | None = None,
        reverse_frames: bool | None = None,
        family_options: Mapping[str, Any] | None = None,
        load: LoadOptions | None = None,
        load_model: bool = True,
    ) -> Engine:
        """Load a checkpoint with the seed's defaults, each overridable.

        Args:
            pretrained: local directory or hub id.
            registry: the component registry (built by the plugin host, :mod:`videolmm.load`).
            hooks: the host's hook caller (``pm.hook``): ``resolve_family`` and ``generate_batch``.
            family: family name; None detects it from ``config.json`` (``resolve_family`` hook).
            template: conversation template; None takes the family's choice for this checkpoint.
            system_prompt: replaces the template's system message.
            decoder, sampler, num_frames, fps, force_sample, reverse_frames: media overrides.
            family_options: family-specific options (e.g. ``spatial_pool_stride``).
            load: device, dtype, attention and quantisation options.
            load_model: False loads config and processor only (for ``videolmm inspect``).

        Raises:
            ConfigError / RegistryError: a name or option is unknown (the message lists the
                known ones).
        """
        load = load or LoadOptions()
        if family is None:
            family = detect_family(pretrained, hooks=hooks, revision=load.revision)
        fam: Family = registry.family(family)
        options = fam.check_options(family_options or {})

        config = fam.load_config(pretrained, load)
        fam.apply_options(config, {k: v for k, v in options.items() if v is not None})
        processor = fam.load_processor(pretrained, config, load)

        template = template or read_checkpoint_defaults(pretrained).get("template")
        media = media_settings(
            fam.media,
            pretrained,
            decoder=decoder,
            sampler=sampler,
            num_frames=num_frames,
            fps=fps,
            force_sample=force_sample,
            reverse_frames=reverse_frames,
        )
        settings = EngineSettings(
            pretrained=str(pretrained),
            family=fam.name,
            template=template or fam.default_template(config),
            system_prompt=system_prompt,
            media=media,
            family_options=fam.effective_options(config),
            load=load,
        )
        model = fam.load_model(pretrained, config, load) if load_model else None
        return cls(
            settings=settings,
            family=fam,
            config=config,
            processor=processor,
            model=model,
            registry=registry,
            hooks=hooks,
        )

    # ------------------------------------------------------------------ media

    def media_for(self, request: Request) -> MediaSettings:
        """The media settings a request runs with (its own override, else the engine's)."""
        return request.media or self.settings.media

    def load_video(self, source: Any, media: MediaSettings | None = None) -> Frames:
        """Decode and sample one video source with the engine's (or the given) settings."""
        media = media or self.settings.media
        name = media_mod.resolve_decoder_name(source, media.decoder)
        sampler = media.sampler_for(name)
        if self.frame_cache is not None:
            return self.frame_cache.load_frames(
                source,
                decoder_name=name,
                decoder=self.registry.decoder(name),
                sampler=self.registry.sampler(sampler),
                spec=media.sampling,
                sampler_name=sampler,
            )
        return media_mod.load_frames(
            source,
            decoder=self.registry.decoder(name),
            sampler=self.registry.sampler(sampler),
            spec=media.sampling,
            sampler_name=sampler,
        )

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
        """The exact prompt text for a request (placeholders in the processor's tokens)."""
        placeholders = [CANONICAL_IMAGE] * len(request.images) + [CANONICAL_VIDEO] * len(request.videos)
        question = request.question
        extras = self.family.content_extras(videos[0], config=self.config) if videos else None
        if extras:
            question = f"{extras}\n{question}"
        content = build_content(question, placeholders)
        system = request.system_prompt if request.system_prompt is not None else self.settings.system_prompt
        prompt = self.template.render(content, system=system, tokenizer=self.processor.tokenizer)
        video_tok = getattr(self.processor, "video_token", CANONICAL_VIDEO)
        image_tok = getattr(self.processor, "image_token", CANONICAL_IMAGE)
        if video_tok != CANONICAL_VIDEO:
            prompt = prompt.replace(CANONICAL_VIDEO, video_tok)
        if image_tok != CANONICAL_IMAGE:
            prompt = prompt.replace(CANONICAL_IMAGE, image_tok)
        return prompt + continuation

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

        Requests are grouped by visual shapes and generation settings (a batch must share
        them); each group runs through the ``generate_batch`` hook.
        """
        self._require_model()
        decoded = [self.decode(r) for r in requests]
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

    def check_context(self, batch: PreparedBatch) -> None:
        """Refuse a batch whose prompt tokens plus ``max_new_tokens`` exceed :attr:`context_length`.

        Raises:
            ContextLengthExceeded: naming the request, its prompt tokens (visual included), the
                requested new tokens and the model's context.
        """
        limit = self.context_length
        if limit is None:
            return
        wanted = batch.generation.max_new_tokens
        lengths = [int(n) for n in batch.inputs["attention_mask"].sum(dim=1).tolist()]
        for item, prompt, visual in zip(batch.items, lengths, batch.visual_tokens, strict=True):
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
        )

    # ------------------------------------------------------------------ inspection

    def describe(self, request: Request | None = None) -> dict[str, Any]:
        """Effective settings as a JSON-ready dict; with a request, also its sampled frames,
        rendered prompt and visual token counts."""
        s = self.settings
        out: dict[str, Any] = {
            "pretrained": s.pretrained,
            "family": s.family,
            "model_class": self.family.model_class,
            "template": s.template,
            "system_prompt": s.system_prompt if s.system_prompt is not None else self.template.system,
            "decoder": s.media.decoder,
            "frame_cache": str(self.frame_cache.root) if self.frame_cache is not None else None,
            "sampler": s.media.sampler,
            "frames_sampler": s.media.frames_sampler,
            "sampling": {
                "num_frames": s.media.sampling.num_frames,
                "fps": s.media.sampling.fps,
                "force_sample": s.media.sampling.force_sample,
                "reverse": s.media.sampling.reverse,
            },
            "family_options": dict(s.family_options),
            **self.family.describe(self.config),
            "processed_frame_size": list(self.family.processed_frame_size(self.processor)),
        }
        h, w = self.family.processed_frame_size(self.processor)
        out["visual_tokens_per_frame"] = self.family.video_tokens_per_frame(self.config, h, w)
        if request is None:
            out["prompt"] = self.render_prompt(Request(question="{question}", videos=("video",)))
            return out
        item = self.decode(request)
        if item.error:
            out["error"] = item.error
            return out
        if item.videos:
            v = item.videos[0]
            out["video"] = {
                "source": v.source,
                "num_source_frames": v.num_source_frames,
                "fps": v.fps,
                "duration": v.duration,
                "sampled_indices": list(v.indices),
                "timestamps": [round(t, 3) for t in v.timestamps],
                "frame_time": v.frame_time,
            }
        batch = self.prepare([item], request.generation)
        out["prompt"] = batch.prompts[0]
        out["visual_tokens_total"] = batch.visual_tokens[0]
        out["prompt_tokens"] = int(batch.inputs["attention_mask"][0].sum())
        return out

    def _require_model(self) -> None:
        if self.model is None:
            raise ConfigError(f"{self.settings.pretrained}: engine was built with load_model=False")


# ---------------------------------------------------------------------- helpers


def detect_family(pretrained: str, *, hooks: Any, revision: str | None = None) -> str:
    """Ask the ``resolve_family`` hook which family loads ``pretrained``.

    Args:
        pretrained: checkpoint directory or hub id.
        hooks: the plugin host's hook caller (``pm.hook``), or None (then ``family=`` is required).
        revision: hub revision.

    Raises:
        ConfigError: no plugin claims the checkpoint (the message names its model_type).
    """
    config = read_config_dict(pretrained, revision=revision)
    name = hooks.resolve_family(config=config, pretrained=str(pretrained)) if hooks is not None else None
    if name is None:
        raise ConfigError(
            f"{pretrained}: no family handles model_type={config.get('model_type')!r} "
            f"(architectures={config.get('architectures')}); pass family=NAME"
        )
    return name


#: Optional file in a checkpoint directory declaring the settings it was trained or converted
#: with: ``{"num_frames": 8, "sampler": "uniform", "decoder": "decord", "fps": null,
#: "force_sample": false, "template": "vicuna_v1"}`` (every key optional). Precedence: an
#: explicit argument, then this file, then the family's seed defaults.
CHECKPOINT_DEFAULTS = "videolmm.json"
_MEDIA_KEYS = {"num_frames", "sampler", "decoder", "fps", "force_sample", "template"}


def read_checkpoint_defaults(pretrained: str) -> dict[str, Any]:
    """The checkpoint's own ``videolmm.json`` defaults (empty when it has none).

    Raises:
        ConfigError: the file is not a JSON object of known keys.
    """
    import json
    from pathlib import Path

    path = Path(str(pretrained)) / CHECKPOINT_DEFAULTS
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict) or set(data) - _MEDIA_KEYS:
        raise ConfigError(f"{path}: expected an object with keys among {sorted(_MEDIA_KEYS)}")
    return data


def checkpoint_media_defaults(pretrained: str, family_media: MediaSettings) -> MediaSettings:
    """The family's media defaults overlaid with the checkpoint's ``videolmm.json``."""
    own = read_checkpoint_defaults(pretrained)
    sampling = family_media.sampling
    return MediaSettings(
        decoder=own.get("decoder", family_media.decoder),
        sampler=own.get("sampler", family_media.sampler),
        sampling=SamplingSpec(
            num_frames=int(own.get("num_frames", sampling.num_frames)),
            fps=own.get("fps", sampling.fps),
            force_sample=bool(own.get("force_sample", sampling.force_sample)),
            reverse=sampling.reverse,
        ),
        frames_sampler=own.get("frames_sampler", family_media.frames_sampler),
    )


def media_settings(
    family_media: MediaSettings,
    pretrained: str,
    *,
    decoder: str | None = None,
    sampler: str | None = None,
    num_frames: int | None = None,
    fps: float | None = None,
    force_sample: bool | None = None,
    reverse_frames: bool | None = None,
) -> MediaSettings:
    """The media settings an engine runs with: explicit values, then the checkpoint's
    ``videolmm.json``, then the family's seed defaults. Pure (no model or processor load), so
    a CPU media deployment computes exactly what the model's engine uses. An explicit ``sampler``
    is used for every source (the family's ``frames_sampler`` no longer applies).

    Raises:
        ConfigError: ``num_frames`` < 1.
    """
    base = checkpoint_media_defaults(pretrained, family_media)
    spec = SamplingSpec(
        num_frames=int(num_frames) if num_frames is not None else base.sampling.num_frames,
        fps=float(fps) if fps is not None else base.sampling.fps,
        force_sample=bool(force_sample) if force_sample is not None else base.sampling.force_sample,
        reverse=bool(reverse_frames) if reverse_frames is not None else base.sampling.reverse,
    )
    if spec.num_frames < 1:
        raise ConfigError(f"num_frames={spec.num_frames}: must be >= 1")
    return MediaSettings(
        decoder=decoder or base.decoder,
        sampler=sampler or base.sampler,
        sampling=spec,
        frames_sampler=None if sampler else base.frames_sampler,
    )


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """Cut ``text`` before the earliest occurrence of any stop string."""
    cut = len(text)
    for s in stop:
        if s:
            pos = text.find(s)
            if pos != -1:
                cut = min(cut, pos)
    return text[:cut]


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


def with_generation(request: Request, **changes: Any) -> Request:
    """A copy of ``request`` with generation settings changed."""
    return replace(request, generation=replace(request.generation, **changes))


__all__ = [
    "DecodedRequest",
    "Engine",
    "EngineSettings",
    "PreparedBatch",
    "cut_at_stop",
    "detect_family",
    "error_text",
    "media_settings",
    "with_generation",
]
