"""Samplers reproduce the seeds index for index; decoded frames are exactly the sampled ones.

The LLaVA-Hound sampler is checked against the real libavfilter ``fps`` filter (PyAV's bundled FFmpeg)
fed with the decoded frames of index-coded clips, so the reference is FFmpeg itself, not a model of it.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from videolmm.errors import NoFrames
from videolmm.media.base import load_frames
from videolmm.media.loader import builtin_decoders
from videolmm.media.sampling import (
    BUILTIN_SAMPLERS,
    ffmpeg_fps_output_count,
    ffmpeg_fps_source_indices,
    fps_sampler,
    hound_sampler,
    uniform_indices,
    uniform_sampler,
)
from videolmm.toy.synthetic import read_index, write_index_video
from videolmm.types import SamplingSpec, VideoInfo

CONTAINER_DECODERS = [name for name in ("decord", "pyav", "torchcodec") if builtin_decoders()[name].available()]


def _info(num_frames: int, fps: float) -> VideoInfo:
    return VideoInfo(source="clip.mp4", num_frames=num_frames, fps=fps, width=128, height=96)


@pytest.fixture(scope="session")
def clip10s(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 s at 30 fps, index-coded (300 frames)."""
    return write_index_video(tmp_path_factory.mktemp("samplers") / "clip10s.mp4", 300, fps=30)


# ----- uniform ------------------------------------------------------------------------------------


def test_uniform_matches_linspace() -> None:
    sel = uniform_sampler(_info(300, 30.0), SamplingSpec(num_frames=32))
    assert sel.indices == tuple(np.linspace(0, 299, 32, dtype=int).tolist())
    assert sel.indices[:4] == (0, 9, 19, 28) and sel.indices[-1] == 299
    assert sel.timestamps == tuple(i / 30 for i in sel.indices)
    assert sel.video_time == 10.0 and sel.frame_time is None


def test_uniform_repeats_frames_when_asking_for_more_than_there_are() -> None:
    assert uniform_indices(5, 8) == [0, 0, 1, 1, 2, 2, 3, 4]
    assert uniform_sampler(_info(1, 30.0), SamplingSpec(num_frames=3)).indices == (0, 0, 0)


def test_uniform_rejects_empty_video() -> None:
    with pytest.raises(NoFrames, match="clip.mp4"):
        uniform_sampler(_info(0, 30.0), SamplingSpec())


# ----- fps (LLaVA-Video) ---------------------------------------------------------------------------


def test_llava_video_fps_branch_on_a_10s_30fps_clip() -> None:
    sel = fps_sampler(_info(300, 30.0), SamplingSpec(num_frames=64, fps=1.0))
    assert sel.indices == tuple(range(0, 300, 30))
    assert sel.frame_time == "0.00s,1.00s,2.00s,3.00s,4.00s,5.00s,6.00s,7.00s,8.00s,9.00s"
    assert sel.video_time == 10.0
    assert sel.timestamps == tuple(float(t) for t in range(10))


def test_llava_video_forced_branch_on_a_10s_30fps_clip() -> None:
    sel = fps_sampler(_info(300, 30.0), SamplingSpec(num_frames=8, fps=1.0, force_sample=True))
    assert sel.indices == (0, 42, 85, 128, 170, 213, 256, 299)
    assert sel.frame_time == "0.00s,1.40s,2.83s,4.27s,5.67s,7.10s,8.53s,9.97s"
    assert sel.video_time == 10.0
    forced64 = fps_sampler(_info(300, 30.0), SamplingSpec(num_frames=64, force_sample=True))
    assert forced64.indices == tuple(np.linspace(0, 299, 64, dtype=int).tolist())


def test_llava_video_caps_to_max_frames_with_linspace() -> None:
    sel = fps_sampler(_info(300, 30.0), SamplingSpec(num_frames=5))  # 10 candidates > 5
    assert sel.indices == (0, 74, 149, 224, 299)
    assert sel.frame_time == "0.00s,2.47s,4.97s,7.47s,9.97s"


def test_llava_video_frame_time_quirk_when_fps_is_not_one() -> None:
    # step = round(30 / 2) = 15; frame_time = i / step, so frame 15 (0.5 s) is labelled "1.00s"
    sel = fps_sampler(_info(300, 30.0), SamplingSpec(num_frames=64, fps=2.0))
    assert sel.indices == tuple(range(0, 300, 15))
    assert sel.frame_time.split(",")[:3] == ["0.00s", "1.00s", "2.00s"]
    assert sel.timestamps[:3] == (0.0, 0.5, 1.0)
    slow = fps_sampler(_info(300, 30.0), SamplingSpec(num_frames=64, fps=0.5))
    assert slow.indices == (0, 60, 120, 180, 240)
    assert slow.frame_time == "0.00s,1.00s,2.00s,3.00s,4.00s"  # really 0, 2, 4, 6, 8 s


