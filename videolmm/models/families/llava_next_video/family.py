"""LLaVA-NeXT-Video 7B / 7B-DPO / 7B-32K / 34B / 34B-DPO on transformers' LlavaNextVideo classes.

Seed behaviour reproduced (../shared/docs/seed-facts.md §1–2):
- CLIP features of layer -2 without CLS → 2-D pool (``spatial_pool_mode`` average, stride 2)
  *before* the projector, exactly as the May-2024 LLaVA-NeXT code the checkpoints were
  trained with (transformers' ``LlavaNextVideoPooler``).
- 32 frames, ``np.linspace(0, N-1, 32, dtype=int)`` with decord (the original demo); videolmm's
  default ``keyframe`` decoder returns the same pixels, faster.
- Templates: vicuna_v1 (7B), mistral_direct (34B on Yi, and 7B-32K on Mistral: the maintainers'
  answer in LLaVA-VL/LLaVA-NeXT#54; ``conv_template=mistral_instruct`` gives the transformers chat
  template's format). See docs/fidelity.md.

Unlike transformers' processor, which hard-codes ``// 4``, the visual token count follows
the configured pool stride and mode.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from videolmm.errors import ConfigError
from videolmm.models.families.base import Family, LoadOptions, vision_summary
from videolmm.models.families.llava_next_video.configuration import (
    POOL_MODES,
    apply_context_policy,
    pooled_side,
    repair_flat_rope_scaling,
)
from videolmm.types import MediaSettings, SamplingSpec

_PROCESSING = "videolmm.models.families.llava_next_video.processing"


class LlavaNextVideoFamily(Family):
    """The ``llava_next_video`` family."""

    def default_template(self, config: Any) -> str:
        text = config.text_config
        if getattr(text, "model_type", "") == "mistral":
            return "mistral_direct"  # LLaVA-NeXT-Video-7B-32K: "the conv model should be mistral_direct" (#54)
        if getattr(text, "vocab_size", 0) >= 64000:
            return "mistral_direct"  # LLaVA-NeXT-Video-34B(-DPO) on Nous-Hermes-2-Yi-34B
        return "vicuna_v1"  # LLaVA-NeXT-Video-7B(-DPO)

    def options_for_media(self, options: Mapping[str, Any], media: MediaSettings) -> dict[str, Any]:
        """``options`` plus the engine's frame count (``context_frames``, for the context policy)."""
        return {**options, "context_frames": media.sampling.num_frames}

    def apply_options(self, config: Any, options: Mapping[str, Any]) -> None:
        stride = options.get("spatial_pool_stride")
        mode = options.get("spatial_pool_mode")
        if stride is not None:
            config.spatial_pool_stride = int(stride)
        if mode is not None:
            if mode not in POOL_MODES:
                raise ConfigError(f"spatial_pool_mode={mode!r}: expected one of {POOL_MODES}")
            config.spatial_pool_mode = mode
        frames = int(options.get("context_frames") or self.media.sampling.num_frames)
        policy = str(options.get("context_policy") or "demo")
        config.videolmm_context = apply_context_policy(config, policy, frames)

    def effective_options(self, config: Any) -> dict[str, Any]:
        return {"spatial_pool_stride": config.spatial_pool_stride, "spatial_pool_mode": config.spatial_pool_mode}

    def video_tokens_per_frame(self, config: Any, height: int, width: int) -> int:
        if config.vision_feature_select_strategy != "default":
            raise ConfigError(
                "LlavaNextVideo pools the patch grid without CLS: vision_feature_select_strategy must be 'default', "
                f"got {config.vision_feature_select_strategy!r}"
            )
        patch = config.vision_config.patch_size
        return pooled_side(height // patch, config.spatial_pool_stride) * pooled_side(
            width // patch, config.spatial_pool_stride
        )

    def load_config(self, pretrained: str, load: LoadOptions) -> Any:
        """The config, with RoPE scaling that sits flat in ``text_config`` moved into place
        (``llava-hf/LLaVA-NeXT-Video-7B-hf`` revisions 6ae32f6/babe571; seed-facts §1a)."""
        config = super().load_config(pretrained, load)
        repair_flat_rope_scaling(config.text_config)
        return config

    def load_processor(self, pretrained: str, config: Any, load: LoadOptions) -> Any:
        """The pooled processor, its video token count following the config's pool stride."""
        processor = super().load_processor(pretrained, config, load)
        processor.spatial_pool_stride = int(config.spatial_pool_stride)
        tokens = (getattr(config, "videolmm_context", None) or {}).get("context_tokens")
        if tokens and int(getattr(processor.tokenizer, "model_max_length", 0) or 0) < tokens:
            processor.tokenizer.model_max_length = tokens  # the demo's tokenizer_model_max_length = 4096·f
        return processor

    def describe(self, config: Any) -> dict[str, Any]:
        vc = config.vision_config
        grid = vc.image_size // vc.patch_size
        return {
            **vision_summary(config),
            "vision_feature_select_strategy": config.vision_feature_select_strategy,
            "pooling": {
                "mode": config.spatial_pool_mode,
                "stride": config.spatial_pool_stride,
                "where": "before the projector",
                "grid_after_pool": pooled_side(grid, config.spatial_pool_stride),
            },
            "newline": "none (transformers LlavaNextVideo video path)",
            "text_model": getattr(config.text_config, "model_type", ""),
            "rope_scaling": _rope_scaling(config.text_config),
            "context": getattr(config, "videolmm_context", None),
        }


def _rope_scaling(text_config: Any) -> Any:
    rope = getattr(text_config, "rope_scaling", None) or getattr(text_config, "rope_parameters", None)
    return dict(rope) if isinstance(rope, Mapping) else rope


LLAVA_NEXT_VIDEO = LlavaNextVideoFamily(
    name="llava_next_video",
    description="LLaVA-NeXT-Video 7B/7B-DPO/7B-32K/34B/34B-DPO (transformers LlavaNextVideo)",
    model_class="transformers.LlavaNextVideoForConditionalGeneration",
    processor_class=f"{_PROCESSING}.PooledLlavaNextVideoProcessor",
    model_types=("llava_next_video",),
    media=MediaSettings(decoder="keyframe", sampler="uniform", sampling=SamplingSpec(num_frames=32)),
    lmms_eval_id="llava_next_video",
    tiny_builder="videolmm.toy.tiny_34b:build_tiny_llava_next_video_any",
    options={"spatial_pool_stride": None, "spatial_pool_mode": None, "context_policy": None},
)

__all__ = ["LLAVA_NEXT_VIDEO", "LlavaNextVideoFamily"]
