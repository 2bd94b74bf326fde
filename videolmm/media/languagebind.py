"""LanguageBind's video transform, exactly as Video-LLaVA and LLaVA-Hound apply it at inference.

Upstream (PKU-YuanGroup/Video-LLaVA ``videollava/model/multimodal_encoder/languagebind/video/
processing_video.py`` @ 9ab69e6, ``get_video_transform``; the same file in RifleZhang/LLaVA-Hound-DPO
@ ec2381f, ``frames`` backend), on a ``(C, T, H, W)`` clip:

1. ``x / 255.0`` (Hound's ``ToTensor`` is the same float32 division);
2. ``NormalizeVideo(OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)``: ``(x - mean) / std`` per channel, in place;
3. pytorchvideo ``ShortSideScale(224)``: short side 224, long side ``floor(long / short · 224)``,
   ``F.interpolate(mode="bilinear", align_corners=False)``, no antialias;
4. ``CenterCropVideo(224)``: offsets ``int(round((h - 224) / 2))`` (Python's round, half to even);
5. Video-LLaVA then applies ``RandomHorizontalFlipVideo(p=0.5)``; videolmm does not (it makes the
   seed's own answers random; LLaVA-Hound commented it out).

torch is imported inside the function.
"""

from __future__ import annotations

import math
from typing import Any

#: OpenAI CLIP normalisation (LanguageBind's ``OPENAI_DATASET_MEAN`` / ``_STD``).
CLIP_MEAN: tuple[float, ...] = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD: tuple[float, ...] = (0.26862954, 0.26130258, 0.27577711)


def short_side_size(height: int, width: int, size: int) -> tuple[int, int]:
    """pytorchvideo ``short_side_scale``'s output ``(height, width)``."""
    if width < height:
        return int(math.floor(float(height) / width * size)), size
    return size, int(math.floor(float(width) / height * size))


def languagebind_video_transform(
    video: Any,
    size: int = 224,
    crop: int = 224,
    mean: tuple[float, ...] = CLIP_MEAN,
    std: tuple[float, ...] = CLIP_STD,
) -> Any:
    """LanguageBind's inference transform of one video (without the random flip).

    Args:
        video: a uint8 torch tensor ``(T, C, H, W)`` (transformers' channels-first layout).
        size: the short side after ``ShortSideScale``.
        crop: the side of the centre crop.
        mean: per-channel normalisation mean.
        std: per-channel normalisation std.

    Returns:
        float32 ``(T, C, crop, crop)``.
    """
    import torch

    clip = video.permute(1, 0, 2, 3)  # (C, T, H, W), the seed's layout
    clip = clip / 255.0
    m = torch.as_tensor(mean, dtype=clip.dtype, device=clip.device)
    s = torch.as_tensor(std, dtype=clip.dtype, device=clip.device)
    clip = clip.sub_(m[:, None, None, None]).div_(s[:, None, None, None])
    new_h, new_w = short_side_size(int(clip.shape[-2]), int(clip.shape[-1]), size)
    clip = torch.nn.functional.interpolate(clip, size=(new_h, new_w), mode="bilinear", align_corners=False)
    top = int(round((new_h - crop) / 2.0))
    left = int(round((new_w - crop) / 2.0))
    clip = clip[..., top : top + crop, left : left + crop]
    return clip.permute(1, 0, 2, 3).contiguous()


__all__ = ["CLIP_MEAN", "CLIP_STD", "languagebind_video_transform", "short_side_size"]
