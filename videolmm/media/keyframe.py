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

While decoding forward, packets go to the decoder one at a time, and for h264 and MPEG-4 part 2
the decoder is told to drop the non-reference frames that are not wanted (``skip_frame=NONREF``):
no frame refers to them, so the wanted pixels do not change, and with B-frames fewer frames are
decoded than the keyframe-to-frame runs hold. When a read needs several runs (GOPs) and enough
frames, runs are spread over ``workers`` containers decoded in threads (PyAV releases the GIL while
decoding), longest first.

Frames go straight into one preallocated ``(T, H, W, 3)`` array: no per-frame list and no
``np.stack`` copy. :attr:`KeyframeVideo.stats` counts frames decoded and seeks;
:func:`~videolmm.media.packets.decode_bound` gives the frames in the keyframe-to-frame runs for a set
of indices, what the counts are judged against.

PyAV is imported lazily, inside the functions that need it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from videolmm.errors import MediaError, MediaUnreadable, NoFrames
from videolmm.media.base import OpenedVideo, OpenedVideoBase, describe_source, module_importable
from videolmm.media.deadline import check_deadline, current_deadline, deadline_scope
from videolmm.media.packets import PacketIndex, read_packet_index
from videolmm.media.probe import container_source, import_av, open_container, stream_facts, video_stream
from videolmm.media.pyav import frame_to_rgb
from videolmm.types import VideoInfo, VideoSource

if TYPE_CHECKING:
    from av.container import InputContainer
    from av.video.stream import VideoStream

#: Thread modes accepted for ``thread_type`` (PyAV / FFmpeg names).
THREAD_TYPES = ("NONE", "SLICE", "FRAME", "AUTO")
#: Codecs whose decoders drop exactly the frames nothing refers to under ``skip_frame=NONREF``
#: (h264: ``nal_ref_idc == 0``; MPEG-4 part 2: B-frames), so unwanted ones are skipped while seeking.
SKIP_NONREF_CODECS = frozenset({"h264", "mpeg4"})


