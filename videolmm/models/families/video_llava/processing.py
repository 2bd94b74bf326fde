"""Video-LLaVA / LLaVA-Hound video processor: LanguageBind's exact transform (:mod:`videolmm.media.languagebind`)."""

from __future__ import annotations

from typing import Any

import torch
from transformers import VideoLlavaVideoProcessor
from transformers.image_processing_utils import BatchFeature

from videolmm.media.languagebind import CLIP_MEAN, CLIP_STD, languagebind_video_transform


class LanguageBindVideoProcessor(VideoLlavaVideoProcessor):
    """``VideoLlavaVideoProcessor`` whose ``_preprocess`` is the seeds' transform."""

    def _preprocess(self, videos: list[torch.Tensor], **kwargs: Any) -> BatchFeature:
        short = int(getattr(kwargs.get("size"), "shortest_edge", None) or 224)
        side = int(getattr(kwargs.get("crop_size"), "height", None) or short)
        mean, std = tuple(kwargs.get("image_mean") or CLIP_MEAN), tuple(kwargs.get("image_std") or CLIP_STD)
        out = [languagebind_video_transform(v, short, side, mean, std) for v in videos]
        return BatchFeature(data={"pixel_values_videos": out}, tensor_type=kwargs.get("return_tensors"))


def seed_video_processor(current: Any) -> LanguageBindVideoProcessor:
    """A :class:`LanguageBindVideoProcessor` with ``current``'s sizes, mean and std."""
    short = int(dict(current.size or {}).get("shortest_edge") or 224)
    side = int(dict(current.crop_size or {}).get("height") or short)
    mean, std = list(current.image_mean or CLIP_MEAN), list(current.image_std or CLIP_STD)
    size, crop = {"shortest_edge": short}, {"height": side, "width": side}
    return LanguageBindVideoProcessor(size=size, crop_size=crop, image_mean=mean, image_std=std)


__all__ = ["LanguageBindVideoProcessor", "seed_video_processor"]
