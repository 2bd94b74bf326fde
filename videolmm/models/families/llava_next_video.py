"""LLaVA-NeXT-Video 7B / 7B-DPO / 7B-32K / 34B / 34B-DPO on transformers' LlavaNextVideo classes.

Seed behaviour reproduced (../shared/docs/seed-facts.md §1–2):
- CLIP features of layer -2 without CLS → 2-D pool (``spatial_pool_mode`` average, stride 2)
  *before* the projector, exactly as the May-2024 LLaVA-NeXT code the checkpoints were
  trained with (transformers' ``LlavaNextVideoPooler``).
- 32 frames, ``np.linspace(0, N-1, 32, dtype=int)`` with decord (the original demo); videolmm's
  default ``keyframe`` decoder returns the same pixels, faster.
- Templates: vicuna_v1 (7B), mistral_instruct (7B-32K, Mistral), mistral_direct (34B, Yi).

Unlike transformers' processor, which hard-codes ``// 4``, the visual token count follows
the configured pool stride and mode.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from videolmm.errors import ConfigError
from videolmm.models.families.base import Family, left_padded, vision_summary
from videolmm.types import MediaSettings, SamplingSpec

POOL_MODES = ("average", "max", "conv")


def pooled_side(grid: int, stride: int) -> int:
    """Output side of a kernel=stride pooling layer over ``grid`` cells (torch's floor rule)."""
    if stride < 1:
        raise ConfigError(f"spatial_pool_stride={stride}: must be >= 1")
    if grid < stride:
        raise ConfigError(f"spatial_pool_stride={stride} is larger than the {grid}×{grid} patch grid")
    return (grid - stride) // stride + 1


def _pooled_processor_class() -> type:
    """A LlavaNextVideoProcessor whose video token count follows the pool stride.

    Built lazily so importing this module does not import transformers.
    """
    from transformers import LlavaNextVideoProcessor
    from transformers.image_utils import get_image_size, to_numpy_array

    class PooledLlavaNextVideoProcessor(LlavaNextVideoProcessor):
        """transformers' processor with ``// 4`` replaced by the configured pool geometry."""

        spatial_pool_stride: int = 2

        def replace_video_token(self, video_inputs: dict | None = None, video_idx: int = 0, **kwargs: Any) -> str:
            video = to_numpy_array(video_inputs["pixel_values_videos"][video_idx])
            height, width = get_image_size(video[0])
            grid_h, grid_w = height // self.patch_size, width // self.patch_size
            if grid_h != grid_w:
                raise ConfigError(f"LlavaNextVideo pools a square patch grid; got {grid_h}×{grid_w} patches")
            side = pooled_side(grid_h, self.spatial_pool_stride)
            return self.video_token * (side * side * video.shape[0])

    return PooledLlavaNextVideoProcessor


class LlavaNextVideoFamily(Family):
    """The ``llava_next_video`` family."""

    def default_template(self, config: Any) -> str:
        text = config.text_config
        if getattr(text, "model_type", "") == "mistral":
            return "mistral_instruct"  # LLaVA-NeXT-Video-7B-32K (Mistral-7B-Instruct-v0.2)
        if getattr(text, "vocab_size", 0) >= 64000:
            return "mistral_direct"  # LLaVA-NeXT-Video-34B(-DPO) on Nous-Hermes-2-Yi-34B
        return "vicuna_v1"  # LLaVA-NeXT-Video-7B(-DPO)

    def apply_options(self, config: Any, options: Mapping[str, Any]) -> None:
        stride = options.get("spatial_pool_stride")
        mode = options.get("spatial_pool_mode")
        if stride is not None:
            config.spatial_pool_stride = int(stride)
        if mode is not None:
            if mode not in POOL_MODES:
                raise ConfigError(f"spatial_pool_mode={mode!r}: expected one of {POOL_MODES}")
            config.spatial_pool_mode = mode

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

    def load_config(self, pretrained: str, load: Any) -> Any:
        """The config, with RoPE scaling that sits flat in ``text_config`` moved into place
        (``llava-hf/LLaVA-NeXT-Video-7B-hf`` revisions 6ae32f6/babe571; seed-facts §1a)."""
        from videolmm.convert.rope import repair_flat_rope_scaling

        config = super().load_config(pretrained, load)
        repair_flat_rope_scaling(config.text_config)
        return config

    def load_processor(self, pretrained: str, config: Any, load: Any) -> Any:
        cls = _pooled_processor_class()
        processor = cls.from_pretrained(pretrained, revision=load.revision, trust_remote_code=load.trust_remote_code)
        processor.spatial_pool_stride = int(config.spatial_pool_stride)
        return left_padded(processor)

    def build_tiny(self, out_dir: Any, *, seed: int = 0, geometry: str = "tiny") -> Path:
        from videolmm.toy.tiny import build_tiny_llava_next_video

        return build_tiny_llava_next_video(out_dir, seed=seed, geometry=geometry)

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
        }


def _rope_scaling(text_config: Any) -> Any:
    rope = getattr(text_config, "rope_scaling", None) or getattr(text_config, "rope_parameters", None)
    return dict(rope) if isinstance(rope, Mapping) else rope


LLAVA_NEXT_VIDEO = LlavaNextVideoFamily(
    name="llava_next_video",
    description="LLaVA-NeXT-Video 7B/7B-DPO/7B-32K/34B/34B-DPO (transformers LlavaNextVideo)",
    model_class="transformers.LlavaNextVideoForConditionalGeneration",
    processor_class="transformers.LlavaNextVideoProcessor",
    model_types=("llava_next_video",),
    media=MediaSettings(decoder="keyframe", sampler="uniform", sampling=SamplingSpec(num_frames=32)),
    lmms_eval_id="llava_next_video",
    options={"spatial_pool_stride": None, "spatial_pool_mode": None},
)

__all__ = ["LLAVA_NEXT_VIDEO", "LlavaNextVideoFamily", "pooled_side"]