def test_llava_video_step_uses_python_round_and_is_at_least_one() -> None:
    assert fps_sampler(_info(100, 25.0), SamplingSpec(num_frames=64, fps=2.0)).indices[1] == 12  # round(12.5)
    assert fps_sampler(_info(100, 30000 / 1001), SamplingSpec(num_frames=64)).indices[1] == 30
    tiny_step = fps_sampler(_info(20, 30.0), SamplingSpec(num_frames=64, fps=100.0))  # round(0.3) = 0 → 1
    assert tiny_step.indices == tuple(range(20))


# ----- ffmpeg fps filter ---------------------------------------------------------------------------


def _simulate_vf_fps(num_frames: int, fps: Fraction, rate: Fraction) -> list[int]:
    """Step-by-step port of libavfilter/vf_fps.c's activate()/write_frame() for a CFR input."""

    def near(x: Fraction) -> int:  # AV_ROUND_NEAR_INF for x >= 0
        return math.floor(x + Fraction(1, 2))

    pts = [near(j * rate / fps) for j in range(num_frames)]
    eof = near(num_frames * rate / fps)  # EOF timestamp = last pts + duration
    out, buffered, next_pts = [], [], pts[0]
    for j in [*range(num_frames), None]:
        if j is not None:
            buffered.append(j)
            if len(buffered) < 2:
                continue
        while buffered:
            at_eof = j is None
            if (len(buffered) == 2 and pts[buffered[1]] <= next_pts) or (at_eof and eof <= next_pts):
                buffered.pop(0)
                continue
            if len(buffered) < 2 and not at_eof:
                break
            out.append(buffered[0])
            next_pts += 1
    return out


RATES = [Fraction(24), Fraction(25), Fraction(30), Fraction(30000, 1001), Fraction(60), Fraction(24000, 1001), 8, 15]


@pytest.mark.parametrize("fps", RATES)
def test_closed_form_matches_a_port_of_the_filter(fps: Fraction) -> None:
    for out_rate in (Fraction(2), Fraction(1), Fraction(5, 2)):
        for n in range(1, 130):
            assert ffmpeg_fps_source_indices(n, fps, out_rate) == _simulate_vf_fps(n, Fraction(fps), out_rate), (
                n,
                fps,
            )


