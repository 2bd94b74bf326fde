"""The ``keyframe`` decoder: read the packet index first, then decode only what the wanted frames need.

Opening a video demuxes its packets once (no pixels): their presentation timestamps and keyframe
flags. Frame ``n`` is the ``n``-th packet in presentation (pts) order, the order decord and PyAV's
decoder output count frames in, so indices mean the same frame for every decoder. A read of sorted
indices then walks the wanted frames, and for each one decides:

* **continue** decoding forward when the wanted frame is in the GOP being decoded, or when the next
  keyframe is at most ``seek_cost_frames`` frames ahead (decoding through is cheaper than a seek);
* **seek** otherwise: ``container.seek(keyframe_pts, backward=True)`` to the keyframe before the
  wanted frame, and decode forward from there.

Decoded frames are matched to wanted frames by pts, never by counting, so a seek that lands early
only costs time; a stream whose timestamps do not fit the index (missing or duplicate pts, fewer
packets than the header's frame count, a frame past the one wanted) falls back to one sequential pass
from the start, PyAV's path. Pixels come from :func:`~videolmm.media.pyav.frame_to_rgb`, the
``pyav`` decoder's conversion, so frames are bit-identical to decord's and PyAV's (tests check this).

While decoding forward, packets go to the decoder one at a time, and for h264, MPEG-4 part 2 and
single-layer HEVC the decoder is told to drop the non-reference frames that are not wanted
(``skip_frame=NONREF``, :func:`~videolmm.media.readplan.skips_nonref`): no frame refers to them, so
the wanted pixels do not change, and with B-frames fewer frames are decoded than the
keyframe-to-frame runs hold. Once every wanted frame's packet is in, the decoder is drained rather
than fed on: the frames a B-frame reorder delay holds back come out without decoding the packets
after them. Runs are planned and spread over ``workers`` containers decoded in threads (PyAV
releases the GIL while decoding) by :mod:`videolmm.media.readplan`: balanced by frames to decode,
longest first, and with FFmpeg frame threads per worker when a read has fewer runs than cores (a
one-GOP clip). Reads that run at once (evaluation's decode pool, Serve's concurrent requests) share
the cores: each plans for ``cores // reads_in_flight`` when it starts (:mod:`videolmm.media.cores`;
a read alone for all of them). Opened containers are kept for the next read
(:mod:`videolmm.media.keyframe_io`).

Frames go straight into one preallocated ``(T, H, W, 3)`` array: no per-frame list and no
``np.stack`` copy. :attr:`KeyframeVideo.stats` counts frames decoded and seeks, and times each stage
(index, opening, seeks, demux, decode, conversion, each worker's busy time);
:func:`~videolmm.media.packets.decode_bound` gives the frames in the keyframe-to-frame runs for a set
of indices, what the counts are judged against.

PyAV is imported lazily, inside the functions that need it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from videolmm.errors import MediaUnreadable, NoFrames
from videolmm.media.base import OpenedVideo, OpenedVideoBase, describe_source, module_importable
from videolmm.media.cores import READS_IN_FLIGHT, ReadsInFlight, available_cores, share
from videolmm.media.deadline import check_deadline, current_deadline, deadline_scope
from videolmm.media.keyframe_io import ContainerPool, FrameOutput
from videolmm.media.packets import PacketIndex, read_packet_index
from videolmm.media.probe import container_source, import_av, open_container, stream_facts, video_stream
from videolmm.media.readplan import (
    SKIP_NONREF_CODECS,
    DecodeStats,
    Run,
    Schedule,
    StageClock,
    StageTimes,
    plan_runs,
    schedule,
    skips_nonref,
)
from videolmm.types import VideoInfo, VideoSource

if TYPE_CHECKING:
    from av.container import InputContainer
    from av.video.stream import VideoStream

#: Thread modes accepted for ``thread_type`` (PyAV / FFmpeg names).
THREAD_TYPES = ("NONE", "SLICE", "FRAME", "AUTO")


class _IndexMismatch(Exception):
    """The decoder's output does not fit the packet index; the caller decodes sequentially instead."""


