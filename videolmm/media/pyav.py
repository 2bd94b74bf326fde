"""The ``pyav`` decoder: one sequential PyAV decode pass per read, and PyAV's frame → RGB conversion.

:func:`frame_to_rgb` is shared with the ``keyframe`` decoder so both return decord's pixels. PyAV
is imported lazily.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from videolmm.errors import MediaUnreadable, NoFrames
from videolmm.media.base import OpenedVideo, OpenedVideoBase, describe_source, module_importable
from videolmm.media.deadline import check_deadline
from videolmm.media.probe import container_source, frame_count, import_av, open_container, probe, video_stream
from videolmm.types import VideoInfo, VideoSource

if TYPE_CHECKING:
    from av.container import InputContainer
    from av.video.stream import VideoStream


def frame_to_rgb(frame: Any) -> np.ndarray:
    """A decoded PyAV frame as uint8 RGB ``(H, W, 3)``, turned upright by its display matrix.

    decord (the seeds' decoder) applies the container's rotation (e.g. a phone video's 90°
    ``tkhd`` matrix), so PyAV-based decoders do too, giving the same pixels. ``VideoInfo.width`` and
    ``height`` stay the coded (stored) size.
    """
    rgb = frame.to_ndarray(format="rgb24")
    turns = int(getattr(frame, "rotation", 0) or 0) // 90
    return np.ascontiguousarray(np.rot90(rgb, turns)) if turns % 4 else rgb


class PyAVVideo(OpenedVideoBase):
    backend = "pyav"

    def __init__(self, info: VideoInfo, data: Path | bytes) -> None:
        super().__init__(info)
        self._data = data

    def read_sorted(self, indices: list[int]) -> np.ndarray:
        av = import_av(self.info.source)
        with open_container(av, self._data, self.info.source) as container:
            stream = video_stream(av, container, self.info.source)
            stream.thread_type = "AUTO"
            return self._decode_pass(av, container, stream, indices)

    def _decode_pass(self, av: Any, container: InputContainer, stream: VideoStream, indices: list[int]) -> np.ndarray:
        """One sequential decode from the start, keeping the wanted frames, stopping after the last."""
        label, frames, decoded = self.info.source, [], 0
        pending = iter(indices)
        target: int | None = next(pending)
        try:
            for position, frame in enumerate(container.decode(stream)):
                decoded = position + 1
                check_deadline(label)
                if position == target:
                    frames.append(frame_to_rgb(frame))
                    target = next(pending, None)
                    if target is None:
                        break
        except (av.error.FFmpegError, EOFError) as exc:
            raise MediaUnreadable(
                label, f"decoding failed after {decoded} frames while looking for frame {target} ({exc})"
            ) from exc
        if target is not None:
            if decoded == 0:
                raise NoFrames(label, "the video stream yields no decodable frames")
            raise MediaUnreadable(
                label,
                f"the stream ended after {decoded} decodable frames but frame {target} was requested "
                f"(the container claims {self.info.num_frames}); truncated or corrupt",
            )
        sizes = sorted({f.shape for f in frames})
        if len(sizes) > 1:  # a mid-stream resolution change: no (T, H, W, 3) array holds both
            shown = ", ".join(f"{w}x{h}" for h, w, _ in sizes)
            raise MediaUnreadable(label, f"the frame size changes mid-stream ({shown}); not supported")
        return np.stack(frames)


class PyAVDecoder:
    """PyAV, one sequential decode pass per :meth:`OpenedVideo.read`.

    N is the header's frame count (``stream.frames``) or, when the header has none, the number of
    demuxed video packets: the same count decord reports. fps is ``stream.average_rate`` (falling back
    to ``guessed_rate``).
    """

    name = "pyav"

    def available(self) -> bool:
        """Whether ``av`` imports."""
        return module_importable("av")

    def open(self, source: VideoSource) -> OpenedVideo:
        """Probe a path or bytes with PyAV.

        Args:
            source: a local file path or container bytes.

        Returns:
            The opened video (the container is reopened for each read).
        """
        label = describe_source(source)
        data = container_source(source, label)
        facts = probe(data, label)
        count = frame_count(data, label, facts)
        info = VideoInfo(source=label, num_frames=count, fps=facts.fps, width=facts.width, height=facts.height)
        return PyAVVideo(info, data)


__all__ = ["PyAVDecoder", "PyAVVideo", "frame_to_rgb"]
