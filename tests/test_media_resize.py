"""The MediaDecoder's frame resize (:mod:`videolmm.media.resize`): the model sees the same pixel values.

Each family's own processor, loaded from a tiny checkpoint of the real layout, and transformers'
video processors at the real checkpoints' settings (LLaVA-NeXT-Video 336/336 bicubic, SigLIP 384²),
run on frames resized first and on the decoded frames: ``pixel_values_videos`` must be identical.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from videolmm.load import load_engine
from videolmm.media.resize import FrameResize, frame_resize_for
from videolmm.models.batch import DecodedRequest
from videolmm.types import Frames, Request

# (height, width): landscape, portrait, square, odd sizes, smaller than the model's input, a thin strip
SIZES = [(48, 80), (81, 47), (64, 64), (37, 53), (21, 30), (17, 160)]


def _frames(height: int, width: int, t: int = 3, seed: int = 0) -> Frames:
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 256, size=(t, height, width, 3), dtype=np.uint8)
    return Frames(array, tuple(range(t)), tuple(float(i) for i in range(t)), 1.0, float(t), f"clip{height}x{width}", t)


def _engine(path: Path):
    return load_engine(str(path), load_model=False, device="cpu")


def _pixels(engine, frames: Frames) -> np.ndarray:
    """``pixel_values_videos`` as the engine prepares a request with these frames."""
    item = DecodedRequest(Request(question="What happens?", videos=(frames.source,)), (frames,))
    prompt = engine.render_prompt(item.request, item.videos)
    return engine.processor_inputs([item], [prompt])["pixel_values_videos"].numpy()


@pytest.mark.parametrize("fixture", ["tiny_llava_next_video", "tiny_llava_video_qwen2"])
def test_engine_pixels_identical_after_resize(fixture: str, request: pytest.FixtureRequest) -> None:
    engine = _engine(request.getfixturevalue(fixture))
    plan = frame_resize_for(engine.processor)
    assert plan is not None, f"{fixture}: its video processor should allow a resize in the MediaDecoder"
    for height, width in SIZES:
        frames = _frames(height, width, seed=height * width)
        resized = plan.apply_frames(frames)
        assert resized.array.shape[1:3] == plan.output_size(height, width)
        assert resized.indices == frames.indices and resized.timestamps == frames.timestamps
        assert np.array_equal(_pixels(engine, frames), _pixels(engine, resized)), (fixture, height, width)


@pytest.mark.parametrize("fixture", ["tiny_video_llava", "tiny_llava_hound"])
def test_languagebind_processors_keep_decoded_frames(fixture: str, request: pytest.FixtureRequest) -> None:
    """LanguageBind normalises before it resizes, in float: no uint8 resize can run first."""
    engine = _engine(request.getfixturevalue(fixture))
    assert frame_resize_for(engine.processor) is None


def test_real_checkpoint_settings() -> None:
    """The real checkpoints' video processor settings (no weights): plan and identical pixels."""
    from transformers import LlavaNextVideoVideoProcessor, LlavaOnevisionVideoProcessor

    clip_mean, clip_std = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
    lnv = LlavaNextVideoVideoProcessor(
        size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336}, resample=3,
        image_mean=clip_mean, image_std=clip_std,
    )  # fmt: skip
    siglip = LlavaOnevisionVideoProcessor(
        size={"height": 384, "width": 384}, resample=3, image_mean=[0.5] * 3, image_std=[0.5] * 3
    )
    cases = [
        (lnv, FrameResize("bicubic", shortest_edge=336, crop=(336, 336)), (360, 640), (336, 336)),
        (lnv, FrameResize("bicubic", shortest_edge=336, crop=(336, 336)), (300, 200), (336, 336)),
        (siglip, FrameResize("bicubic", height=384, width=384), (360, 640), (384, 384)),
    ]
    for vp, want, (height, width), out in cases:
        plan = frame_resize_for(vp)
        assert plan == want
        clip = _frames(height, width, t=2).array
        small = plan.apply(clip)
        assert small.shape == (2, *out, 3)
        full = vp(videos=[clip], return_tensors="pt")["pixel_values_videos"]
        first = vp(videos=[small], return_tensors="pt")["pixel_values_videos"]
        assert np.array_equal(full.numpy(), first.numpy()), (type(vp).__name__, height, width)


def test_resized_size_is_transformers_rule() -> None:
    from transformers.image_transforms import get_resize_output_image_size

    plan = FrameResize("bilinear", shortest_edge=336)
    rng = np.random.default_rng(0)
    for height, width in rng.integers(1, 4000, size=(200, 2)):
        image = np.zeros((1, int(height), int(width)), dtype=np.uint8)
        want = get_resize_output_image_size(image, 336, default_to_square=False, input_data_format="channels_first")
        assert plan.resized_size(int(height), int(width)) == tuple(want)


def test_crop_only_where_it_fits() -> None:
    """A crop larger than the resized frame pads in the processor: left to it, frames kept whole."""
    plan = FrameResize("bicubic", height=20, width=20, crop=(32, 32))
    assert plan.output_size(100, 50) == (20, 20)
    # a crop the processor's own resize would change again (shortest edge 256, crop 224) is left to it
    clip_style = FrameResize("bicubic", shortest_edge=256, crop=(224, 224))
    assert clip_style.output_size(480, 640) == (256, 341)


def test_plan_is_checked_and_picklable() -> None:
    plan = FrameResize("bicubic", shortest_edge=64, crop=(64, 64))
    assert pickle.loads(pickle.dumps(plan)) == plan
    with pytest.raises(ValueError, match="interpolation"):
        FrameResize("cubic", shortest_edge=64)
    with pytest.raises(ValueError, match="shortest_edge, or height and width"):
        FrameResize("bicubic", shortest_edge=64, height=64, width=64)
    with pytest.raises(ValueError, match="shortest_edge, or height and width"):
        FrameResize("bicubic", height=64)
    with pytest.raises(ValueError, match="uint8"):
        plan.apply(np.zeros((2, 8, 8, 3), dtype=np.float32))