class KeyframeVideo(OpenedVideoBase):
    """An opened container read by keyframe-aware seeking (see the module docstring).

    Holds its PyAV containers open until :meth:`close` (one, plus one per extra worker once a read
    runs GOPs in parallel; :class:`~videolmm.media.keyframe_io.ContainerPool`). Not safe to read from
    two threads at once (open one per thread; the decoder object itself is shared freely).

    Each read counts itself in ``reads`` (when given) while it runs, and plans its workers and FFmpeg
    frame threads for its share of the cores at the moment it starts
    (:func:`~videolmm.media.cores.share`): all of ``cores`` and ``workers`` when it is alone.

    Attributes:
        info: frame count, rate and size.
        index: the packet index read at open.
        stats: cumulative :class:`DecodeStats` over this video's reads (``stats.times``: the profile).
        last_schedule: the :class:`~videolmm.media.readplan.Schedule` of the last seeking read.
        last_share: ``(cores, workers)`` the last read planned with.
    """

    backend = "keyframe"

    def __init__(
        self,
        info: VideoInfo,
        data: Path | bytes,
        container: InputContainer,
        stream: VideoStream,
        index: PacketIndex,
        *,
        seek_cost_frames: int,
        thread_type: str,
        workers: int = 1,
        cores: int = 1,
        min_parallel_frames: int = 64,
        skip_nonref: bool = False,
        index_seconds: float = 0.0,
        reads: ReadsInFlight | None = None,
    ) -> None:
        super().__init__(info)
        self._lock = threading.Lock()
        self._workers, self._cores = max(1, workers), max(1, cores)
        self._min_parallel = min_parallel_frames
        self._reads = reads
        self.index = index
        self.stats = DecodeStats(times=StageTimes(index=index_seconds))
        self.last_schedule: Schedule | None = None
        self._seek_cost = seek_cost_frames
        self._thread_type = thread_type
        self._skip_nonref = skip_nonref
        self._av = import_av(info.source)
        self._pool = ContainerPool(self._av, data, info.source, (container, stream), thread_type)
        self.last_share: tuple[int, int] = (self._cores, self._workers)

    # ------------------------------------------------------------------ reading

    def read_sorted(self, indices: list[int]) -> np.ndarray:
        with self._reads.enter() if self._reads is not None else nullcontext(1) as reads:
            reserved = self._reads.reserved if self._reads is not None else 0
            cores, workers = self.last_share = share(self._cores, self._workers, reads, reserved)
            if self.index.exact:
                out = FrameOutput(len(indices), self.info.source)
                try:
                    self._read_seeking(indices, out, cores, workers)
                    return out.array
                except _IndexMismatch:
                    pass  # timestamps do not fit the index: one sequential pass below
            self._add(DecodeStats(sequential_fallbacks=1))
            out = FrameOutput(len(indices), self.info.source)
            self._read_sequential(indices, out, cores)
            return out.array

    def _add(self, stats: DecodeStats) -> None:
        with self._lock:
            self.stats = self.stats + stats

    def plan(self, indices: Sequence[int]) -> list[list[tuple[int, int]]]:
        """Split sorted unique indices into runs (:func:`~videolmm.media.readplan.plan_runs`).

        Returns:
            Runs of ``(slot, position)`` pairs; a new run starts where seeking to the wanted
            frame's keyframe beats decoding through (see ``seek_cost_frames``).
        """
        return [
            list(run.items) for run in plan_runs(self.index.keyframes, indices, self._run_seek_cost(self._workers))
        ]

    def _run_seek_cost(self, workers: int) -> int:
        """``seek_cost_frames`` on one container; with several, a run never crosses a keyframe (-1), so GOPs
        decode in parallel rather than one after another (cutting there only skips frames nobody wants)."""
        return self._seek_cost if workers == 1 else -1

    def _read_seeking(self, indices: list[int], out: FrameOutput, cores: int, workers: int) -> None:
        """Decode the planned runs, longest first, on several containers at once when there is enough work."""
        runs = plan_runs(self.index.keyframes, indices, self._run_seek_cost(workers))
        plan = schedule(runs, workers=workers, cores=cores, min_parallel_frames=self._min_parallel)
        self.last_schedule = plan
        threads = plan.frame_threads if self._thread_type == "NONE" else 0
        errors: list[BaseException] = []
        deadline = current_deadline()  # each worker checks the caller's deadline

        queue = iter(plan.order)  # shared: each worker takes the next run when done with one
        take = threading.Lock()

        def work(k: int) -> None:
            clock, start = StageClock(), time.perf_counter()
            try:
                with deadline_scope(deadline):
                    container, stream = self._pool.get(k, threads, clock)
                    while not errors:
                        with take:
                            run = next(queue, None)
                        if run is None:
                            break
                        self._decode_run(container, stream, run, out, clock)
            except BaseException as exc:  # handed to the calling thread below
                errors.append(exc)
            finally:
                self._add(DecodeStats(times=clock.times(time.perf_counter() - start)))

        workers = [threading.Thread(target=work, args=(k,), name=f"keyframe-{k}") for k in range(1, plan.workers)]
        for thread in workers:
            thread.start()
        work(0)
        for thread in workers:
            thread.join()
        if errors:
            mismatch = [e for e in errors if isinstance(e, _IndexMismatch)]
            raise (mismatch[0] if len(mismatch) == len(errors) else next(e for e in errors if e not in mismatch))

    def _decode_run(
        self, container: InputContainer, stream: VideoStream, run: Run, out: FrameOutput, clock: StageClock
    ) -> None:
        """Seek to the run's keyframe and decode forward through its frames.

        Packets are fed to the decoder one by one so that, for codecs in :data:`SKIP_NONREF_CODECS`,
        the decoder may drop the non-reference frames that are not wanted (``skip_frame=NONREF``):
        no other frame depends on them, so every wanted frame's pixels are unchanged. Once every
        wanted frame's packet is in, the decoder is drained instead of fed further: packets after
        them in decode order cannot be referenced by them, so the frames a B-frame reorder delay
        holds back come out without decoding more.
        """
        av, index, now = self._av, self.index, time.perf_counter
        ctx = stream.codec_context
        wanted_pts = {int(index.pts[t]) for _, t in run.items}
        unsent = len(wanted_pts)  # wanted frames whose packet the decoder has not had yet
        skip_nonref = self._skip_nonref
        pending = iter(run.items)
        slot, target = next(pending)
        target_pts = int(index.pts[target])
        decoded = packets = 0
        done = skipping = False
        try:
            t0 = now()
            container.seek(int(index.pts[run.key]), stream=stream, backward=True, any_frame=False)
            t1 = now()
            clock.seek += t1 - t0
            demux = container.demux(stream)
            while not done:
                check_deadline(self.info.source)
                packet = next(demux, None) if unsent else None  # None: drain the decoder
                t0 = now()
                clock.demux += t0 - t1
                if packet is not None and packet.size > 0:
                    wanted = packet.pts in wanted_pts
                    unsent -= wanted
                    packets += 1
                    if skip_nonref and wanted == skipping:
                        ctx.skip_frame = "DEFAULT" if wanted else "NONREF"
                        skipping = not wanted
                frames = ctx.decode(packet)
                t1 = now()
                clock.decode += t1 - t0
                for frame in frames:
                    decoded += 1
                    if frame.pts is None or frame.pts > target_pts:
                        raise _IndexMismatch
                    if frame.pts < target_pts:
                        continue
                    out.put(slot, frame, target)
                    item = next(pending, None)
                    if item is None:
                        done = True
                        break
                    slot, target = item
                    target_pts = int(index.pts[target])
                t0 = now()
                clock.convert += t0 - t1
                t1 = t0
                if not done and (packet is None or packet.size == 0):
                    raise _IndexMismatch  # drained or ended before the wanted frame: let the slow path say why
        except (av.error.FFmpegError, EOFError) as exc:
            raise _IndexMismatch from exc
        finally:
            if skipping:
                ctx.skip_frame = "DEFAULT"
            self._add(DecodeStats(frames_decoded=decoded, seeks=1, packets_sent=packets))

    def _read_sequential(self, indices: list[int], out: FrameOutput, cores: int) -> None:
        """One decode pass from the start (PyAV's path), for streams the index cannot address."""
        av, label = self._av, self.info.source
        threads = cores if self._thread_type == "NONE" and cores > 1 else 0
        container, stream = self._pool.open(threads)
        pending = iter(enumerate(indices))
        slot, target = next(pending)
        done, decoded = False, 0
        try:
            for position, frame in enumerate(container.decode(stream)):
                decoded = position + 1
                check_deadline(label)
                if position == target:
                    out.put(slot, frame, target)
                    item = next(pending, None)
                    if item is None:
                        done = True
                        break
                    slot, target = item
        except (av.error.FFmpegError, EOFError) as exc:
            raise MediaUnreadable(
                label, f"decoding failed after {decoded} frames while looking for frame {target} ({exc})"
            ) from exc
        finally:
            container.close()
            self._add(DecodeStats(frames_decoded=decoded))
        if not done:
            if decoded == 0:
                raise NoFrames(label, "the video stream yields no decodable frames")
            raise MediaUnreadable(
                label,
                f"the stream ended after {decoded} decodable frames but frame {target} was requested "
                f"(the container claims {self.info.num_frames}); truncated or corrupt",
            )

    # ------------------------------------------------------------------ handles

    def release(self) -> None:
        self._pool.close()