def _ffmpeg_fps_reference(path: Path, rate: str = "2") -> list[int]:
    """Indices of the frames libavfilter's ``fps`` filter emits (default round=near, eof_action=round)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        graph = av.filter.Graph()
        source, fps, sink = graph.add_buffer(template=stream), graph.add("fps", rate), graph.add("buffersink")
        source.link_to(fps)
        fps.link_to(sink)
        graph.configure()
        emitted = []
        for position, frame in enumerate(container.decode(stream)):
            if position == 0:
                assert frame.pts == 0  # ffmpeg's CLI shifts the start to 0; these clips already start there
            assert frame.duration > 0  # EOF then lands at the end of the last frame, as in the CLI
            graph.vpush(frame)
            emitted += _drain(graph)
        graph.vpush(None)
        emitted += _drain(graph)
    return [read_index(f.to_ndarray(format="rgb24")) for f in emitted]


def _drain(graph: av.filter.Graph) -> list[av.VideoFrame]:
    frames = []
    while True:
        try:
            frames.append(graph.vpull())
        except (av.BlockingIOError, av.EOFError):
            return frames


# (fps, frames): whole and fractional seconds, ties on the output grid (24, 60), NTSC rates, too short
HOUND_CLIPS = [
    (24, 30),
    (24, 61),
    (25, 37),
    (25, 50),
    (30, 23),
    (30, 95),
    (Fraction(30000, 1001), 77),
    (Fraction(30000, 1001), 150),
    (60, 45),
    (60, 151),
    (8, 16),
    (30, 7),
]


@pytest.fixture(scope="session")
def hound_clips(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[Fraction, int], Path]:
    root = tmp_path_factory.mktemp("hound")
    return {
        (Fraction(fps), n): write_index_video(
            root / f"fps{str(fps).replace('/', '_')}_{n}.mp4", n, fps=fps, width=64, height=48
        )
        for fps, n in HOUND_CLIPS
    }


@pytest.mark.parametrize(("fps", "num_frames"), HOUND_CLIPS)
def test_fps_mapping_matches_libavfilter(hound_clips: dict, fps: int | Fraction, num_frames: int) -> None:
    path = hound_clips[(Fraction(fps), num_frames)]
    reference = _ffmpeg_fps_reference(path)
    assert ffmpeg_fps_source_indices(num_frames, Fraction(fps), 2) == reference
    assert ffmpeg_fps_output_count(num_frames, float(fps), 2.0) == len(reference)
    # through the float rate a decoder reports (29.97002997...) as well
    assert ffmpeg_fps_source_indices(num_frames, float(fps), 2.0) == reference


@pytest.mark.parametrize(("fps", "num_frames"), HOUND_CLIPS)
@pytest.mark.parametrize("decoder_name", CONTAINER_DECODERS)
def test_hound_sampler_decodes_the_frames_ffmpeg_would_extract(
    hound_clips: dict, fps: int | Fraction, num_frames: int, decoder_name: str
) -> None:
    path = hound_clips[(Fraction(fps), num_frames)]
    reference = _ffmpeg_fps_reference(path)
    spec = SamplingSpec(num_frames=8)
    decoder = builtin_decoders()[decoder_name]
    if not reference:
        with pytest.raises(NoFrames, match="extracts no frame"):
            load_frames(path, decoder=decoder, sampler=hound_sampler, spec=spec)
        return
    expected = [reference[k] for k in np.linspace(0, len(reference) - 1, 8, dtype=int)]
    frames = load_frames(path, decoder=decoder, sampler=hound_sampler, spec=spec, sampler_name="hound")
    assert list(frames.indices) == expected
    assert [read_index(f) for f in frames.array] == expected


def test_hound_on_a_10s_30fps_clip() -> None:
    sel = hound_sampler(_info(300, 30.0), SamplingSpec(num_frames=8))
    assert ffmpeg_fps_output_count(300, 30, 2) == 20
    assert sel.indices == (7, 37, 82, 127, 157, 202, 247, 292)
    assert sel.timestamps[0] == pytest.approx(7 / 30)
    assert sel.video_time == 10.0 and sel.frame_time is None


def test_hound_fps_is_configurable() -> None:
    one = hound_sampler(_info(300, 30.0), SamplingSpec(num_frames=10, fps=1.0))
    assert one.indices == tuple(ffmpeg_fps_source_indices(300, 30, 1))  # 10 slots, all taken
    assert one.indices[0] == 14  # last frame before 0.5 s


# ----- decoded frames are the sampled frames -------------------------------------------------------

FPS_CASES = [
    SamplingSpec(num_frames=64, fps=1.0),
    SamplingSpec(num_frames=64, fps=1.0, force_sample=True),
    SamplingSpec(num_frames=8, force_sample=True),
    SamplingSpec(num_frames=5),
    SamplingSpec(num_frames=64, fps=2.0),
    SamplingSpec(num_frames=64, fps=0.5),
    SamplingSpec(num_frames=16, fps=3.0, reverse=True),
]


@pytest.mark.parametrize("decoder_name", CONTAINER_DECODERS)
@pytest.mark.parametrize("spec", FPS_CASES)
def test_fps_sampler_decodes_exactly_the_chosen_frames(clip10s: Path, decoder_name: str, spec: SamplingSpec) -> None:
    frames = load_frames(clip10s, decoder=builtin_decoders()[decoder_name], sampler=fps_sampler, spec=spec)
    expected = list(fps_sampler(_info(300, 30.0), spec).indices)
    if spec.reverse:
        expected.reverse()
    assert list(frames.indices) == expected
    assert [read_index(f) for f in frames.array] == expected


@pytest.mark.parametrize("decoder_name", CONTAINER_DECODERS)
@pytest.mark.parametrize("reverse", [False, True])
def test_uniform_sampler_decodes_exactly_the_chosen_frames(clip10s: Path, decoder_name: str, reverse: bool) -> None:
    spec = SamplingSpec(num_frames=32, reverse=reverse)
    frames = load_frames(clip10s, decoder=builtin_decoders()[decoder_name], sampler=uniform_sampler, spec=spec)
    expected = np.linspace(0, 299, 32, dtype=int).tolist()
    if reverse:
        expected.reverse()
    assert list(frames.indices) == expected
    assert [read_index(f) for f in frames.array] == expected
    assert frames.timestamps == tuple(i / 30 for i in expected)


@pytest.mark.parametrize("decoder_name", CONTAINER_DECODERS)
def test_reverse_keeps_the_frame_time_text_and_reverses_the_rest(clip10s: Path, decoder_name: str) -> None:
    decoder = builtin_decoders()[decoder_name]
    forward = load_frames(clip10s, decoder=decoder, sampler=fps_sampler, spec=SamplingSpec(num_frames=64))
    backward = load_frames(
        clip10s, decoder=decoder, sampler=fps_sampler, spec=SamplingSpec(num_frames=64, reverse=True)
    )
    assert backward.indices == forward.indices[::-1]
    assert backward.timestamps == forward.timestamps[::-1]
    assert np.array_equal(backward.array, forward.array[::-1])
    assert backward.frame_time == forward.frame_time == "0.00s,1.00s,2.00s,3.00s,4.00s,5.00s,6.00s,7.00s,8.00s,9.00s"


def test_builtin_sampler_registry() -> None:
    assert BUILTIN_SAMPLERS == {"uniform": uniform_sampler, "fps": fps_sampler, "hound": hound_sampler}
