"""Resize sampled frames to a model's input size before they leave the decoding process, bit-exactly.

A transformers video processor (``BaseVideoProcessor``) turns uint8 frames into model input in
three steps: resize (torchvision, on the uint8 tensor), centre crop, then rescale and normalise in
float. The first two only move and round uint8 pixels, and the processor's resize leaves a frame
that already has its output size untouched (torchvision returns such an image as it is), as does a
crop to the frame's own size. So the decoding process can run those two steps itself, with the same
torchvision call, and send frames at the model's input size: the model's processor then yields the
same ``pixel_values_videos``, bit for bit, from a fraction of the bytes (a 480-px source at 64 px:
1/56; 720p at 336 px: 1/8).

:class:`FrameResize` is the plan (plain data, picklable, torch-free); :meth:`FrameResize.apply` runs
it (imports torch on first use). :func:`frame_resize_for` derives the plan from a loaded processor
and keeps it only when a probe clip comes out of the processor identical with and without it;
processors with their own preprocessing (LanguageBind's float-domain transform in Video-LLaVA and
LLaVA-Hound) get None and their frames travel at the decoded size.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from videolmm.types import Frames

logger = logging.getLogger(__name__)

#: Torchvision interpolation modes, by the name :class:`FrameResize` carries.
INTERPOLATIONS = ("nearest", "nearest-exact", "bilinear", "bicubic", "box", "hamming", "lanczos")


@dataclass(frozen=True)
class FrameResize:
    """How a model's video processor resizes and crops uint8 frames (its first two steps).

    Attributes:
        interpolation: torchvision ``InterpolationMode`` value (one of :data:`INTERPOLATIONS`).
        antialias: torchvision's ``antialias`` argument.
        shortest_edge: resize the shorter side to this, the longer one to
            ``int(shortest_edge * long / short)`` (transformers' ``get_resize_output_image_size``
            with ``default_to_square=False``); None with ``height``/``width``.
        height: fixed output height (with ``width``), or None.
        width: fixed output width (with ``height``), or None.
        crop: ``(height, width)`` of the centre crop after the resize, or None for no crop.
    """

    interpolation: str
    antialias: bool = True
    shortest_edge: int | None = None
    height: int | None = None
    width: int | None = None
    crop: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"FrameResize: unknown interpolation {self.interpolation!r} (one of {INTERPOLATIONS})")
        fixed = self.height is not None and self.width is not None
        if (self.shortest_edge is None) == (not fixed) or (self.height is None) != (self.width is None):
            raise ValueError(f"FrameResize: give shortest_edge, or height and width (got {self})")
        sides = [s for s in (self.shortest_edge, self.height, self.width, *(self.crop or ())) if s is not None]
        if any(s < 1 for s in sides):
            raise ValueError(f"FrameResize: sizes must be positive (got {self})")

    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        """``(height, width)`` after the resize step, for a ``height`` × ``width`` frame."""
        if self.shortest_edge is None:
            assert self.height is not None and self.width is not None
            return self.height, self.width
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = self.shortest_edge, int(self.shortest_edge * long / short)
        return (new_long, new_short) if width <= height else (new_short, new_long)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """``(height, width)`` of the frames :meth:`apply` returns for a ``height`` × ``width`` source."""
        h, w = self.resized_size(height, width)
        if self._crops(h, w):
            assert self.crop is not None
            return self.crop
        return h, w

    def _crops(self, height: int, width: int) -> bool:
        # Only a crop that fits (a larger one pads) and that the processor's own resize then leaves alone.
        if self.crop is None or self.crop[0] > height or self.crop[1] > width:
            return False
        return self.resized_size(*self.crop) == self.crop

    def apply(self, array: np.ndarray) -> np.ndarray:
        """Resize (and crop) ``(T, H, W, 3)`` uint8 frames as the processor does; a new array.

        Args:
            array: uint8 RGB frames, ``(T, H, W, 3)``.

        Returns:
            uint8 ``(T, H', W', 3)`` with ``(H', W') = output_size(H, W)``, C-contiguous.
        """
        import torch
        from torchvision.transforms.v2 import InterpolationMode
        from torchvision.transforms.v2 import functional as tvF  # noqa: N812 (torchvision's own name)

        if array.ndim != 4 or array.shape[-1] != 3 or array.dtype != np.uint8:
            raise ValueError(f"FrameResize.apply: want uint8 (T, H, W, 3) frames, got {array.dtype} {array.shape}")
        height, width = int(array.shape[1]), int(array.shape[2])
        # the tensor the processor builds from the same array: from_numpy, then channels first, contiguous
        video = torch.from_numpy(np.ascontiguousarray(array)).permute(0, 3, 1, 2).contiguous()
        size = self.resized_size(height, width)
        mode = InterpolationMode(self.interpolation)
        video = tvF.resize(video, list(size), interpolation=mode, antialias=self.antialias)
        if self._crops(*size):
            assert self.crop is not None
            top, left = int((size[0] - self.crop[0]) / 2.0), int((size[1] - self.crop[1]) / 2.0)
            video = tvF.crop(video, top, left, self.crop[0], self.crop[1])
        return video.permute(0, 2, 3, 1).contiguous().numpy()

    def apply_frames(self, frames: Frames) -> Frames:
        """``frames`` with their pixels resized (:meth:`apply`); indices and timestamps unchanged."""
        return replace(frames, array=self.apply(frames.array))


def frame_resize_for(processor: Any, *, probe: tuple[int, int] = (83, 121)) -> FrameResize | None:
    """The uint8 resize a loaded processor's video processor does, if it can run elsewhere bit-exactly.

    Args:
        processor: a transformers processor with a ``video_processor`` (or a video processor).
        probe: ``(height, width)`` of the random 2-frame clip that checks the plan.

    Returns:
        The plan, when the video processor is transformers' ``BaseVideoProcessor`` pipeline (its
        ``_preprocess`` not overridden), resizes with a size rule this module reproduces, and gives
        identical ``pixel_values_videos`` for the probe clip resized first; else None (logged).
    """
    from transformers.video_processing_utils import BaseVideoProcessor

    vp = getattr(processor, "video_processor", processor)
    name = type(vp).__name__
    if not isinstance(vp, BaseVideoProcessor) or type(vp)._preprocess is not BaseVideoProcessor._preprocess:
        logger.info("%s preprocesses frames its own way: frames are sent at their decoded size", name)
        return None
    plan = _plan(vp)
    if plan is None:
        logger.info("%s: its resize is not one FrameResize reproduces; frames are sent at their decoded size", name)
        return None
    rng = np.random.default_rng(0)
    clip = rng.integers(0, 256, size=(2, *probe, 3), dtype=np.uint8)
    if not np.array_equal(_pixels(vp, clip), _pixels(vp, plan.apply(clip))):
        logger.warning("%s: resizing first changes its pixel values; frames are sent at their decoded size", name)
        return None
    return plan


def _plan(vp: Any) -> FrameResize | None:
    if not getattr(vp, "do_resize", True):
        return None
    from transformers.image_utils import pil_torch_interpolation_mapping

    resample = vp.resample
    mode = pil_torch_interpolation_mapping.get(resample, resample)
    interpolation = getattr(mode, "value", None)
    if interpolation not in INTERPOLATIONS:
        return None
    size = dict(vp.size or {})
    extra = {k for k, v in size.items() if v is not None and k not in ("shortest_edge", "height", "width")}
    crop = None
    if getattr(vp, "do_center_crop", False):
        crop_size = dict(vp.crop_size or {})
        if crop_size.get("height") is None or crop_size.get("width") is None:
            return None
        crop = (int(crop_size["height"]), int(crop_size["width"]))
    if extra:
        return None
    if size.get("shortest_edge") is not None:
        return FrameResize(interpolation, shortest_edge=int(size["shortest_edge"]), crop=crop)
    if size.get("height") is not None and size.get("width") is not None:
        return FrameResize(interpolation, height=int(size["height"]), width=int(size["width"]), crop=crop)
    return None


def _pixels(vp: Any, clip: np.ndarray) -> np.ndarray:
    return vp(videos=[clip], return_tensors="pt")["pixel_values_videos"].numpy()


__all__ = ["INTERPOLATIONS", "FrameResize", "frame_resize_for"]