class KeyframeDecoder:
    """PyAV with a packet index: seek to the keyframe before each wanted frame, or decode through.

    N is the number of video packets when it matches the header's frame count (or the header has
    none), the count decord reports; fps is ``stream.average_rate`` (falling back to
    ``guessed_rate``), as for ``pyav``.

    Args:
        seek_cost_frames: on one worker, a seek is taken only when the next keyframe is more than this
            many frames ahead of the decoder's position (decoding through a short gap beats a seek +
            flush); with several workers every keyframe starts a run, so GOPs decode in parallel.
        thread_type: FFmpeg threading inside each decoder: ``NONE``, ``SLICE``, ``FRAME`` or ``AUTO``
            (frame + slice, FFmpeg's thread count). Frame threading pays a pipeline refill after every
            seek, so the default (``NONE``) parallelises across GOPs instead (``workers``), and gives
            each worker ``cores // workers`` frame threads only when a read has fewer runs than cores
            (a one-GOP read, a short clip); any other value is used as given for every read.
        workers: containers decoding independent runs (GOPs) at once, each in its own thread
            (PyAV releases the GIL while decoding), runs balanced by frames to decode; 0 picks
            ``min(4, cores)``.
        cores: CPU cores a read alone may use; 0 counts those this process may run on.
        min_parallel_frames: reads that decode fewer frames than this stay on one container.
        skip_nonref: let the decoder drop unwanted non-reference frames (h264, MPEG-4 part 2; see
            :data:`SKIP_NONREF_CODECS`); the wanted frames are the same either way.
        share_cores: reads that run at once share the cores. Each read counts itself in the
            process-wide :data:`~videolmm.media.cores.READS_IN_FLIGHT` while it runs and, when it
            starts beside ``r - 1`` others, plans for ``max(1, (cores - held) // r)`` cores and at
            most that many workers (:func:`~videolmm.media.cores.share`), ``held`` being the cores
            other work holds (:meth:`~videolmm.media.cores.ReadsInFlight.reserve`: evaluation's
            generation); a read alone, with none held, plans for all of ``cores`` and ``workers``,
            as without sharing. Evaluation decodes several requests at once in a thread pool, Serve
            several requests at once: each sized for the whole machine, they would oversubscribe it.
            False: every read plans for ``cores``. Threading never changes the frames.
    """

    name = "keyframe"

    def __init__(
        self,
        seek_cost_frames: int = 4,
        thread_type: str = "NONE",
        workers: int = 0,
        min_parallel_frames: int = 64,
        skip_nonref: bool = True,
        cores: int = 0,
        share_cores: bool = True,
    ) -> None:
        if seek_cost_frames < 0:
            raise ValueError(f"seek_cost_frames must be >= 0, got {seek_cost_frames}")
        if thread_type not in THREAD_TYPES:
            raise ValueError(f"thread_type must be one of {THREAD_TYPES}, got {thread_type!r}")
        if workers < 0:
            raise ValueError(f"workers must be >= 0 (0 = one per core, at most 4), got {workers}")
        if cores < 0:
            raise ValueError(f"cores must be >= 0 (0 = the CPUs this process may use), got {cores}")
        self.seek_cost_frames = seek_cost_frames
        self.thread_type = thread_type
        self.cores = cores or available_cores()
        self.workers = workers or min(4, self.cores)
        self.min_parallel_frames = min_parallel_frames
        self.skip_nonref = skip_nonref
        self.share_cores = share_cores

    def available(self) -> bool:
        """Whether ``av`` imports."""
        return module_importable("av")

    def open(self, source: VideoSource) -> OpenedVideo:
        """Probe a path or bytes with PyAV and read its packet index (one demux pass, no decoding).

        Args:
            source: a local file path or container bytes.

        Returns:
            The opened video, holding its container until closed.
        """
        label = describe_source(source)
        data = container_source(source, label)
        av = import_av(label)
        container = open_container(av, data, label)
        try:
            stream = video_stream(av, container, label)
            facts = stream_facts(container, stream, label)
            start = time.perf_counter()
            index = read_packet_index(av, container, stream, label)
            index_seconds = time.perf_counter() - start
            count = facts.header_frames if facts.header_frames > 0 else index.num_frames
            if count <= 0:
                raise NoFrames(label, f"the {facts.codec} video stream has no frames")
            if count != index.num_frames:
                index = PacketIndex(pts=index.pts, keyframes=index.keyframes, exact=False)
        except BaseException:
            container.close()
            raise
        info = VideoInfo(source=label, num_frames=count, fps=facts.fps, width=facts.width, height=facts.height)
        return KeyframeVideo(
            info,
            data,
            container,
            stream,
            index,
            seek_cost_frames=self.seek_cost_frames,
            thread_type=self.thread_type,
            workers=self.workers,
            cores=self.cores,
            min_parallel_frames=self.min_parallel_frames,
            skip_nonref=self.skip_nonref and skips_nonref(facts.codec, stream.codec_context.extradata),
            index_seconds=index_seconds,
            reads=READS_IN_FLIGHT if self.share_cores else None,
        )


__all__ = ["SKIP_NONREF_CODECS", "THREAD_TYPES", "DecodeStats", "KeyframeDecoder", "KeyframeVideo"]
