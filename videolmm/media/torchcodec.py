"""The ``torchcodec`` decoder: torchcodec's ``VideoDecoder`` (exact seek mode) after a PyAV header probe.

Not installed in every environment; torchcodec is imported lazily, and :meth:`TorchCodecDecoder.open`
raises DecoderUnavailable with an install hint when it cannot be imported.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np

from videolmm.errors import DecoderUnavailable, MediaUnreadable, NoFrames
from videolmm.media.base import OpenedVideo, OpenedVideoBase, describe_source, module_importable
from videolmm.media.deadline import check_deadline
from videolmm.media.probe import container_source, frame_count, probe
from videolmm.types import VideoInfo, VideoSource

_TORCHCODEC_HINT = (
    "pip install torchcodec (a version matching your torch) and install FFmpeg's shared libraries "
    "(e.g. apt-get install ffmpeg)"
)


def _import_torchcodec_decoders(label: str) -> Any:
    """``torchcodec.decoders`` or DecoderUnavailable with an install hint."""
    try:
        return importlib.import_module("torchcodec.decoders")
    except (ImportError, OSError, RuntimeError) as exc:
        raise DecoderUnavailable(label, f"torchcodec is not importable ({exc}); {_TORCHCODEC_HINT}") from exc


class _TorchCodecVideo(OpenedVideoBase):
    backend = "torchcodec"

    def __init__(self, info: VideoInfo, decoder: Any) -> None:
        super().__init__(info)
        self._decoder = decoder

    def read_sorted(self, indices: list[int]) -> np.ndarray:
        # one C++ call decodes the batch: the deadline is checked around it, not between frames
        check_deadline(self.info.source)
        try:
            batch = self._decoder.get_frames_at(indices=indices)
        except (RuntimeError, ValueError, IndexError) as exc:
            raise MediaUnreadable(
                self.info.source, f"torchcodec failed to decode frames {indices[:8]}: {exc}"
            ) from exc
        check_deadline(self.info.source)
        return np.ascontiguousarray(batch.data.cpu().numpy())

    def release(self) -> None:
        self._decoder = None


class TorchCodecDecoder:
    """torchcodec ``VideoDecoder`` (exact seek mode, NHWC) + ``get_frames_at``.

    N is ``metadata.num_frames`` (torchcodec's scan: the indices it accepts). fps is the header's
    ``avg_frame_rate`` as PyAV and decord report it, not ``metadata.average_fps``: torchcodec computes
    that from the scanned duration (24.0064 for a 24 fps Matroska clip), which would move the
    ``hound`` sampler's picks. Not installed in every environment: :meth:`open` raises
    DecoderUnavailable with an install hint then.

    Args:
        num_ffmpeg_threads: torchcodec's decoding threads.
    """

    name = "torchcodec"

    def __init__(self, num_ffmpeg_threads: int = 1) -> None:
        self.num_ffmpeg_threads = num_ffmpeg_threads

    def available(self) -> bool:
        """Whether ``torchcodec.decoders`` imports (it needs FFmpeg's shared libraries)."""
        return module_importable("torchcodec.decoders", (ImportError, OSError, RuntimeError))

    def open(self, source: VideoSource) -> OpenedVideo:
        """Open a path or bytes with torchcodec, after a PyAV header probe.

        Args:
            source: a local file path or container bytes.

        Returns:
            The opened video.
        """
        label = describe_source(source)
        decoders = _import_torchcodec_decoders(label)
        data = container_source(source, label)
        facts = probe(data, label)
        frame_count(data, label, facts)
        target: Any = str(data) if isinstance(data, Path) else data
        try:
            decoder = decoders.VideoDecoder(target, dimension_order="NHWC", num_ffmpeg_threads=self.num_ffmpeg_threads)
            metadata = decoder.metadata
            count = metadata.num_frames if metadata.num_frames is not None else len(decoder)
        except (RuntimeError, ValueError) as exc:
            raise MediaUnreadable(label, f"torchcodec failed to open the video: {exc}") from exc
        if not count or count <= 0:
            raise NoFrames(label, "torchcodec finds no frames in the video stream")
        fps = facts.fps if facts.fps > 0 else float(metadata.average_fps or 0.0)
        width = int(metadata.width or facts.width)
        height = int(metadata.height or facts.height)
        info = VideoInfo(source=label, num_frames=int(count), fps=fps, width=width, height=height)
        return _TorchCodecVideo(info, decoder)


__all__ = ["TorchCodecDecoder"]
