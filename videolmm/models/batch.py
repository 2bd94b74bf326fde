"""The data an engine passes between its stages: decoded requests, prepared batches, settings.

Frozen where it crosses a boundary (a decoded request travels from Serve's media stage to the
model replica); shapes in the docstrings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from videolmm.models.families.base import LoadOptions
from videolmm.types import Frames, GenerationSettings, MediaSettings, Request


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
        scheduler: ``continuous`` or ``static`` (see :mod:`videolmm.models.scheduler`).
    """

    pretrained: str
    family: str
    template: str
    system_prompt: str | None
    media: MediaSettings
    family_options: Mapping[str, Any]
    load: LoadOptions
    scheduler: str = "continuous"


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """Cut ``text`` before the earliest occurrence of any stop string."""
    cut = len(text)
    for s in stop:
        if s:
            pos = text.find(s)
            if pos != -1:
                cut = min(cut, pos)
    return text[:cut]


__all__ = ["DecodedRequest", "EngineSettings", "PreparedBatch", "cut_at_stop", "error_text"]
