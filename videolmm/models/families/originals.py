"""Original (unconverted) checkpoint layouts, told apart by their ``config.json``.

lmms-lab's LLaVA-NeXT-Video and LLaVA-Video and ShareGPTVideo's LLaVA-Hound publish LLaVA-NeXT /
LLaVA-Hound code-base checkpoints (``model_type`` ``llava_llama``, ``llava_mistral``,
``llava_qwen``) that no family loads; ``videolmm convert`` turns them into ones that do. The
built-in ``resolve_family`` names the conversion when it meets one, and the converter checks its
input with the same tests. Pure Python: no torch or transformers import.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


def is_original_llava_next_video(config: Mapping[str, Any]) -> bool:
    """LLaVA-NeXT's ``LlavaLlamaForCausalLM`` / ``LlavaMistralForCausalLM`` with the spatial pool."""
    return (
        config.get("model_type") in ("llava_llama", "llava_mistral")
        and "mm_vision_tower" in config
        and "mm_video_tower" not in config
        and ("mm_spatial_pool_stride" in config or config.get("mm_resampler_type") == "spatial_pool")
    )


def is_original_llava_video_qwen2(config: Mapping[str, Any]) -> bool:
    """LLaVA-NeXT's ``LlavaQwenForCausalLM`` (LLaVA-Video-7B/72B-Qwen2)."""
    return config.get("model_type") == "llava_qwen" and "mm_vision_tower" in config


def is_original_llava_hound(config: Mapping[str, Any]) -> bool:
    """LLaVA-Hound's ``LlavaLlamaForCausalLM`` (a LanguageBind video tower)."""
    return config.get("model_type") == "llava_llama" and "mm_video_tower" in config


#: Layout name (``videolmm convert --source``) → its test, in the order they are tried.
ORIGINAL_LAYOUTS: dict[str, Callable[[Mapping[str, Any]], bool]] = {
    "llava_next_video": is_original_llava_next_video,
    "llava_video_qwen2": is_original_llava_video_qwen2,
    "llava_hound": is_original_llava_hound,
}


def detect_original_layout(config: Mapping[str, Any]) -> str | None:
    """The original layout a ``config.json`` belongs to (a ``videolmm convert --source`` name), or None."""
    for name, test in ORIGINAL_LAYOUTS.items():
        if test(config):
            return name
    return None


__all__ = [
    "ORIGINAL_LAYOUTS",
    "detect_original_layout",
    "is_original_llava_hound",
    "is_original_llava_next_video",
    "is_original_llava_video_qwen2",
]
