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
one-GOP clip). Opened containers are kept for the next read.

Frames go straight into one preallocated ``(T, H, W, 3)`` array: no per-frame list and no
``np.stack`` copy. :attr:`KeyframeVideo.stats` counts frames decoded and seeks, and times each stage
(index, opening, seeks, demux, decode, conversion, each worker's busy time);
:func:`~videolmm.media.packets.decode_bound` gives the frames in the keyframe-to-frame runs for a set
of indices, what the counts are judged against.

PyAV is imported lazily, inside the functions that need it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from videolmm.errors import MediaError, MediaUnreadable, NoFrames
from videolmm.media.base import OpenedVideo, OpenedVideoBase, describe_source, module_importable
from videolmm.media.deadline import check_deadline, current_deadline, deadline_scope
from videolmm.media.packets import PacketIndex, read_packet_index
from videolmm.media.probe import container_source, import_av, open_container, stream_facts, video_stream
from videolmm.media.pyav import frame_to_rgb
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


class _Output:
    """The ``(T, H, W, 3)`` result, allocated once at the first frame's upright size, filled in place.

    The size comes from the first converted frame, not the header: :func:`frame_to_rgb` turns frames
    upright by the display matrix, so a 90°-rotated stream yields ``W x H`` frames.
    """

    def __init__(self, count: int, label: str) -> None:
        self._count, self._label = count, label
        self._array: np.ndarray | None = None
        self._lock = threading.Lock()

    def put(self, slot: int, frame: Any, position: int) -> None:
        """Convert one decoded frame to RGB24 and copy it into row ``slot``."""
        rgb = frame_to_rgb(frame)
        if self._array is None:
            with self._lock:
                if self._array is None:
                    self._array = np.empty((self._count, *rgb.shape), dtype=np.uint8)
        if rgb.shape != self._array.shape[1:]:
            have = self._array.shape
            raise MediaUnreadable(
                self._label,
                f"frame {position} is {rgb.shape[1]}x{rgb.shape[0]} but earlier frames are {have[2]}x{have[1]} "
                "(a mid-stream size change is not supported)",
            )
        self._array[slot] = rgb

    @property
    def array(self) -> np.ndarray:
        """The filled array (every slot was written when a read returns normally)."""
        if self._array is None:
            raise MediaUnreadable(self._label, "no frame was decoded")
        return self._array


class KeyframeVideo(OpenedVideoBase):
    """An opened container read by keyframe-aware seeking (see the module docstring).

    Holds its PyAV containers open until :meth:`close` (one, plus one per extra worker once a read
    runs GOPs in parallel). Not safe to read from two threads at once (open one per thread; the
    decoder object itself is shared freely).

    Attributes:
        info: frame count, rate and size.
        index: the packet index read at open.
        stats: cumulative :class:`DecodeStats` over this video's reads (``stats.times``: the profile).
        last_schedule: the :class:`~videolmm.media.readplan.Schedule` of the last seeking read.
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
    ) -> None:
        super().__init__(info)
        self._lock = threading.Lock()
        self._workers, self._cores = max(1, workers), max(1, cores)
        self._min_parallel = min_parallel_frames
        self._data = data
        # the container that read the index: its decoder is not opened yet, so the first read may
        # still choose its threads; then handles by (worker, FFmpeg frame threads), kept until close
        self._fresh: tuple[InputContainer, VideoStream] | None = (container, stream)
        self._handles: dict[tuple[int, int], tuple[InputContainer, VideoStream]] = {}
        self.index = index
        self.stats = DecodeStats(times=StageTimes(index=index_seconds))
        self.last_schedule: Schedule | None = None
        self._seek_cost = seek_cost_frames
        self._thread_type = thread_type
        self._skip_nonref = skip_nonref
        self._av = import_av(info.source)

    # ------------------------------------------------------------------ reading

    def read_sorted(self, indices: list[int]) -> np.ndarray:
        if self.index.exact:
            out = _Output(len(indices), self.info.source)
            try:
                self._read_seeking(indices, out)
                return out.array
            except _IndexMismatch:
                pass  # timestamps do not fit the index: one sequential pass below
        self._add(DecodeStats(sequential_fallbacks=1))
        out = _Output(len(indices), self.info.source)
        self._read_sequential(indices, out)
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
        return [list(run.items) for run in plan_runs(self.index.keyframes, indices, self._run_seek_cost)]

    @property
    def _run_seek_cost(self) -> int:
        """``seek_cost_frames`` on one container; with several, a run never crosses a keyframe (-1), so GOPs
        decode in parallel rather than one after another (cutting there only skips frames nobody wants)."""
        return self._seek_cost if self._workers == 1 else -1

    def _read_seeking(self, indices: list[int], out: _Output) -> None:
        """Decode the planned runs, longest first, on several containers at once when there is enough work."""
        runs = plan_runs(self.index.keyframes, indices, self._run_seek_cost)
        plan = schedule(runs, workers=self._workers, cores=self._cores, min_parallel_frames=self._min_parallel)
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
                    container, stream = self._handle(k, threads, clock)
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
        self, container: InputContainer, stream: VideoStream, run: Run, out: _Output, clock: StageClock
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

    def _handle(self, k: int, threads: int, clock: StageClock) -> tuple[InputContainer, VideoStream]:
        """Worker ``k``'s container whose decoder runs ``threads`` FFmpeg frame threads (0: ``thread_type``).

        The container that read the index serves the first handle asked for; others are opened on
        first use (in the worker's own thread) and kept until close.
        """
        with self._lock:
            if self._closed:
                raise MediaError(self.info.source, "read() after close()")
            handle = self._handles.get((k, threads))
            if handle is None and self._fresh is not None:
                handle, self._fresh = self._fresh, None
                self._handles[(k, threads)] = _configure(*handle, self._thread_type, threads)
        if handle is None:
            start = time.perf_counter()
            handle = self._open_handle(threads)
            clock.open += time.perf_counter() - start
            with self._lock:
                self._handles[(k, threads)] = handle
        return handle

    def _open_handle(self, threads: int) -> tuple[InputContainer, VideoStream]:
        container = open_container(self._av, self._data, self.info.source)
        try:
            return _configure(
                container, video_stream(self._av, container, self.info.source), self._thread_type, threads
            )
        except BaseException:
            container.close()
            raise

    def _read_sequential(self, indices: list[int], out: _Output) -> None:
        """One decode pass from the start (PyAV's path), for streams the index cannot address."""
        av, label = self._av, self.info.source
        threads = self._cores if self._thread_type == "NONE" and self._cores > 1 else 0
        container, stream = self._open_handle(threads)
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
        with self._lock:
            handles = [*self._handles.values(), *([self._fresh] if self._fresh else [])]
            self._handles.clear()
            self._fresh = None
        for container, _ in handles:
            container.close()


def _configure(
    container: InputContainer, stream: VideoStream, thread_type: str, frame_threads: int = 0
) -> tuple[InputContainer, VideoStream]:
    """Set the decoder's threads before it opens: ``frame_threads`` > 1 FFmpeg frame threads, else ``thread_type``."""
    if frame_threads > 1:
        stream.thread_type = "FRAME"
        stream.codec_context.thread_count = frame_threads
    else:
        stream.thread_type = thread_type
    return container, stream


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
        cores: CPU cores a read may use; 0 counts those this process may run on.
        min_parallel_frames: reads that decode fewer frames than this stay on one container.
        skip_nonref: let the decoder drop unwanted non-reference frames (h264, MPEG-4 part 2; see
            :data:`SKIP_NONREF_CODECS`); the wanted frames are the same either way.
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
        self.cores = cores or _available_cores()
        self.workers = workers or min(4, self.cores)
        self.min_parallel_frames = min_parallel_frames
        self.skip_nonref = skip_nonref

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
        )


def _available_cores() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity else os.cpu_count() or 1


__all__ = ["SKIP_NONREF_CODECS", "THREAD_TYPES", "DecodeStats", "KeyframeDecoder", "KeyframeVideo"]
