"""Planning a keyframe read: runs (one seek, then decoding forward), their cost, and who decodes them.

The ``keyframe`` decoder (:mod:`videolmm.media.keyframe`) turns sorted wanted frames into
:class:`Run` s with :func:`plan_runs`; :func:`schedule` orders them by cost (frames to decode,
keyframe to last wanted frame), longest first, for worker containers that each take the next run
when done with one (LPT list scheduling), and gives each worker FFmpeg frame threads when there are
fewer runs than cores (a one-GOP read otherwise leaves cores idle). Pure Python, no PyAV: unit-testable on its own.
:class:`DecodeStats` and :class:`StageTimes` record what the reads cost.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field, fields

#: Codecs whose decoders drop exactly the frames nothing refers to under ``skip_frame=NONREF``
#: (h264: ``nal_ref_idc == 0``; MPEG-4 part 2: B-frames; HEVC: non-reference NAL types, see
#: :func:`skips_nonref`), so unwanted ones are skipped while seeking.
SKIP_NONREF_CODECS = frozenset({"h264", "mpeg4", "hevc"})


def skips_nonref(codec: str, extradata: bytes | None) -> bool:
    """Whether dropping ``codec``'s non-reference frames leaves every other frame's pixels unchanged.

    h264 and MPEG-4 part 2: always. HEVC: only when the ``hvcC`` record (MP4 / Matroska extradata)
    says the stream has one temporal sub-layer: FFmpeg drops every sub-layer non-reference picture
    (``TRAIL_N``, ``TSA_N``, ...), and with several sub-layers a higher one may still refer to it.
    VP9 and others: no (FFmpeg's VP9 decoder does not honour ``NONREF``; frames may also update
    the probability contexts later frames use).

    Args:
        codec: FFmpeg decoder name (``stream.codec_context.name``).
        extradata: the stream's codec extradata (``None`` when absent).
    """
    if codec not in SKIP_NONREF_CODECS:
        return False
    if codec != "hevc":
        return True
    # hvcC: configurationVersion 1, byte 21 = constantFrameRate(2) numTemporalLayers(3) nested(1) lengthSize(2)
    return bool(extradata) and len(extradata) >= 23 and extradata[0] == 1 and (extradata[21] >> 3) & 0x7 == 1  # type: ignore[index]


@dataclass(frozen=True)
class StageTimes:
    """Seconds spent per stage, summed over the threads that decoded (a profile, not wall time).

    Attributes:
        index: demuxing the packet index at open.
        open: opening extra containers for parallel workers.
        seek: container seeks (and the decoder flush they imply).
        demux: reading packets between seeks.
        decode: sending packets to the decoder and receiving frames (FFmpeg's decode).
        convert: colour conversion of the wanted frames to RGB and the copy into the output array.
        busy: per worker, the wall time from its first run to its last; the spread of these is the
            idle time an unbalanced plan costs.
    """

    index: float = 0.0
    open: float = 0.0
    seek: float = 0.0
    demux: float = 0.0
    decode: float = 0.0
    convert: float = 0.0
    busy: tuple[float, ...] = ()

    def __add__(self, other: StageTimes) -> StageTimes:
        sums = {f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self) if f.name != "busy"}
        return StageTimes(**sums, busy=self.busy + other.busy)


class StageClock:
    """One worker's running stage times (seconds), turned into :class:`StageTimes` when it finishes."""

    __slots__ = ("convert", "decode", "demux", "open", "seek")

    def __init__(self) -> None:
        self.open = self.seek = self.demux = self.decode = self.convert = 0.0

    def times(self, busy: float) -> StageTimes:
        """The stage times, with ``busy`` as this worker's wall time."""
        return StageTimes(
            open=self.open, seek=self.seek, demux=self.demux, decode=self.decode, convert=self.convert, busy=(busy,)
        )


@dataclass(frozen=True)
class DecodeStats:
    """What the reads of one opened video cost.

    Attributes:
        frames_decoded: frames the decoder produced (wanted or passed through).
        seeks: container seeks.
        sequential_fallbacks: reads that fell back to one sequential pass from the start.
        packets_sent: packets fed to the decoder by seeking reads; the non-reference frames among
            them that were not wanted were dropped undecoded (``packets_sent - frames_decoded``).
        times: seconds per stage (not compared: two equal reads take different times).
    """

    frames_decoded: int = 0
    seeks: int = 0
    sequential_fallbacks: int = 0
    packets_sent: int = 0
    times: StageTimes = field(default=StageTimes(), compare=False)

    def __add__(self, other: DecodeStats) -> DecodeStats:
        return DecodeStats(
            frames_decoded=self.frames_decoded + other.frames_decoded,
            seeks=self.seeks + other.seeks,
            sequential_fallbacks=self.sequential_fallbacks + other.sequential_fallbacks,
            packets_sent=self.packets_sent + other.packets_sent,
            times=self.times + other.times,
        )


@dataclass(frozen=True)
class Run:
    """One seek to ``key``, then decoding forward through the wanted frames.

    Attributes:
        key: presentation position of the keyframe the run seeks to.
        items: ``(slot, position)`` pairs, positions ascending; ``slot`` is the output row.
    """

    key: int
    items: tuple[tuple[int, int], ...]

    @property
    def cost(self) -> int:
        """Frames in presentation order from the keyframe to the last wanted frame."""
        return self.items[-1][1] - self.key + 1


def plan_runs(keyframes: Sequence[int], indices: Sequence[int], seek_cost_frames: int) -> list[Run]:
    """Split sorted unique indices into runs, each one seek followed by decoding forward.

    A wanted frame continues the current run when it lies in the GOP being decoded, or when its
    keyframe is at most ``seek_cost_frames`` frames past the decoder's position (decoding through a
    short gap beats a seek and a decoder flush); otherwise it starts a new run.

    Args:
        keyframes: sorted keyframe positions.
        indices: sorted, unique frame positions.
        seek_cost_frames: the gap, in frames, up to which decoding through beats seeking; -1 starts a
            run at every keyframe (for parallel workers: no run spans two GOPs).

    Returns:
        The runs in position order; their items, concatenated, are ``indices`` with slots ``0..n-1``.
    """
    runs: list[tuple[int, list[tuple[int, int]]]] = []
    next_position: int | None = None  # the position the decoder outputs next
    for slot, target in enumerate(indices):
        k = bisect.bisect_right(keyframes, target) - 1
        key = keyframes[k] if k >= 0 else 0
        through = next_position is not None and next_position <= target
        if not (through and (key <= next_position or key - next_position <= seek_cost_frames)):  # type: ignore[operator]
            runs.append((key, []))
        runs[-1][1].append((slot, target))
        next_position = target + 1
    return [Run(key, tuple(items)) for key, items in runs]


@dataclass(frozen=True)
class Schedule:
    """How a read's runs are decoded: in which order, by how many workers, with how many FFmpeg threads.

    Workers take the next run from :attr:`order` as they finish one (a shared queue), so the
    balance does not rest on the cost estimate: a run that decodes faster than its frame count says
    (dropped B-frames, cheap P-frames) frees its worker for the next one.

    Attributes:
        order: the runs, longest first (LPT: the short ones fill the gaps at the end).
        workers: containers decoding at once (``<= len(order)``; 0 when there are no runs).
        frame_threads: FFmpeg frame threads per worker decoder; 1 means single-threaded.
    """

    order: tuple[Run, ...]
    workers: int
    frame_threads: int = 1

    def loads(self) -> tuple[int, ...]:
        """Frames each worker decodes if every frame costs the same (greedy list scheduling of :attr:`order`)."""
        loads = [0] * self.workers
        for run in self.order:
            loads[loads.index(min(loads))] += run.cost
        return tuple(loads)


def schedule(runs: Sequence[Run], *, workers: int, cores: int, min_parallel_frames: int = 64) -> Schedule:
    """Order runs longest first (LPT) and pick the workers and FFmpeg frame threads for them.

    Reads of fewer than ``min_parallel_frames`` frames stay on one worker (a second container is not
    worth opening). When there are fewer runs than ``cores``, each worker's decoder gets
    ``cores // workers`` FFmpeg frame threads so that a one-GOP read still uses every core; when the
    longest run alone is over 1.25 fair shares (``total / workers``) of the frames, every worker
    gets ``cores`` frame threads, so that the cores whose worker ran out of runs help decode it.
    Frame threading gives the same frames as a single thread.

    Args:
        runs: the planned runs (:func:`plan_runs`).
        workers: the most containers decoding at once (>= 1).
        cores: CPU cores available to this read (>= 1).
        min_parallel_frames: below this total cost, one worker and no frame threads.
    """
    if workers < 1 or cores < 1:
        raise ValueError(f"workers and cores must be >= 1, got workers={workers}, cores={cores}")
    order = tuple(sorted(runs, key=lambda r: (-r.cost, r.key)))
    total = sum(run.cost for run in runs)
    if total < min_parallel_frames:
        return Schedule(order=order, workers=min(1, len(order)))
    n = min(workers, len(order))
    if len(order) < cores:
        threads = max(1, cores // n)
    elif order[0].cost * n > total * 1.25:
        threads = cores  # the longest run alone outlasts a fair share: the cores that run out of work help it
    else:
        threads = 1
    return Schedule(order=order, workers=n, frame_threads=threads)


__all__ = [
    "SKIP_NONREF_CODECS",
    "DecodeStats",
    "Run",
    "Schedule",
    "StageTimes",
    "plan_runs",
    "schedule",
    "skips_nonref",
]
