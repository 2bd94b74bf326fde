"""The ``decord`` decoder: decord's ``VideoReader`` + ``get_batch``, the seeds' decoder.

The container is probed with PyAV first (:mod:`videolmm.media.probe`), so inputs decord's bundled
FFmpeg would choke on are refused with a typed error; decord's own failures are mapped to
MediaErrors without its ``[time] file.cc:line:`` prefix. decord is imported lazily.
"""

from __future__ import annotations

import importlib
import io
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from videolmm.errors import DecoderUnavailable, MediaError, MediaUnreadable, NoFrames, UnsupportedCodec
from videolmm.media.base import OpenedVideo, OpenedVideoBase, describe_source, module_importable
from videolmm.media.probe import StreamFacts, container_source, frame_count, probe
from videolmm.types import VideoInfo, VideoSource

_AVERROR_DECODER_NOT_FOUND = "-1128613112"  # FFERRTAG('D','E','C',0xF8), as decord prints it
_DECORD_PREFIX = re.compile(r"^\[[\d:]+\]\s+\S+:\d+:\s*")


def _decord_message(exc: BaseException) -> str:
    """decord's first error line without its ``[time] file.cc:line:`` prefix."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return _DECORD_PREFIX.sub("", first)


def _decord_error(label: str, exc: BaseException, facts: StreamFacts, action: str) -> MediaError:
    """Map a decord failure on a container PyAV accepted to a MediaError."""
    message = _decord_message(exc)
    if _AVERROR_DECODER_NOT_FOUND in message or "cannot find video stream" in message:
        return UnsupportedCodec(label, f"decord's bundled FFmpeg cannot decode {facts.codec} video ({message})")
    return MediaUnreadable(label, f"decord failed to {action}: {message}")


class _DecordVideo(OpenedVideoBase):
    backend = "decord"

    def __init__(self, info: VideoInfo, reader: Any, errors: tuple[type[BaseException], ...], facts: StreamFacts):
        super().__init__(info)
        self._reader = reader
        self._errors = errors
        self._facts = facts

    def read_sorted(self, indices: list[int]) -> np.ndarray:
        try:
            return self._reader.get_batch(indices).asnumpy()
        except self._errors as exc:
            raise _decord_error(self.info.source, exc, self._facts, f"decode frames {indices[:8]}") from exc

    def release(self) -> None:
        self._reader = None


class DecordDecoder:
    """decord ``VideoReader`` + ``get_batch`` (the seeds' decoder). N = ``len(vr)``, fps = ``get_avg_fps()``.

    Args:
        num_threads: decord's decoding threads (lmms-eval's ``llava_vid`` uses 1; 0 = auto).
    """

    name = "decord"

    def __init__(self, num_threads: int = 1) -> None:
        self.num_threads = num_threads

    def available(self) -> bool:
        """Whether ``decord`` imports."""
        return module_importable("decord")

    def open(self, source: VideoSource) -> OpenedVideo:
        """Open a path or bytes with decord, after a PyAV header probe.

        Args:
            source: a local file path or container bytes.

        Returns:
            The opened video.
        """
        label = describe_source(source)
        try:
            decord = importlib.import_module("decord")
        except ImportError as exc:
            raise DecoderUnavailable(
                label, f"decord is not importable ({exc}); pip install decord (x86-64 only)"
            ) from exc
        data = container_source(source, label)
        facts = probe(data, label)
        frame_count(data, label, facts)  # decord cannot open a stream without packets
        errors = (decord.DECORDError, RuntimeError)
        target: Any = str(data) if isinstance(data, Path) else io.BytesIO(data)
        try:
            reader = decord.VideoReader(target, ctx=decord.cpu(0), num_threads=self.num_threads)
            count, fps = len(reader), float(reader.get_avg_fps())
        except errors as exc:
            raise _decord_error(label, exc, facts, "open the video") from exc
        if not (math.isfinite(fps) and fps > 0):  # decord says nan when the container has no timing
            fps = 0.0
        if count <= 0:
            raise NoFrames(label, "decord finds no frames in the video stream")
        info = VideoInfo(source=label, num_frames=count, fps=fps, width=facts.width, height=facts.height)
        return _DecordVideo(info, reader, errors, facts)


__all__ = ["DecordDecoder"]
