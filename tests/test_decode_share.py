"""Reads that run at once share the cores (videolmm/media/cores.py): smaller plans, the same frames."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from videolmm.media.cores import READS_IN_FLIGHT, ReadsInFlight, share
from videolmm.media.keyframe import KeyframeDecoder
from videolmm.media.pyav import PyAVDecoder
from videolmm.toy.synthetic import read_index, write_index_video

ONE_GOP = np.linspace(0, 149, 16, dtype=int).tolist()
GOPS = [3, 40, 70, 100, 130, 160, 200, 239]


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("decode_share")
    return {
        "one_gop": write_index_video(root / "one_gop.mp4", 150, fps=30),  # x264's default: one keyframe
        "gops": write_index_video(root / "gops.mp4", 240, fps=30, gop=30),
    }


def test_a_read_alone_keeps_its_plan_and_reads_at_once_split_the_cores() -> None:
    assert share(2, 2, 1) == (2, 2) and share(2, 4, 0) == (2, 4)  # alone: exactly as without sharing
    assert share(2, 2, 2) == (1, 1)
    assert share(2, 2, 5) == (1, 1)  # never below one core
    assert share(8, 4, 2) == (4, 4) and share(8, 4, 3) == (2, 2) and share(16, 4, 2) == (8, 4)
    with pytest.raises(ValueError, match="cores=0"):
        share(0, 1, 1)
    assert share(2, 2, 1, reserved=1) == (1, 1) and share(8, 4, 1, reserved=2) == (6, 4)  # cores held by others
    assert share(8, 4, 2, reserved=2) == (3, 3) and share(2, 2, 2, reserved=2) == (1, 1)


def test_a_reservation_holds_cores_until_released() -> None:
    reads = ReadsInFlight()
    with reads.reserve() as held:
        held.hold(2)
        assert reads.reserved == 2
        held.hold(1)  # torch resized: the holding follows
        assert reads.reserved == 1 and held.cores == 1
        with pytest.raises(ValueError, match="cores must be >= 0"):
            held.hold(-1)
    assert reads.reserved == 0
    held.release()  # idempotent
    assert reads.reserved == 0


def test_the_count_is_thread_safe_and_released_on_errors() -> None:
    reads = ReadsInFlight()
    with reads.enter() as first, reads.enter() as second:
        assert (first, second, reads.count) == (1, 2, 2)
    with pytest.raises(RuntimeError), reads.enter():
        raise RuntimeError("a failed read")
    assert reads.count == 0
    start = threading.Barrier(8)

    def hammer() -> None:
        start.wait()
        for _ in range(2000):
            with reads.enter() as n:
                assert n >= 1

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert reads.count == 0


@pytest.mark.parametrize(("clip", "indices", "alone"), [("one_gop", ONE_GOP, (1, 2)), ("gops", GOPS, (2, 1))])
def test_a_read_beside_another_plans_fewer_threads_and_gives_the_same_frames(
    clips: dict[str, Path], clip: str, indices: list[int], alone: tuple[int, int]
) -> None:
    """On 2 cores a one-GOP read alone gets 1 worker x 2 frame threads, a many-GOP read 2 workers x 1;
    with another read in flight (held here) each gets 1 x 1, and the same frames."""
    assert READS_IN_FLIGHT.count == 0
    decoder = KeyframeDecoder(cores=2, workers=2, min_parallel_frames=0)
    with decoder.open(clips[clip]) as video, PyAVDecoder().open(clips[clip]) as ref:
        first = video.read(indices)
        assert video.last_schedule is not None
        assert (video.last_schedule.workers, video.last_schedule.frame_threads) == alone
        assert video.last_share == (2, 2)
        with READS_IN_FLIGHT.enter():  # another read is running
            shared = video.read(indices)
            assert video.last_share == (1, 1)
            assert (video.last_schedule.workers, video.last_schedule.frame_threads) == (1, 1)
        with READS_IN_FLIGHT.reserve() as held:  # other work (generation) holds a core
            held.hold(1)
            assert np.array_equal(video.read(indices), first) and video.last_share == (1, 1)
        again = video.read(indices)  # alone again: today's plan
        assert (video.last_schedule.workers, video.last_schedule.frame_threads) == alone
        assert np.array_equal(first, ref.read(indices)) and np.array_equal(shared, first)
        assert np.array_equal(again, first) and [read_index(f) for f in shared] == indices
    with READS_IN_FLIGHT.enter(), KeyframeDecoder(cores=2, share_cores=False).open(clips[clip]) as unshared:
        assert np.array_equal(unshared.read(indices), first) and unshared.last_share == (2, 2)
    assert READS_IN_FLIGHT.count == 0


def test_concurrent_reads_give_the_frames_of_sequential_reads(clips: dict[str, Path]) -> None:
    decoder = KeyframeDecoder(cores=2, min_parallel_frames=0)
    jobs = [("one_gop", ONE_GOP), ("gops", GOPS)] * 3
    sequential = []
    for clip, indices in jobs:
        with decoder.open(clips[clip]) as video:
            sequential.append(video.read(indices))
    got: list[np.ndarray | None] = [None] * len(jobs)
    shares: list[tuple[int, int] | None] = [None] * len(jobs)
    start = threading.Barrier(len(jobs))

    def read(k: int) -> None:
        clip, indices = jobs[k]
        with decoder.open(clips[clip]) as video:
            start.wait()
            got[k], shares[k] = video.read(indices), video.last_share

    threads = [threading.Thread(target=read, args=(k,)) for k in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(len(jobs)):
        assert got[k] is not None and np.array_equal(got[k], sequential[k]), k
    assert all(s is not None and s[0] >= 1 for s in shares) and READS_IN_FLIGHT.count == 0
