"""Video-LLaVA / LLaVA-Hound frames are resampled exactly as LanguageBind's transform (issue #16
item 4): /255 → NormalizeVideo → pytorchvideo ShortSideScale (bilinear, align_corners=False, no
antialias) → CenterCropVideo, the random flip off. The reference below is the upstream transform
(torchvision's ``_transforms_video`` classes the seed imports, and pytorchvideo's
``short_side_scale`` re-implemented line by line: pytorchvideo is not installable here)."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from videolmm.load import load_engine
from videolmm.media.languagebind import languagebind_video_transform
from videolmm.models.families.base import CLIP_MEAN, CLIP_STD, LoadOptions
from videolmm.models.families.video_llava.processing import LanguageBindVideoProcessor
from videolmm.types import Request

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from torchvision.transforms import Compose, Lambda
    from torchvision.transforms._transforms_video import CenterCropVideo, NormalizeVideo


def short_side_scale(x: torch.Tensor, size: int, interpolation: str = "bilinear") -> torch.Tensor:
    """pytorchvideo.transforms.functional.short_side_scale (backend "pytorch"), verbatim logic."""
    assert len(x.shape) == 4
    assert x.dtype == torch.float32
    c, t, h, w = x.shape
    if w < h:
        new_h = int(math.floor((float(h) / w) * size))
        new_w = size
    else:
        new_h = size
        new_w = int(math.floor((float(w) / h) * size))
    return torch.nn.functional.interpolate(x, size=(new_h, new_w), mode=interpolation, align_corners=False)


def upstream_transform(video_thwc: np.ndarray) -> torch.Tensor:
    """Video-LLaVA's ``get_video_transform`` (decord backend) minus RandomHorizontalFlipVideo, on
    decord's (T, H, W, C) frames permuted to (C, T, H, W); returned as (T, C, H, W)."""
    transform = Compose(
        [
            Lambda(lambda x: x / 255.0),
            NormalizeVideo(mean=CLIP_MEAN, std=CLIP_STD),
            Lambda(lambda x: short_side_scale(x, 224)),
            CenterCropVideo(224),
        ]
    )
    clip = torch.from_numpy(video_thwc).permute(3, 0, 1, 2)
    return transform(clip).permute(1, 0, 2, 3)


@pytest.mark.parametrize(("h", "w"), [(240, 320), (320, 240), (225, 401), (100, 100), (480, 853)])
def test_transform_is_pixel_exact(h: int, w: int) -> None:
    rng = np.random.default_rng(h * 1000 + w)
    video = rng.integers(0, 256, (3, h, w, 3), dtype=np.uint8)
    expected = upstream_transform(video)
    got = languagebind_video_transform(torch.from_numpy(video).permute(0, 3, 1, 2))
    assert got.shape == (3, 3, 224, 224)
    assert torch.equal(got, expected)
    processed = LanguageBindVideoProcessor()(videos=[video], return_tensors="pt")["pixel_values_videos"]
    assert torch.equal(processed[0], expected)


def test_transformers_default_differs_and_the_family_installs_the_seed_transform(
    tiny_video_llava: Path, clips: dict[str, Path]
) -> None:
    """The stock VideoLlavaVideoProcessor (bicubic, antialiased) gives other pixels; the family's
    processor gives the upstream ones for decoded frames of a real clip."""
    from transformers import VideoLlavaVideoProcessor

    rng = np.random.default_rng(0)
    video = rng.integers(0, 256, (2, 240, 320, 3), dtype=np.uint8)
    stock = VideoLlavaVideoProcessor()(videos=[video], return_tensors="pt")["pixel_values_videos"][0]
    assert not torch.allclose(stock, upstream_transform(video), atol=1e-3)

    engine = load_engine(str(tiny_video_llava), load=LoadOptions(device="cpu"), load_model=False)
    assert isinstance(engine.processor.video_processor, LanguageBindVideoProcessor)
    frames = engine.load_video(str(clips["red_right"]))
    size = engine.processor.video_processor.crop_size["height"]
    out = engine.processor.video_processor(videos=[frames.array], return_tensors="pt")["pixel_values_videos"][0]
    clip = torch.from_numpy(frames.array).permute(3, 0, 1, 2)
    ref = Compose([Lambda(lambda x: x / 255.0), NormalizeVideo(mean=CLIP_MEAN, std=CLIP_STD)])(clip)
    ref = CenterCropVideo(size)(short_side_scale(ref, size)).permute(1, 0, 2, 3)
    assert torch.equal(out, ref)
    info = engine.describe(Request(question="Q?", videos=(str(clips["red_right"]),)))
    assert info["video_resample"].startswith("LanguageBind")
