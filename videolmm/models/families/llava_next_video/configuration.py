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
- :func:`apply_context_policy`: RoPE scaling and context as the seeds ran the checkpoints.

Pure Python: no torch or transformers import.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
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


CONTEXT_POLICIES = ("demo", "llava_vid", "config")
"""``context_policy`` values (see :func:`apply_context_policy`)."""

#: The seeds' base context (``4096 * scaling_factor`` in both seeds' code).
SEED_BASE_CONTEXT = 4096
#: The seeds' allowance for text tokens ("suppose the length of text tokens is around 1000").
SEED_TEXT_TOKENS = 1000


def seed_scaling_factor(num_frames: int, grid: int, stride: int) -> int:
    """``ceil((F·(grid // stride)² + 1000) / 4096)``: the factor both seeds compute from the frame
    count (LLaVA-NeXT ``playground/demo/video_demo.py``; lmms-eval ``llava_vid`` @ 2c03baf)."""
    return math.ceil((num_frames * (grid // stride) ** 2 + SEED_TEXT_TOKENS) / SEED_BASE_CONTEXT)


def is_vicuna(text_config: Any) -> bool:
    """The demo's ``"vicuna" in _name_or_path``: Llama below Yi's 64000 entries (not Mistral, Yi)."""
    return getattr(text_config, "model_type", "") == "llama" and int(getattr(text_config, "vocab_size", 0)) < 64000


def _rope_factor(text_config: Any) -> float | None:
    for name in ("rope_scaling", "rope_parameters"):
        rope = getattr(text_config, name, None)
        if isinstance(rope, Mapping) and rope.get("rope_type", rope.get("type", "default")) != "default":
            return float(rope.get("factor", 1.0))
    return None


def apply_context_policy(config: Any, policy: str, num_frames: int) -> dict[str, Any]:
    """Set RoPE scaling and the context the engine allows as the seed ``policy`` ran the model
    (``f = seed_scaling_factor(...)``; nothing changes while ``f < 2``).

    - ``demo`` (LLaVA-NeXT ``playground/demo/video_demo.py``, video_inference @ 9fcbebe, HEAD @
      df17966): Vicuna gets linear RoPE ``f`` in place of its config's (the demo overwrites
      ``rope_scaling``: the 7B-DPO's 2.5 runs as 2 at 32 frames, issue 16 item 8); other text
      models (Yi-34B, Mistral) keep unscaled RoPE; every model may run ``4096·f`` tokens
      (``max_sequence_length``). The engine's limit is ``max_position_embeddings × factor``, so the
      former is raised to cover ``4096·f`` (never lowered; non-dynamic RoPE does not read it).
    - ``llava_vid`` (lmms-eval ``llava_vid`` @ 2c03baf): linear ``f`` on every model, ``4096·f``.
    - ``config``: the config unchanged (the 34B then refuses 32 frames).

    Returns:
        What was decided, for ``videolmm inspect``.

    Raises:
        ConfigError: an unknown policy.
    """
    if policy not in CONTEXT_POLICIES:
        raise ConfigError(f"context_policy={policy!r}: expected one of {CONTEXT_POLICIES}")
    text, vc = config.text_config, config.vision_config
    factor = seed_scaling_factor(num_frames, vc.image_size // vc.patch_size, int(config.spatial_pool_stride))
    record = {"policy": policy, "seed_scaling_factor": factor, "frames": num_frames}
    record["hub_max_position_embeddings"] = text.max_position_embeddings
    if policy != "config" and factor >= 2:
        if policy == "llava_vid" or is_vicuna(text):
            params = dict(getattr(text, "rope_parameters", None) or {})
            params.update(rope_type="linear", factor=float(factor))
            text.rope_parameters = params
        wanted = SEED_BASE_CONTEXT * factor
        if text.max_position_embeddings * (_rope_factor(text) or 1.0) < wanted:
            text.max_position_embeddings = math.ceil(wanted / (_rope_factor(text) or 1.0))
    current = _rope_factor(text) or 1.0
    record["rope_factor"] = _rope_factor(text)
    record["context_tokens"] = int(text.max_position_embeddings * current)
    return record


__all__ = [
    "CONTEXT_POLICIES",
    "POOL_MODES",
    "apply_context_policy",
    "flat_rope_keys",
    "is_vicuna",
    "pooled_side",
    "repair_flat_rope_scaling",
    "seed_scaling_factor",
]
