"""The keyframe decoder's read plan: runs, cost-ordered workers, frame threads, HEVC's dropped frames."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from videolmm.media.keyframe import KeyframeDecoder
from videolmm.media.packets import decode_bound
from videolmm.media.pyav import PyAVDecoder
from videolmm.media.readplan import DecodeStats, Run, StageTimes, plan_runs, schedule, skips_nonref
from videolmm.toy.synthetic import index_frame, read_index, write_index_video


def test_runs_start_where_seeking_beats_decoding_through() -> None:
    keyframes = [0, 60, 120, 180]
    runs = plan_runs(keyframes, [1, 2, 61, 62, 130, 200], seek_cost_frames=4)
    assert [(r.key, [t for _, t in r.items]) for r in runs] == [
        (0, [1, 2]),
        (60, [61, 62]),
        (120, [130]),
        (180, [200]),
    ]
    assert [slot for r in runs for slot, _ in r.items] == list(range(6))
    assert [r.cost for r in runs] == [3, 3, 11, 21]
    # the keyframe at 60 is 3 frames past position 57: decoding through beats a seek
    assert [r.key for r in plan_runs(keyframes, [56, 70], seek_cost_frames=4)] == [0]
    assert [r.key for r in plan_runs(keyframes, [50, 70], seek_cost_frames=4)] == [0, 60]
    assert plan_runs(keyframes, [], seek_cost_frames=4) == []


def _runs(*costs: int) -> list[Run]:
    return [Run(key=1000 * i, items=((i, 1000 * i + cost - 1),)) for i, cost in enumerate(costs)]


def test_schedule_orders_runs_by_cost_and_balances_workers_by_frames() -> None:
    runs = _runs(50, 250, 100, 250, 100, 250)
    plan = schedule(runs, workers=2, cores=2)
    assert [r.cost for r in plan.order] == [250, 250, 250, 100, 100, 50]
    assert plan.workers == 2 and plan.frame_threads == 1
    assert plan.loads() == (500, 500)  # a split by run count (3 + 3) could give 750 / 250
    assert schedule(runs, workers=4, cores=2).workers == 4  # more workers than cores is the caller's choice


def test_schedule_gives_frame_threads_when_runs_are_fewer_than_cores_or_uneven() -> None:
    one_gop = _runs(300)
    assert schedule(one_gop, workers=2, cores=2) == schedule(one_gop, workers=4, cores=2)
    plan = schedule(one_gop, workers=2, cores=2)
    assert (plan.workers, plan.frame_threads) == (1, 2)
    two = schedule(_runs(300, 200), workers=4, cores=8)
    assert (two.workers, two.frame_threads) == (2, 4)
    # two GOPs, one five times the other: the worker done with the short one lends its core through frame threads
    uneven = schedule(_runs(250, 50), workers=2, cores=2)
    assert (uneven.workers, uneven.frame_threads, uneven.loads()) == (2, 2, (250, 50))
    small = schedule(_runs(10, 20), workers=2, cores=2, min_parallel_frames=64)
    assert (small.workers, small.frame_threads) == (1, 1)  # too little work for a second container
    assert schedule([], workers=2, cores=2).workers == 0
    with pytest.raises(ValueError, match="workers and cores"):
        schedule(one_gop, workers=0, cores=2)


def test_stats_add_up_and_compare_without_times() -> None:
    a = DecodeStats(frames_decoded=3, seeks=1, times=StageTimes(decode=0.5, busy=(1.0,)))
    b = DecodeStats(frames_decoded=2, packets_sent=4, times=StageTimes(decode=0.25, busy=(2.0,)))
    total = a + b
    assert total == DecodeStats(frames_decoded=5, seeks=1, packets_sent=4)
    assert total.times == StageTimes(decode=0.75, busy=(1.0, 2.0))


def _hvcc(temporal_layers: int) -> bytes:
    record = bytearray(23)
    record[0], record[21] = 1, (temporal_layers << 3) | 0b111
    return bytes(record)


def test_nonreference_frames_are_dropped_only_where_no_frame_can_refer_to_them() -> None:
    assert skips_nonref("h264", None) and skips_nonref("mpeg4", b"")
    assert skips_nonref("hevc", _hvcc(1))
    assert not skips_nonref("hevc", _hvcc(2))  # a higher sub-layer may refer to a sub-layer non-reference picture
    assert not skips_nonref("hevc", None) and not skips_nonref("hevc", b"\x00" * 30)
    assert not skips_nonref("vp9", None) and not skips_nonref("av1", None)


def _write_hevc(path: Path, num_frames: int, gop: int) -> Path:
    """An index-coded HEVC clip (x265, B-frames) in MP4."""
    params = f"log-level=error:bframes=3:scenecut=0:open-gop=0:keyint={gop}:min-keyint={gop}:frame-threads=1:pools=1"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(
            "libx265", rate=30, options={"preset": "fast", "crf": "18", "x265-params": params}
        )
        stream.width, stream.height, stream.pix_fmt = 128, 96, "yuv420p"
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(index_frame(i), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 30)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("decode_plan")
    return {
        "one_gop": write_index_video(root / "one_gop.mp4", 150, fps=30),  # x264's default: one keyframe
        "hevc": _write_hevc(root / "hevc.mp4", 120, gop=40),
    }


def test_a_one_gop_read_uses_frame_threads_and_gives_pyav_frames(clips: dict[str, Path]) -> None:
    indices = np.linspace(0, 149, 16, dtype=int).tolist()
    with PyAVDecoder().open(clips["one_gop"]) as ref, KeyframeDecoder(cores=2).open(clips["one_gop"]) as video:
        assert video.index.keyframes == (0,)
        got = video.read(indices)
        assert video.last_schedule is not None
        assert (video.last_schedule.workers, video.last_schedule.frame_threads) == (1, 2)
        assert np.array_equal(got, ref.read(indices))
        assert [read_index(f) for f in got] == indices
        again = video.read(indices)  # the frame-threaded container is kept and reused
        assert np.array_equal(again, got) and video.stats.seeks == 2
    with KeyframeDecoder(cores=1).open(clips["one_gop"]) as single:
        assert np.array_equal(single.read(indices), got)
        assert single.last_schedule is not None and single.last_schedule.frame_threads == 1


def test_hevc_drops_unwanted_nonreference_frames_with_the_same_pixels(clips: dict[str, Path]) -> None:
    path = clips["hevc"]
    indices = [5, 17, 33, 50, 79, 118]
    with PyAVDecoder().open(path) as ref, KeyframeDecoder().open(path) as video:
        assert video.index.keyframes == (0, 40, 80)
        got = video.read(indices)
        assert np.array_equal(got, ref.read(indices))
        assert [read_index(f) for f in got] == indices
        dropped = video.stats.packets_sent - video.stats.frames_decoded
        assert dropped > 0.2 * decode_bound(video.index.keyframes, indices)
    with KeyframeDecoder(skip_nonref=False).open(path) as kept:
        assert np.array_equal(kept.read(indices), got)
        # every packet sent was decoded, but for the frames a run's end leaves in the reorder delay
        assert 0 <= kept.stats.packets_sent - kept.stats.frames_decoded <= 3 * kept.stats.seeks < dropped
