"""LLaVA-Video-Qwen2's configuration and its token math.

:class:`LlavaVideoQwen2Config` is LlavaOnevision's configuration plus LLaVA-Video's video-path
settings (pool mode and stride, newline position, time instruction). :func:`pooled_side`,
:func:`frame_tokens` and :func:`video_token_count` compute the number of visual tokens from those
settings, as LLaVA-NeXT's ``get_2dPool`` and ``add_token_per_grid`` produce them (SigLIP 384/14,
bilinear stride 2, grid newlines: 14×14 + 14 = 210 per frame; ../shared/docs/seed-facts.md §1a).
The model (:mod:`.modeling`) and the processor (:mod:`.processing`) both use them.
"""

from __future__ import annotations

import math

from huggingface_hub.dataclasses import strict
from transformers import LlavaOnevisionConfig

from videolmm.errors import ConfigError

#: ``mm_spatial_pool_mode`` values LLaVA-NeXT's ``get_2dPool`` implements.
POOL_MODES = ("bilinear", "average", "max")
#: ``mm_newline_position`` values LLaVA-NeXT's ``prepare_inputs_labels_for_multimodal`` implements.
NEWLINE_POSITIONS = ("grid", "frame", "one_token", "no_token")
MODEL_TYPE = "llava_video_qwen2"


@strict
class LlavaVideoQwen2Config(LlavaOnevisionConfig):
    r"""LlavaOnevision's configuration plus LLaVA-Video's video-path settings.

    spatial_pool_mode (`str`, *optional*, defaults to `"bilinear"`):
        2-D pooling of each frame's projected features: `"bilinear"`, `"average"` or `"max"`
        (the seed's `mm_spatial_pool_mode`).
    spatial_pool_stride (`int`, *optional*, defaults to 2):
        Pool stride (the seed's `mm_spatial_pool_stride`); 1 disables the pool.
    mm_newline_position (`str`, *optional*, defaults to `"grid"`):
        Where the `image_newline` embedding goes in a video: `"grid"`, `"frame"`, `"one_token"`
        or `"no_token"`.
    add_time_instruction (`bool`, *optional*, defaults to `True`):
        Whether prompts carry LLaVA-Video's time instruction (read by videolmm's prompt builder,
        not by the model).
    """

    model_type = MODEL_TYPE

    spatial_pool_mode: str = "bilinear"
    spatial_pool_stride: int = 2
    mm_newline_position: str = "grid"
    add_time_instruction: bool = True


def pooled_side(grid: int, stride: int, mode: str) -> int:
    """Side of the pooled patch grid, as LLaVA-NeXT's ``get_2dPool`` computes it.

    Args:
        grid: patches per side (27 for SigLIP 384/14).
        stride: pool stride; 1 means no pooling (the seed pools only when the stride is > 1).
        mode: ``bilinear`` (``ceil(grid / stride)``, ``F.interpolate``) or ``average`` / ``max``
            (``floor(grid / stride)``, kernel = stride).

    Returns:
        The pooled side (27 → 14 bilinear, 13 average/max).

    Raises:
        ConfigError: unknown mode, stride < 1, or a stride larger than the grid.
    """
    if mode not in POOL_MODES:
        raise ConfigError(f"spatial_pool_mode={mode!r}: expected one of {POOL_MODES}")
    if stride < 1:
        raise ConfigError(f"spatial_pool_stride={stride}: must be >= 1")
    if stride == 1:
        return grid
    if grid < stride:
        raise ConfigError(f"spatial_pool_stride={stride} is larger than the {grid}×{grid} patch grid")
    if mode == "bilinear":
        return math.ceil(grid / stride)
    return (grid - stride) // stride + 1


def frame_tokens(side: int, position: str) -> int:
    """Tokens one pooled frame of ``side``×``side`` becomes, newlines included."""
    if position not in NEWLINE_POSITIONS:
        raise ConfigError(f"mm_newline_position={position!r}: expected one of {NEWLINE_POSITIONS}")
    extra = {"grid": side, "frame": 1}.get(position, 0)
    return side * side + extra


def video_token_count(num_frames: int, grid: int, stride: int, mode: str, position: str) -> int:
    """Visual tokens of a whole video: frames × per-frame tokens, plus ``one_token``'s single newline.

    Args:
        num_frames: sampled frames.
        grid: patches per side.
        stride: pool stride.
        mode: pool mode.
        position: newline position.

    Returns:
        The number of video placeholder tokens the prompt needs.
    """
    per_frame = frame_tokens(pooled_side(grid, stride, mode), position)
    return num_frames * per_frame + (1 if position == "one_token" else 0)


def register_auto_config() -> None:
    """Make ``AutoConfig`` (and the Auto processor classes, which consult it) know ``llava_video_qwen2``.

    Idempotent; called by the family when it loads a checkpoint, never at import.
    """
    from transformers import AutoConfig

    AutoConfig.register(MODEL_TYPE, LlavaVideoQwen2Config, exist_ok=True)


__all__ = [
    "MODEL_TYPE",
    "NEWLINE_POSITIONS",
    "POOL_MODES",
    "LlavaVideoQwen2Config",
    "frame_tokens",
    "pooled_side",
    "register_auto_config",
    "video_token_count",
]
