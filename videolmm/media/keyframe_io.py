"""The ``keyframe`` decoder's handles: its opened containers and the array a read fills.

:class:`ContainerPool` keeps one opened container per (worker, FFmpeg frame threads) for the reads of
one video (:class:`~videolmm.media.keyframe.KeyframeVideo`); :class:`FrameOutput` is the
``(T, H, W, 3)`` result, converted and copied into in place. PyAV is imported by the caller.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from videolmm.errors import MediaError, MediaUnreadable
from videolmm.media.probe import open_container, video_stream
from videolmm.media.pyav import frame_to_rgb
from videolmm.media.readplan import StageClock

if TYPE_CHECKING:
    from av.container import InputContainer
    from av.video.stream import VideoStream

    Handle = tuple[InputContainer, VideoStream]


class FrameOutput:
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


def configure(container: InputContainer, stream: VideoStream, thread_type: str, frame_threads: int = 0) -> Handle:
    """Set the decoder's threads before it opens: ``frame_threads`` > 1 FFmpeg frame threads, else ``thread_type``."""
    if frame_threads > 1:
        stream.thread_type = "FRAME"
        stream.codec_context.thread_count = frame_threads
    else:
        stream.thread_type = thread_type
    return container, stream


class ContainerPool:
    """One video's opened containers, one per (worker, FFmpeg frame threads), kept until :meth:`close`.

    The container that read the packet index has not opened its decoder yet, so it serves the first
    handle asked for (its threads can still be chosen); others are opened on first use, in the asking
    worker's own thread.

    Args:
        av: the imported PyAV module.
        data: the video's path or bytes.
        label: the source, as errors name it.
        first: the container (and its video stream) that read the index.
        thread_type: FFmpeg threading for decoders without frame threads.
    """

    def __init__(self, av: Any, data: Path | bytes, label: str, first: Handle, thread_type: str) -> None:
        self._av, self._data, self._label, self._thread_type = av, data, label, thread_type
        self._lock = threading.Lock()
        self._fresh: Handle | None = first
        self._handles: dict[tuple[int, int], Handle] = {}
        self._closed = False

    def get(self, k: int, threads: int, clock: StageClock) -> Handle:
        """Worker ``k``'s container whose decoder runs ``threads`` FFmpeg frame threads (0: ``thread_type``).

        Time spent opening a new container is added to ``clock.open``.
        """
        with self._lock:
            if self._closed:
                raise MediaError(self._label, "read() after close()")
            handle = self._handles.get((k, threads))
            if handle is None and self._fresh is not None:
                handle, self._fresh = self._fresh, None
                self._handles[(k, threads)] = configure(*handle, self._thread_type, threads)
        if handle is None:
            start = time.perf_counter()
            handle = self.open(threads)
            clock.open += time.perf_counter() - start
            with self._lock:
                self._handles[(k, threads)] = handle
        return handle

    def open(self, threads: int) -> Handle:
        """A newly opened container with ``threads`` FFmpeg frame threads, not kept (the caller closes it)."""
        container = open_container(self._av, self._data, self._label)
        try:
            return configure(container, video_stream(self._av, container, self._label), self._thread_type, threads)
        except BaseException:
            container.close()
            raise

    def close(self) -> None:
        """Close every container (idempotent); a later :meth:`get` raises :class:`MediaError`."""
        with self._lock:
            self._closed = True
            handles = [*self._handles.values(), *([self._fresh] if self._fresh else [])]
            self._handles.clear()
            self._fresh = None
        for container, _ in handles:
            container.close()


__all__ = ["ContainerPool", "FrameOutput", "configure"]
