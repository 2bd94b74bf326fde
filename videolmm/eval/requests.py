"""lmms-eval's request pieces as the core's: visuals split into videos and images, gen_kwargs as settings."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from videolmm.errors import ConfigError
from videolmm.eval.until import task_stop
from videolmm.media.images import IMAGE_SUFFIXES as IMAGE_EXTENSIONS
from videolmm.types import GenerationSettings


def split_visuals(visuals: Sequence[Any]) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """Split a task's ``doc_to_visual`` output into (videos, images).

    Strings and paths are videos unless they end in an image extension; directories are
    frame folders (videos); PIL images and arrays are images.
    """
    videos: list[Any] = []
    images: list[Any] = []
    for v in visuals:
        if isinstance(v, (str, os.PathLike)):
            (images if str(v).lower().endswith(IMAGE_EXTENSIONS) else videos).append(str(v))
        elif isinstance(v, (bytes, bytearray)):
            videos.append(bytes(v))
        elif hasattr(v, "convert") or hasattr(v, "shape"):
            images.append(v)
        else:
            raise ConfigError(f"unsupported visual of type {type(v).__name__} from doc_to_visual")
    return tuple(videos), tuple(images)


def generation_from_kwargs(gen_kwargs: dict[str, Any], default_max_new_tokens: int) -> GenerationSettings:
    """Map lmms-eval's ``gen_kwargs`` to :class:`GenerationSettings` (greedy unless sampling).

    Only a task's own ``until`` becomes stop strings; the ``["\\n\\n"]`` lmms-eval injects into tasks
    that set none is dropped (:mod:`videolmm.eval.until`), as the seeds' wrappers do.
    """
    until = task_stop(gen_kwargs)
    temperature = float(gen_kwargs.get("temperature") or 0.0)
    if gen_kwargs.get("do_sample") is False:
        temperature = 0.0
    top_p = gen_kwargs.get("top_p")
    return GenerationSettings(
        max_new_tokens=int(gen_kwargs.get("max_new_tokens") or default_max_new_tokens),
        temperature=temperature,
        top_p=float(top_p) if top_p is not None else None,
        num_beams=int(gen_kwargs.get("num_beams") or 1),
        stop=tuple(until),
    )


__all__ = ["IMAGE_EXTENSIONS", "generation_from_kwargs", "split_visuals"]
