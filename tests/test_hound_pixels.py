"""LLaVA-Hound's pixels (issue #16 item 5): the seed's ``ffmpeg -vf "scale=336:-1,fps=2" c01_%04d.jpeg``
reproduced in process (PyAV's libavfilter graph, FFmpeg's mjpeg encoder, Pillow's decoder), then
linspace(0, n-1, 8) and LanguageBind's bilinear no-antialias transform; and the measured pixel
difference between that exact route and videolmm's default route for video files (keyframe
decoder + ``hound`` sampler: the same source frames, without the 336 px bicubic step and JPEG).

There is no ``ffmpeg`` binary here; PyAV links the same libavfilter/libswscale/libavcodec code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from videolmm.errors import MediaError
from videolmm.load import host
from videolmm.media.base import load_frames
from videolmm.media.ffmpeg_filter import HOUND_FILTERS, FfmpegCliDecoder, extract_like_ffmpeg_cli
from videolmm.media.languagebind import languagebind_video_transform
from videolmm.media.sampling import ffmpeg_fps_source_indices
from videolmm.models.families.base import CLIP_STD
from videolmm.toy.synthetic import read_index, write_index_video
from videolmm.types import SamplingSpec


def test_the_filter_graph_keeps_the_frames_the_hound_sampler_computes(tmp_path: Path) -> None:
    clip = write_index_video(tmp_path / "idx.mp4", 61, fps=30)
    kept = extract_like_ffmpeg_cli(clip, "fps=2", jpeg=False)
    assert [read_index(f) for f in kept.frames] == ffmpeg_fps_source_indices(61, 30, 2) == [7, 22, 37, 52]
    hound = extract_like_ffmpeg_cli(clip)  # scale=336:-1 → 336×252, JPEG round trip
    assert hound.frames.shape == (4, 252, 336, 3) and hound.rate == 2.0
    assert all(1000 < n < 60000 for n in hound.jpeg_bytes)  # one real JPEG per output frame


def _pixels(frames: np.ndarray) -> torch.Tensor:
    return languagebind_video_transform(torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2))


def test_pixel_difference_of_the_default_route_to_the_seed_pipeline(clips: dict[str, Path]) -> None:
    """Same eight source frames; the default route skips the 336 px bicubic resize and the JPEG.
    Measured on the synthetic clips (64 px, h264), in 0..255 units after LanguageBind's transform:
    max 31–40, mean 1.47–1.56 (docs/models.md records the numbers)."""
    registry, _ = host()
    spec_hound, spec_uniform = SamplingSpec(num_frames=8, fps=2.0), SamplingSpec(num_frames=8)
    std = torch.tensor(CLIP_STD)[None, :, None, None]
    for path in clips.values():
        default = load_frames(
            path, decoder=registry.decoder("keyframe"), sampler=registry.sampler("hound"), spec=spec_hound
        )
        seed = load_frames(path, decoder=FfmpegCliDecoder(), sampler=registry.sampler("uniform"), spec=spec_uniform)
        n = seed.num_source_frames
        sources = ffmpeg_fps_source_indices(default.num_source_frames, default.fps, 2)
        assert [sources[i] for i in seed.indices] == list(default.indices)  # the same source frames
        assert n == len(sources)
        diff = ((_pixels(default.array) - _pixels(seed.array)) * std * 255).abs()
        assert diff.shape == (8, 3, 224, 224)
        assert 0.5 < float(diff.mean()) < 3.0, float(diff.mean())
        assert float(diff.max()) < 64, float(diff.max())


def test_bad_inputs_are_named(tmp_path: Path, broken_video: Path, clips: dict[str, Path], reliability) -> None:
    """Bad input to the LLaVA-Hound extraction route: a MediaError naming the input and the reason."""
    cases = [
        (
            "unknown filter in the -vf chain",
            clips["red_right"],
            "scale=336:-1,bogus=1",
            "cannot build the filter graph",
        ),
        ("random bytes named .mp4", broken_video, HOUND_FILTERS, "not a readable media container"),
    ]
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    cases.append(("zero-byte file", empty, HOUND_FILTERS, "empty file"))
    for case, source, filters, reason in cases:
        with pytest.raises(MediaError) as caught:
            FfmpegCliDecoder(filters).open(str(source))
        assert reason in str(caught.value) and source.name in str(caught.value), str(caught.value)
        reliability(
            "LLaVA-Hound ffmpeg_cli extraction (videolmm.media.ffmpeg_filter)",
            case,
            "core",
            f"MediaError naming the file: {reason}",
            f"{type(caught.value).__name__}: {caught.value}",
        )


def test_the_exact_route_is_a_registered_decoder_the_engine_and_lmms_eval_can_name(
    tiny_llava_hound: Path, clips: dict[str, Path]
) -> None:
    """``decoder=ffmpeg_cli`` (model_args, CLI, videolmm.json) with the ``uniform`` sampler: the seed's 8 JPEGs."""
    from videolmm.load import load_engine
    from videolmm.models.families.base import LoadOptions
    from videolmm.types import GenerationSettings, Request

    engine = load_engine(
        str(tiny_llava_hound), decoder="ffmpeg_cli", sampler="uniform", load=LoadOptions(device="cpu")
    )
    request = Request(question="q", videos=(str(clips["red_right"]),), generation=GenerationSettings(max_new_tokens=2))
    decoded = engine.decode(request)
    assert decoded.error is None and decoded.videos[0].decoder == "ffmpeg_cli"
    extracted = extract_like_ffmpeg_cli(str(clips["red_right"]))
    picks = np.linspace(0, len(extracted.frames) - 1, engine.settings.media.sampling.num_frames, dtype=int)
    assert np.array_equal(decoded.videos[0].array, extracted.frames[picks])
    assert engine.generate([decoded])[0].ok


def test_serve_refuses_the_exact_route_it_cannot_bound() -> None:
    from videolmm.serve.config import ServeArgs

    with pytest.raises(ValueError, match=r"decoder ffmpeg_cli is not served \(models \['h'\]\)"):
        ServeArgs.model_validate({"models": [{"model_id": "h", "pretrained": "x", "decoder": "ffmpeg_cli"}]})