@dataclass(frozen=True)
class DecodeStats:
    """What the reads of one opened video cost.

    Attributes:
        frames_decoded: frames the decoder produced (wanted or passed through).
        seeks: container seeks.
        sequential_fallbacks: reads that fell back to one sequential pass from the start.
        packets_sent: packets fed to the decoder by seeking reads; the non-reference frames among
            them that were not wanted were dropped undecoded (``packets_sent - frames_decoded``).
    """

    frames_decoded: int = 0
    seeks: int = 0
    sequential_fallbacks: int = 0
    packets_sent: int = 0


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
        stats: cumulative :class:`DecodeStats` over this video's reads.
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
        min_parallel_frames: int = 64,
        skip_nonref: bool = False,
    ) -> None:
        super().__init__(info)
        self._lock = threading.Lock()
        self._workers = max(1, workers)
        self._min_parallel = min_parallel_frames
        self._extra: list[tuple[InputContainer, VideoStream]] = []
        self._data = data
        self._container: InputContainer | None = container
        self._stream = stream
        self._at_start = False  # the container was demuxed to its end while indexing
        self.index = index
        self.stats = DecodeStats()
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
        self._bump(sequential_fallbacks=1)
        out = _Output(len(indices), self.info.source)
        self._read_sequential(indices, out)
        return out.array

    def _bump(
        self, frames_decoded: int = 0, seeks: int = 0, sequential_fallbacks: int = 0, packets_sent: int = 0
    ) -> None:
        with self._lock:
            s = self.stats
            self.stats = DecodeStats(
                frames_decoded=s.frames_decoded + frames_decoded,
                seeks=s.seeks + seeks,
                sequential_fallbacks=s.sequential_fallbacks + sequential_fallbacks,
                packets_sent=s.packets_sent + packets_sent,
            )

    def plan(self, indices: Sequence[int]) -> list[list[tuple[int, int]]]:
        """Split sorted unique indices into runs, each one seek followed by decoding forward.

        Args:
            indices: sorted, unique frame positions.

        Returns:
            Runs of ``(slot, position)`` pairs; a new run starts where seeking to the wanted
            frame's keyframe beats decoding through (see ``seek_cost_frames``).
        """
        runs: list[list[tuple[int, int]]] = []
        next_position: int | None = None  # presentation position the decoder outputs next
        for slot, target in enumerate(indices):
            key = self.index.keyframe_before(target)
            ahead = next_position is not None and next_position <= target
            if not (ahead and (key <= next_position or key - next_position <= self._seek_cost)):  # type: ignore[operator]
                runs.append([])
            runs[-1].append((slot, target))
            next_position = target + 1
        return runs

    def _run_cost(self, run: list[tuple[int, int]]) -> int:
        """Frames a run decodes: from the keyframe before its first frame to its last frame."""
        return run[-1][1] - self.index.keyframe_before(run[0][1]) + 1

    def _read_seeking(self, indices: list[int], out: _Output) -> None:
        """Decode the planned runs, on ``workers`` containers at once when there is enough work."""
        runs = self.plan(indices)
        self._at_start = False
        workers = min(self._workers, len(runs))
        if workers <= 1 or sum(self._run_cost(r) for r in runs) < self._min_parallel:
            container, stream = self._live()
            for run in runs:
                self._decode_run(container, stream, run, out)
            return
        # longest runs first, each to the least loaded worker
        shares: list[list[list[tuple[int, int]]]] = [[] for _ in range(workers)]
        loads = [0] * workers
        for run in sorted(runs, key=self._run_cost, reverse=True):
            k = loads.index(min(loads))
            shares[k].append(sorted(run))
            loads[k] += self._run_cost(run)
        handles = [self._live(), *(self._extra_handle(k) for k in range(1, workers))]
        errors: list[BaseException] = []
        deadline = current_deadline()  # each worker checks the caller's deadline

        def work(k: int) -> None:
            try:
                with deadline_scope(deadline):
                    for run in sorted(shares[k]):
                        self._decode_run(*handles[k], run, out)
            except BaseException as exc:  # handed to the calling thread below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(k,), name=f"keyframe-{k}") for k in range(1, workers)]
        for thread in threads:
            thread.start()
        work(0)
        for thread in threads:
            thread.join()
        if errors:
            mismatch = [e for e in errors if isinstance(e, _IndexMismatch)]
            raise (mismatch[0] if len(mismatch) == len(errors) else next(e for e in errors if e not in mismatch))

    def _decode_run(
        self, container: InputContainer, stream: VideoStream, run: list[tuple[int, int]], out: _Output
    ) -> None:
        """Seek to the keyframe before the run's first frame and decode forward through its frames.

        Packets are fed to the decoder one by one so that, for codecs in :data:`SKIP_NONREF_CODECS`,
        the decoder may drop the non-reference frames that are not wanted (``skip_frame=NONREF``):
        no other frame depends on them, so every wanted frame's pixels are unchanged.
        """
        av, index = self._av, self.index
        ctx = stream.codec_context
        wanted_pts = {int(index.pts[t]) for _, t in run} if self._skip_nonref else None
        pending = iter(run)
        slot, target = next(pending)
        target_pts = int(index.pts[target])
        decoded = packets = 0
        done = False
        try:
            key = index.keyframe_before(target)
            container.seek(int(index.pts[key]), stream=stream, backward=True, any_frame=False)
            self._bump(seeks=1)
            skipping = False
            for packet in container.demux(stream):
                check_deadline(self.info.source)
                if wanted_pts is not None and packet.size > 0:
                    skip = packet.pts not in wanted_pts
                    if skip != skipping:
                        ctx.skip_frame = "NONREF" if skip else "DEFAULT"
                        skipping = skip
                packets += packet.size > 0
                for frame in ctx.decode(packet):
                    decoded += 1
                    if frame.pts is None:
                        raise _IndexMismatch
                    if frame.pts < target_pts:
                        continue
                    if frame.pts > target_pts:
                        raise _IndexMismatch
                    out.put(slot, frame, target)
                    item = next(pending, None)
                    if item is None:
                        done = True
                        break
                    slot, target = item
                    target_pts = int(index.pts[target])
                if done:
                    break
            if not done:
                raise _IndexMismatch  # the stream ended before the wanted frame: let the slow path say why
        except (av.error.FFmpegError, EOFError) as exc:
            raise _IndexMismatch from exc
        finally:
            if wanted_pts is not None:
                ctx.skip_frame = "DEFAULT"
            self._bump(frames_decoded=decoded, packets_sent=packets)

    def _extra_handle(self, k: int) -> tuple[InputContainer, VideoStream]:
        """The ``k``-th extra container (opened on first use, kept until close) for parallel runs."""
        while len(self._extra) < k:
            container = open_container(self._av, self._data, self.info.source)
            try:
                stream = _configure(video_stream(self._av, container, self.info.source), self._thread_type)
            except BaseException:
                container.close()
                raise
            self._extra.append((container, stream))
        return self._extra[k - 1]

    def _read_sequential(self, indices: list[int], out: _Output) -> None:
        """One decode pass from the start (PyAV's path), for streams the index cannot address."""
        av, label = self._av, self.info.source
        if not self._at_start:
            self._reopen()
        container, stream = self._live()
        self._at_start = False
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
            self._bump(frames_decoded=decoded)
        if not done:
            if decoded == 0:
                raise NoFrames(label, "the video stream yields no decodable frames")
            raise MediaUnreadable(
                label,
                f"the stream ended after {decoded} decodable frames but frame {target} was requested "
                f"(the container claims {self.info.num_frames}); truncated or corrupt",
            )

    # ------------------------------------------------------------------ handles

    def _live(self) -> tuple[InputContainer, VideoStream]:
        if self._container is None:
            raise MediaError(self.info.source, "read() after close()")
        return self._container, self._stream

    def _reopen(self) -> None:
        """A fresh container positioned at the start (for a sequential pass)."""
        if self._container is not None:
            self._container.close()
        self._container = None
        container = open_container(self._av, self._data, self.info.source)
        self._stream = _configure(video_stream(self._av, container, self.info.source), self._thread_type)
        self._container = container
        self._at_start = True

    def release(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
        for container, _ in self._extra:
            container.close()
        self._extra.clear()


def _configure(stream: VideoStream, thread_type: str) -> VideoStream:
    stream.thread_type = thread_type
    return stream


class KeyframeDecoder:
    """PyAV with a packet index: seek to the keyframe before each wanted frame, or decode through.

    N is the number of video packets when it matches the header's frame count (or the header has
    none), the count decord reports; fps is ``stream.average_rate`` (falling back to
    ``guessed_rate``), as for ``pyav``.

    Args:
        seek_cost_frames: a seek is taken only when the next keyframe is more than this many frames
            ahead of the decoder's position (decoding through a short gap beats a seek + flush).
        thread_type: FFmpeg threading inside each decoder: ``NONE``, ``SLICE``, ``FRAME`` or ``AUTO``
            (frame + slice). Frame threading pays a pipeline refill after every seek, so the default
            parallelises across GOPs instead (``workers``).
        workers: containers decoding independent runs (GOPs) at once, each in its own thread
            (PyAV releases the GIL while decoding); 0 picks ``min(4, os.cpu_count())``.
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
    ) -> None:
        if seek_cost_frames < 0:
            raise ValueError(f"seek_cost_frames must be >= 0, got {seek_cost_frames}")
        if thread_type not in THREAD_TYPES:
            raise ValueError(f"thread_type must be one of {THREAD_TYPES}, got {thread_type!r}")
        if workers < 0:
            raise ValueError(f"workers must be >= 0 (0 = one per core, at most 4), got {workers}")
        self.seek_cost_frames = seek_cost_frames
        self.thread_type = thread_type
        self.workers = workers or min(4, os.cpu_count() or 1)
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
            index = read_packet_index(av, container, stream, label)
            count = facts.header_frames if facts.header_frames > 0 else index.num_frames
            if count <= 0:
                raise NoFrames(label, f"the {facts.codec} video stream has no frames")
            if count != index.num_frames:
                index = PacketIndex(pts=index.pts, keyframes=index.keyframes, exact=False)
            _configure(stream, self.thread_type)
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
            min_parallel_frames=self.min_parallel_frames,
            skip_nonref=self.skip_nonref and facts.codec in SKIP_NONREF_CODECS,
        )


__all__ = ["SKIP_NONREF_CODECS", "THREAD_TYPES", "DecodeStats", "KeyframeDecoder", "KeyframeVideo"]
