"""The built-in plugin: videolmm's own families, decoders, samplers and templates.

Registered by the plugin manager like any third-party plugin (name ``videolmm.builtin``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from videolmm.plugin.hookspecs import hookimpl


def _families() -> list[Any]:
    from videolmm.models.families.llava_hound.family import LLAVA_HOUND
    from videolmm.models.families.llava_next_video.family import LLAVA_NEXT_VIDEO
    from videolmm.models.families.llava_video_qwen2.family import LLAVA_VIDEO_QWEN2
    from videolmm.models.families.video_llava.family import VIDEO_LLAVA

    return [LLAVA_NEXT_VIDEO, VIDEO_LLAVA, LLAVA_VIDEO_QWEN2, LLAVA_HOUND]


@hookimpl
def register_families(register: Callable[[Any], None]) -> None:
    """Register llava_next_video, video_llava, llava_video_qwen2 and llava_hound."""
    for family in _families():
        register(family)


@hookimpl
def register_decoders(register: Callable[[str, Any], None]) -> None:
    """Register decord, pyav, torchcodec, frames (a directory), images (a list) and keyframe."""
    from videolmm.media.keyframe import KeyframeDecoder
    from videolmm.media.loader import builtin_decoders

    for name, decoder in builtin_decoders().items():
        register(name, decoder)
    register(KeyframeDecoder.name, KeyframeDecoder())


@hookimpl
def register_samplers(register: Callable[[str, Any], None]) -> None:
    """Register uniform, fps (LLaVA-Video) and hound (LLaVA-Hound)."""
    from videolmm.media.sampling import BUILTIN_SAMPLERS

    for name, sampler in BUILTIN_SAMPLERS.items():
        register(name, sampler)


@hookimpl
def register_prompt_templates(register: Callable[[Any], None]) -> None:
    """Register the seeds' conversation templates and hf_chat."""
    from videolmm.models.prompts import BUILTIN_TEMPLATES

    for template in BUILTIN_TEMPLATES:
        register(template)


@hookimpl(trylast=True)
def resolve_family(config: Mapping[str, Any], pretrained: str) -> str | None:
    """Match ``config['model_type']`` against the built-in families' model types.

    An *unconverted* original checkpoint (lmms-lab LLaVA-NeXT-Video / LLaVA-Video, ShareGPTVideo
    LLaVA-Hound) raises ``ConfigError`` naming the ``videolmm convert`` command that makes it
    loadable.
    """
    model_type = config.get("model_type")
    for family in _families():
        if model_type in family.model_types:
            return family.name
    from videolmm.models.families.originals import detect_original_layout

    layout = detect_original_layout(config)
    if layout is not None:
        from videolmm.errors import ConfigError

        raise ConfigError(
            f"{pretrained}: an original {layout} checkpoint (model_type={model_type!r}); convert it first: "
            f"videolmm convert --source {layout} --input {pretrained} --output DIR"
        )
    return None


@hookimpl(trylast=True)
def generate_batch(engine: Any, batch: Any) -> Sequence[Any]:
    """Run the model: ``engine.run_batch(batch)``."""
    return engine.run_batch(batch)
