"""LLaVA-Hound's frame extraction, pixel for pixel: FFmpeg's filter graph and JPEG round trip via PyAV.

The seed (RifleZhang/LLaVA-Hound-DPO ``llava_hound_dpo/inference/inference_utils.py`` @ ec2381f,
``decode2frame``) runs::

    ffmpeg -loglevel quiet -i VIDEO -vf "scale=336:-1,fps=2" DIR/c01_%04d.jpeg

and its ``frames`` backend then reads ``linspace(0, n-1, 8)`` of the sorted files with PIL
(``Image.open(...).convert("RGB")``). :func:`extract_like_ffmpeg_cli` does the same in process:

- every frame of the best video stream is decoded and pushed, with its timestamps, through the
  same libavfilter graph (``buffer → scale=336:-1 → fps=2 → format=yuvj420p → buffersink``):
  ``scale`` uses libswscale's default ``bicubic`` (the CLI's default ``sws_flags``) and, as the
  CLI negotiates for the MJPEG encoder, outputs full-range 4:2:0; ``fps`` keeps the frames the
  CLI keeps (its start is the first frame, as the CLI's, which shifts inputs to start at 0);
- each output frame is encoded by FFmpeg's ``mjpeg`` encoder with the CLI's defaults (one encoder
  for the whole sequence, ``time_base`` 1/2, the default 200 kb/s rate control, no ``-q:v``) and
  decoded back with Pillow, as the seed reads the files.

The ``ffmpeg`` CLI itself is not needed: PyAV links the same libavfilter / libswscale / libavcodec
code (its own build of them, whose version :func:`ffmpeg_versions` reports). Containers are
opened through :func:`videolmm.media.probe.open_container` (the demuxer and protocol allow-lists).

:class:`FfmpegCliDecoder` (``ffmpeg_cli``) exposes the extracted frames as an opened video (index
= output frame), so the ``uniform`` sampler then takes the seed's ``linspace(0, n-1, 8)``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np

from videolmm.errors import MediaUnreadable, NoFrames
from videolmm.media.base import OpenedVideo, OpenedVideoBase, describe_source, module_importable
from videolmm.media.deadline import check_deadline
from videolmm.media.probe import container_source, import_av, open_container, video_stream
from videolmm.types import VideoInfo, VideoSource

#: LLaVA-Hound's ``-vf`` (scale to 336 px wide, height proportional, then 2 frames per second).
HOUND_FILTERS = "scale=336:-1,fps=2"
#: The pixel format the CLI negotiates for its MJPEG encoder from 8-bit 4:2:0 input.
JPEG_PIX_FMT = "yuvj420p"


@dataclass(frozen=True)
class ExtractedFrames:
    """The frames the CLI command would write, as RGB arrays.

    Attributes:
        frames: ``(n, H, W, 3)`` uint8, in output order (the sorted file names' order).
        rate: the output frame rate (2 for LLaVA-Hound).
        jpeg_bytes: the size of every encoded JPEG (what the files would hold).
    """

    frames: np.ndarray
    rate: float
    jpeg_bytes: tuple[int, ...]


def ffmpeg_versions() -> dict[str, tuple[int, int, int]]:
    """The libav* versions PyAV links (the code the pipeline runs)."""
    av = import_av("ffmpeg_cli")
    return dict(av.library_versions)


def _filter_graph(av: Any, stream: Any, filters: str) -> Any:
    graph = av.filter.Graph()
    chain = [graph.add_buffer(template=stream)]
    for spec in [*filters.split(","), f"format={JPEG_PIX_FMT}"]:
        name, _, args = spec.partition("=")
        chain.append(graph.add(name.strip(), args.strip() or None))
    chain.append(graph.add("buffersink"))
    for a, b in zip(chain, chain[1:], strict=False):
        a.link_to(b)
    graph.configure()
    return graph


def _drain(av: Any, graph: Any) -> list[Any]:
    out = []
    while True:
        try:
            out.append(graph.vpull())
        except (av.BlockingIOError, av.EOFError):
            return out


def _jpeg_round_trip(av: Any, frames: list[Any], rate: float, label: str) -> tuple[np.ndarray, tuple[int, ...]]:
    """Encode with FFmpeg's mjpeg encoder (the CLI's defaults), decode with Pillow (the seed's reader)."""
    from fractions import Fraction

    from PIL import Image

    first = frames[0]
    encoder = av.CodecContext.create("mjpeg", "w")
    encoder.width, encoder.height, encoder.pix_fmt = first.width, first.height, JPEG_PIX_FMT
    encoder.time_base = Fraction(1) / Fraction(rate).limit_denominator(1001)
    encoder.framerate = Fraction(rate).limit_denominator(1001)
    images, sizes = [], []
    for frame in frames:
        check_deadline(label)
        frame.pict_type = av.video.frame.PictureType.NONE
        packets = encoder.encode(frame)
        if len(packets) != 1:
            raise MediaUnreadable(label, f"the mjpeg encoder returned {len(packets)} packets for one frame")
        data = bytes(packets[0])
        sizes.append(len(data))
        with Image.open(io.BytesIO(data)) as image:
            images.append(np.asarray(image.convert("RGB")))
    return np.stack(images), tuple(sizes)


def _output_rate(filters: str, input_rate: float) -> float:
    """The rate the chain's last ``fps=R`` filter sets, else the input's."""
    from fractions import Fraction

    rate = input_rate
    for spec in filters.split(","):
        name, _, args = spec.partition("=")
        if name.strip() == "fps" and args:
            rate = float(Fraction(args.split(":")[0].removeprefix("fps=")))
    return rate


def extract_like_ffmpeg_cli(source: VideoSource, filters: str = HOUND_FILTERS, jpeg: bool = True) -> ExtractedFrames:
    """The frames ``ffmpeg -i SOURCE -vf FILTERS out_%04d.jpeg`` writes, read back as the seed reads them.

    Args:
        source: a video file path or container bytes.
        filters: the ``-vf`` chain (LLaVA-Hound's by default); it must end in an ``fps`` filter
            or keep the input rate.
        jpeg: False skips the JPEG round trip (the filter graph's own RGB, for measurements).

    Returns:
        The extracted frames.

    Raises:
        MediaError: the source cannot be opened or decoded, or the graph emits no frame.
    """
    label = describe_source(source)
    av = import_av(label)
    data = container_source(source, label)
    with open_container(av, data, label) as container:
        stream = video_stream(av, container, label)
        try:
            graph = _filter_graph(av, stream, filters)
        except (av.error.FFmpegError, ValueError) as exc:
            raise MediaUnreadable(label, f"cannot build the filter graph {filters!r} ({exc})") from exc
        out: list[Any] = []
        start = None
        try:
            for frame in container.decode(stream):
                check_deadline(label)
                if start is None:
                    start = frame.pts or 0
                if frame.pts is not None:
                    frame.pts -= start  # the CLI shifts the input to start at 0
                graph.vpush(frame)
                out += _drain(av, graph)
            graph.vpush(None)
            out += _drain(av, graph)
        except av.error.FFmpegError as exc:
            raise MediaUnreadable(label, f"decoding or filtering failed ({exc})") from exc
        rate = _output_rate(filters, float(stream.average_rate or 0))
    if not out:
        raise NoFrames(label, f"the filter graph {filters!r} emitted no frame")
    if not jpeg:
        return ExtractedFrames(np.stack([f.to_ndarray(format="rgb24") for f in out]), rate, ())
    frames, sizes = _jpeg_round_trip(av, out, rate, label)
    return ExtractedFrames(frames, rate, sizes)


class _ExtractedVideo(OpenedVideoBase):
    backend = "ffmpeg_cli"

    def __init__(self, info: VideoInfo, frames: np.ndarray) -> None:
        super().__init__(info)
        self._frames = frames

    def read_sorted(self, indices: list[int]) -> np.ndarray:
        return self._frames[indices]


class FfmpegCliDecoder:
    """LLaVA-Hound's extraction (:func:`extract_like_ffmpeg_cli`) as a decoder: index ``i`` is the
    ``i``-th JPEG the CLI would write, so ``sampler=uniform`` takes the seed's 8 files.

    Args:
        filters: the ``-vf`` chain.
    """

    name = "ffmpeg_cli"

    def __init__(self, filters: str = HOUND_FILTERS) -> None:
        self.filters = filters

    def available(self) -> bool:
        """Whether PyAV and Pillow import."""
        return module_importable("av") and module_importable("PIL.Image")

    def open(self, source: VideoSource) -> OpenedVideo:
        """Run the extraction (all of it: the output count is only known at the end)."""
        extracted = extract_like_ffmpeg_cli(source, self.filters)
        n, height, width = extracted.frames.shape[:3]
        info = VideoInfo(source=describe_source(source), num_frames=n, fps=extracted.rate, width=width, height=height)
        return _ExtractedVideo(info, extracted.frames)


__all__ = ["HOUND_FILTERS", "ExtractedFrames", "FfmpegCliDecoder", "extract_like_ffmpeg_cli", "ffmpeg_versions"]
