"""LLaVA-Video-7B/72B-Qwen2 (LLaVA-NeXT-Video-Qwen2) as the authors ran it.

Seed behaviour reproduced (../shared/docs/seed-facts.md §1a, §2; LLaVA-NeXT ``llava_arch.py``
and ``playground/demo/video_demo.py``):

- SigLIP so400m/14 at 384 px (27×27 patches) → projector → 2-D pool **after** the projector,
  stride 2, ``bilinear`` by default (``ceil(27/2) = 14``; ``average``/``max``: ``floor`` = 13)
  → one newline embedding after every row of every frame (``mm_newline_position="grid"``):
  14×14 + 14 = **210** tokens per frame (182 with ``average``). See
  :mod:`videolmm.models.families.llava_video_qwen2.modeling` for the model.
- Frames: decord, ``fps`` sampler at 1 frame/s with ``force_sample`` to 64 frames
  (``linspace(0, N-1, 64)``), the seed's ``frame_time`` string.
- Prompt: ``qwen_1_5`` ("You are a helpful assistant.") with the time instruction, byte-exact:
  ``<video>\\n{time instruction}\\n{question}`` (the demo's ``<image>\\n{time_instr}\\n{q}``).

Token counts are derived from the config (patch grid, pool stride and mode, newline position),
never hard-coded (:mod:`.configuration`). This module imports neither torch nor transformers at
import time: the configuration module (whose config class needs transformers) is imported by the
methods that receive a loaded config.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from videolmm.errors import ConfigError
from videolmm.models.families.base import (
    Family,
    LoadOptions,
    import_string,
    left_padded,
    load_converted_config,
)
from videolmm.models.spec import parse_bool
from videolmm.types import Frames, MediaSettings, SamplingSpec

#: The most frames LLaVA-Video was trained with (LLaVA-Video paper); the 7B card says "at most 64".
TRAINED_MAX_FRAMES = 110
#: Frames LLaVA-Video's demo and model card use (``max_frames_num=64``, ``force_sample=True``).
DEFAULT_FRAMES = 64

_PACKAGE = "videolmm.models.families.llava_video_qwen2"

#: EngineSpec ``preset`` values. ``training`` (default): the checkpoint's config and the demo's
#: frames. ``lmms_eval_readme``: the documented eval command (LLaVA-NeXT docs/LLaVA_Video_1003.md
#: @ ec87e87: llava_vid, max_frames_num=64, mm_spatial_pool_mode=average) as lmms-eval's llava_vid
#: of that date (ff0802c) ran it: average pool, grid newlines, no time instruction, linspace 64.
PRESETS: dict[str, dict[str, Any]] = {
    "training": {},
    "lmms_eval_readme": {
        "spatial_pool_mode": "average",
        "spatial_pool_stride": 2,
        "mm_newline_position": "grid",
        "add_time_instruction": False,
        "num_frames": 64,
        "fps": 1.0,
        "force_sample": True,
    },
}


def time_instruction(frames: Frames) -> str:
    """LLaVA-Video's time instruction for one video, byte-exact (no space before "Please").

    ``frame_time`` comes from the ``fps`` sampler (``"0.00s,1.00s,..."``, the seed's quirks
    included); for any other sampler it is built the seed's forced-sampling way, ``i / avg_fps``
    with two decimals.
    """
    frame_time = frames.frame_time
    if frame_time is None:
        frame_time = ",".join(f"{t:.2f}s" for t in frames.timestamps)
    return (
        f"The video lasts for {frames.duration:.2f} seconds, and {frames.num_frames} frames are uniformly sampled "
        f"from it. These frames are located at {frame_time}.Please answer the following questions related to this "
        "video."
    )


def _patch_grid(config: Any) -> int:
    """Patches per side: ``image_size // patch_size`` (the patch convolution has no padding: 384/14 → 27)."""
    vc = config.vision_config
    return vc.image_size // vc.patch_size


