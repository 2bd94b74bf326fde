"""LLaVA-NeXT-Video's config-level facts: the pool geometry and a RoPE repair.

- :func:`pooled_side`: the side of the patch grid after transformers' ``LlavaNextVideoPooler``
  (kernel = stride, torch's floor rule), for every ``spatial_pool_mode`` in :data:`POOL_MODES`.
- :func:`repair_flat_rope_scaling`: transformers' ``convert_llava_next_video_weights_to_hf.py``
  wrote LLaVA-NeXT-Video-7B(-DPO)'s linear RoPE scaling as ``text_config.update({"factor": 2.0,
  "type": "linear"})``: the keys land *flat* in ``text_config`` instead of under ``rope_scaling``
  (revisions ``6ae32f6`` / ``babe571`` of ``llava-hf/LLaVA-NeXT-Video-7B-hf``, seed-facts §1a).
  transformers then keeps them as stray attributes and runs the model with *no* scaling, although
  the checkpoint was converted to use it (the seed's demo computes factor
  ``ceil((32·144 + 1000) / 4096) = 2`` for 32 frames). The family repairs such configs when it
  loads them; the converter writes the scaling in its proper place.

Pure Python: no torch or transformers import.
"""

from __future__ import annotations

from typing import Any

from videolmm.errors import ConfigError

POOL_MODES = ("average", "max", "conv")
"""``spatial_pool_mode`` values transformers' ``LlavaNextVideoPooler`` implements."""


def pooled_side(grid: int, stride: int) -> int:
    """Output side of a kernel=stride pooling layer over ``grid`` cells (torch's floor rule)."""
    if stride < 1:
        raise ConfigError(f"spatial_pool_stride={stride}: must be >= 1")
    if grid < stride:
        raise ConfigError(f"spatial_pool_stride={stride} is larger than the {grid}×{grid} patch grid")
    return (grid - stride) // stride + 1


#: RoPE types a flat ``type`` key may name (transformers' ``ROPE_INIT_FUNCTIONS`` keys).
_KNOWN_TYPES = ("linear", "dynamic", "yarn", "longrope", "llama3")


def flat_rope_keys(text_config: Any) -> tuple[float, str] | None:
    """``(factor, type)`` when ``text_config`` carries them as flat attributes, else None."""
    factor = getattr(text_config, "factor", None)
    kind = getattr(text_config, "type", None)
    if factor is None or kind is None:
        return None
    return float(factor), str(kind)


def repair_flat_rope_scaling(text_config: Any) -> dict[str, Any] | None:
    """Move flat ``factor`` / ``type`` keys of a text config into its RoPE parameters.

    Nothing changes when the keys are absent, when the config already has a non-default RoPE
    type (an explicit ``rope_scaling`` wins), or when ``type`` is not a RoPE type.

    Args:
        text_config: a transformers text config (``LlamaConfig``, ...), modified in place.

    Returns:
        The new ``rope_parameters`` when a repair was made, else None.
    """
    flat = flat_rope_keys(text_config)
    if flat is None:
        return None
    factor, kind = flat
    params = dict(getattr(text_config, "rope_parameters", None) or {})
    if kind not in _KNOWN_TYPES or params.get("rope_type", "default") != "default":
        return None
    params.update(rope_type=kind, factor=factor)
    text_config.rope_parameters = params
    for stray in ("factor", "type"):
        if stray in vars(text_config):
            delattr(text_config, stray)
    return params


__all__ = ["POOL_MODES", "flat_rope_keys", "pooled_side", "repair_flat_rope_scaling"]
