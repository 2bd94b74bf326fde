"""LLaVA-NeXT-Video's video features as the checkpoints were run (issue 16 item 10, and the pooling order).

The May-2024 LLaVA-NeXT main (7ec7bab..0f3e941, ``llava/model/llava_arch.py``) appended one
``image_newline`` after a whole video when ``mm_patch_merge_type`` contained ``unpad``; the
``video_inference`` branch the authors published for these checkpoints (e789bd4, the demo and the
eval scripts of every reported number) flattens a video's frames with no newline, and so does
transformers. videolmm follows the published inference: ``frames × 144`` features, pooled
(average, stride 2) on CLS-stripped layer -2 CLIP features **before** the projector.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from videolmm.load import load_engine
from videolmm.models.families.base import LoadOptions


@pytest.fixture(scope="module")
def engine(tiny_llava_next_video: Path):
    return load_engine(str(tiny_llava_next_video), num_frames=4, load=LoadOptions(device="cpu"))


def test_video_features_pool_before_the_projector_with_no_newline(engine) -> None:
    model, config = engine.model, engine.config
    inner = model.model
    frames = 3
    size = config.vision_config.image_size
    pixels = torch.randn(1, frames, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        got = model.get_video_features(
            pixel_values_videos=pixels,
            vision_feature_layer=config.vision_feature_layer,
            vision_feature_select_strategy=config.vision_feature_select_strategy,
        ).pooler_output
        # the seed's operations, written out: layer -2, CLS dropped, 2-D average pool stride 2, projector
        hidden = inner.vision_tower(pixels[0], output_hidden_states=True).hidden_states[config.vision_feature_layer]
        grid = size // config.vision_config.patch_size
        patches = hidden[:, 1:].reshape(frames, grid, grid, -1).permute(0, 3, 1, 2)
        pooled = torch.nn.functional.avg_pool2d(patches, config.spatial_pool_stride, config.spatial_pool_stride)
        want = inner.multi_modal_projector(pooled.flatten(2).transpose(1, 2)).reshape(1, -1, got.shape[-1])
    per_frame = engine.family.video_tokens_per_frame(config, size, size)
    assert got.shape[1] == frames * per_frame  # no image_newline after the video
    assert torch.allclose(got, want, atol=1e-5)
    # projector before pool would not give the same features
    projected_first = inner.multi_modal_projector(hidden[:, 1:]).reshape(frames, grid, grid, -1).permute(0, 3, 1, 2)
    other = (
        torch.nn.functional.avg_pool2d(projected_first, 2, 2).flatten(2).transpose(1, 2).reshape(1, -1, got.shape[-1])
    )
    assert not torch.allclose(got, other, atol=1e-5)


def test_the_engine_counts_no_newline_token_per_video(engine, clips: dict[str, Path]) -> None:
    from videolmm.types import GenerationSettings, Request

    (result,) = engine.generate(
        [Request(question="What colour?", videos=(str(clips["red_right"]),), generation=GenerationSettings(2))]
    )
    assert result.ok, result.error
    per_frame = engine.describe()["visual_tokens_per_frame"]
    assert result.usage.visual_tokens == 4 * per_frame