class LlavaVideoQwen2Family(Family):
    """The ``llava_video_qwen2`` family."""

    #: See :data:`PRESETS` (read by :func:`videolmm.models.spec.family_preset`).
    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = PRESETS

    def default_template(self, config: Any) -> str:
        return "qwen_1_5"

    def load_config(self, pretrained: str, load: LoadOptions) -> Any:
        """Load :class:`LlavaVideoQwen2Config` (refuses an unconverted lmms-lab checkpoint by name)."""
        return load_converted_config(
            pretrained,
            load,
            model_type="llava_video_qwen2",
            package=_PACKAGE,
            config_class="LlavaVideoQwen2Config",
            convert_hint="--source llava_video_qwen2 --input {pretrained} --output DIR",
        )

    def apply_options(self, config: Any, options: Mapping[str, Any]) -> None:
        from videolmm.models.families.llava_video_qwen2.configuration import NEWLINE_POSITIONS, POOL_MODES, pooled_side

        if "spatial_pool_mode" in options:
            mode = str(options["spatial_pool_mode"])
            if mode not in POOL_MODES:
                raise ConfigError(f"spatial_pool_mode={mode!r}: expected one of {POOL_MODES}")
            config.spatial_pool_mode = mode
        if "spatial_pool_stride" in options:
            config.spatial_pool_stride = int(options["spatial_pool_stride"])
        if "mm_newline_position" in options:
            position = str(options["mm_newline_position"])
            if position not in NEWLINE_POSITIONS:
                raise ConfigError(f"mm_newline_position={position!r}: expected one of {NEWLINE_POSITIONS}")
            config.mm_newline_position = position
        if "add_time_instruction" in options:
            config.add_time_instruction = parse_bool(options["add_time_instruction"], "add_time_instruction")
        if "preset" in options:
            config.videolmm_preset = str(options["preset"])
        pooled_side(_patch_grid(config), config.spatial_pool_stride, config.spatial_pool_mode)  # validate now

    def effective_options(self, config: Any) -> dict[str, Any]:
        return {
            "spatial_pool_mode": config.spatial_pool_mode,
            "spatial_pool_stride": config.spatial_pool_stride,
            "mm_newline_position": config.mm_newline_position,
            "add_time_instruction": bool(getattr(config, "add_time_instruction", True)),
            "preset": getattr(config, "videolmm_preset", "training"),
        }

    def content_extras(self, frames: Any, config: Any = None) -> str | None:
        """The time instruction (unless ``add_time_instruction`` is off in ``config``)."""
        if config is not None and not bool(getattr(config, "add_time_instruction", True)):
            return None
        return time_instruction(frames)

    def video_tokens_per_frame(self, config: Any, height: int, width: int) -> int:
        from videolmm.models.families.llava_video_qwen2.configuration import frame_tokens, pooled_side

        patch = config.vision_config.patch_size
        if height != width:
            raise ConfigError(f"LLaVA-Video pools a square patch grid; frames are {height}×{width} px")
        side = pooled_side(height // patch, config.spatial_pool_stride, config.spatial_pool_mode)
        return frame_tokens(side, config.mm_newline_position)

    def video_tokens(self, config: Any, num_frames: int, height: int, width: int) -> int:
        extra = 1 if config.mm_newline_position == "one_token" else 0
        return self.video_tokens_per_frame(config, height, width) * num_frames + extra

    def load_processor(self, pretrained: str, config: Any, load: LoadOptions) -> Any:
        cls = import_string(self.processor_class)
        processor = cls.from_pretrained(pretrained, revision=load.revision, trust_remote_code=load.trust_remote_code)
        processor.spatial_pool_mode = config.spatial_pool_mode
        processor.spatial_pool_stride = int(config.spatial_pool_stride)
        processor.mm_newline_position = config.mm_newline_position
        return left_padded(processor)

    def describe(self, config: Any) -> dict[str, Any]:
        from videolmm.models.families.llava_video_qwen2.configuration import pooled_side

        vc = config.vision_config
        grid = _patch_grid(config)
        side = pooled_side(grid, config.spatial_pool_stride, config.spatial_pool_mode)
        return {
            "vision_tower": f"{vc.model_type} {vc.image_size}px patch {vc.patch_size} ({grid}×{grid} patches)",
            "vision_feature_layer": config.vision_feature_layer,
            "vision_feature_select_strategy": config.vision_feature_select_strategy,
            "pooling": {
                "mode": config.spatial_pool_mode,
                "stride": config.spatial_pool_stride,
                "where": "after the projector",
                "grid_after_pool": side,
            },
            "newline": f"{config.mm_newline_position} (image_newline embedding)",
            "time_instruction": bool(getattr(config, "add_time_instruction", True)),
            "trained_max_frames": TRAINED_MAX_FRAMES,
            "presets": {
                name: dict(values) or "the checkpoint's config + the demo" for name, values in PRESETS.items()
            },
            "text_model": getattr(config.text_config, "model_type", ""),
        }


LLAVA_VIDEO_QWEN2 = LlavaVideoQwen2Family(
    name="llava_video_qwen2",
    description="LLaVA-Video-7B/72B-Qwen2 (OneVision subclass: pool after projector, grid newlines, time instruction)",
    model_class=f"{_PACKAGE}.modeling.LlavaVideoQwen2ForConditionalGeneration",
    processor_class=f"{_PACKAGE}.processing.LlavaVideoQwen2Processor",
    model_types=("llava_video_qwen2",),
    media=MediaSettings(
        decoder="keyframe",
        sampler="fps",
        sampling=SamplingSpec(num_frames=DEFAULT_FRAMES, fps=1.0, force_sample=True),
    ),
    lmms_eval_id="llava_video_qwen2",
    tiny_builder="videolmm.toy.tiny_families:build_tiny_llava_video_qwen2",
    options={
        "spatial_pool_mode": None,
        "spatial_pool_stride": None,
        "mm_newline_position": None,
        "add_time_instruction": None,
        "preset": "training",
    },
)

__all__ = [
    "DEFAULT_FRAMES",
    "LLAVA_VIDEO_QWEN2",
    "LlavaVideoQwen2Family",
    "PRESETS",
    "TRAINED_MAX_FRAMES",
    "time_instruction",
]
