"""PyAV probing, shared by every container decoder: open, pick the video stream, check its header, count.

Containers are probed with PyAV before decord or torchcodec see them, so garbage, audio files and
images are rejected with a typed :class:`~videolmm.errors.MediaError` naming the source and the
reason, instead of reaching an older bundled FFmpeg. PyAV is imported lazily.

**FFmpeg's attack surface.** Every container is opened by :func:`open_container` with FFmpeg's
``format_whitelist`` set to :data:`CONTAINER_FORMATS` and ``protocol_whitelist`` to ``file``:
FFmpeg refuses any other demuxer after probing and before reading the header, so HLS playlists,
``ffconcat`` scripts (relative paths), SDP descriptions (which bind UDP ports and block) and image2
patterns are never demuxed, from bytes or from files; nested opens can only read local files,
never network protocols. Before FFmpeg sees them, :func:`sniff_refused` recognises those text
formats and still images by their first bytes, so the error says what the input is.
"""

from __future__ import annotations

import importlib
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from videolmm.errors import (
    DecoderUnavailable,
    MediaNotFound,
    MediaTooLarge,
    MediaUnreadable,
    NoFrames,
    NoVideoStream,
    UnsupportedCodec,
    UnsupportedContainer,
)
from videolmm.media.base import is_bytes
from videolmm.media.deadline import check_deadline
from videolmm.types import VideoSource

if TYPE_CHECKING:
    from av.container import InputContainer
    from av.video.stream import VideoStream

#: Largest frame (width × height) a container decoder accepts: 8192×8192, well above 8K UHD.
#: Checked on the header before decoding; a larger declared size raises MediaTooLarge.
MAX_FRAME_PIXELS = 8192 * 8192
#: FFmpeg demuxers of still images (refused as "not a video").
IMAGE_DEMUXERS = frozenset({"image2", "image2pipe"})
#: The only demuxers FFmpeg may use (``format_whitelist``): MP4/MOV, Matroska/WebM, AVI, GIF,
#: MPEG-TS/PS, FLV and Ogg. No playlist, script, network-description or image-sequence demuxer.
CONTAINER_FORMATS = (
    "mov", "mp4", "m4a", "3gp", "3g2", "mj2", "matroska", "webm", "avi", "gif", "mpegts", "mpeg", "flv", "ogg",
)  # fmt: skip
#: FFmpeg protocols a container may open (``protocol_whitelist``): the file itself, nothing nested
#: over a network. Bytes are read through PyAV's own I/O and open no protocol at all.
PROTOCOLS = ("file",)
#: The options every :func:`open_container` call passes to ``avformat_open_input``.
OPEN_OPTIONS = {"format_whitelist": ",".join(CONTAINER_FORMATS), "protocol_whitelist": ",".join(PROTOCOLS)}
#: First bytes of inputs refused before FFmpeg sees them: (prefix, what it is, still image?).
_SIGNATURES: tuple[tuple[bytes, str, bool], ...] = (
    (b"#EXTM3U", "an HLS playlist (#EXTM3U)", False),
    (b"ffconcat", "an FFmpeg concat script (ffconcat)", False),
    (b"v=0", "an SDP session description (v=0)", False),
    (b"\x89PNG\r\n\x1a\n", "a still image (png)", True),
    (b"\xff\xd8\xff", "a still image (jpeg)", True),
    (b"BM", "a still image (bmp)", True),
    (b"%!PS", "a PostScript/EPS document", False),
)


@dataclass(frozen=True)
class StreamFacts:
    """What PyAV learns from a container's header about its best video stream.

    Attributes:
        container: the demuxer's name (``mov,mp4,m4a,3gp,3g2,mj2``, ``matroska,webm``, ...).
        codec: the codec's canonical name (``h264``, ``mpeg4``, ...).
        header_frames: the frame count the header declares (0 when it declares none).
        fps: the average (else guessed) rate; 0.0 when absent or not finite.
        width: coded frame width.
        height: coded frame height.
    """

    container: str
    codec: str
    header_frames: int
    fps: float
    width: int
    height: int


def import_av(label: str) -> Any:
    """The ``av`` module, or DecoderUnavailable naming ``label`` with an install hint."""
    try:
        return importlib.import_module("av")
    except ImportError as exc:
        raise DecoderUnavailable(label, f"PyAV is not importable ({exc}); pip install av") from exc


def check_file(source: str | os.PathLike[str], label: str) -> Path:
    """A local file path that exists, is a file and is not empty."""
    path = Path(source)
    if not path.exists():
        raise MediaNotFound(label, "no such file")
    if path.is_dir():
        raise MediaUnreadable(label, "is a directory, not a video file (use the 'frames' decoder)")
    if path.stat().st_size == 0:
        raise MediaUnreadable(label, "empty file (0 bytes)")
    return path


def container_source(source: VideoSource, label: str) -> Path | bytes:
    """Validate a container source (path or bytes) and normalise it to ``Path`` or ``bytes``."""
    if isinstance(source, (str, os.PathLike)):
        return check_file(source, label)
    if is_bytes(source):
        data = bytes(source)  # type: ignore[arg-type]
        if not data:
            raise MediaUnreadable(label, "empty byte string")
        return data
    raise MediaUnreadable(label, f"a {type(source).__name__} is not a video container (path or bytes)")


def _head(data: Path | bytes, size: int = 64) -> bytes:
    if isinstance(data, bytes):
        return data[:size]
    with data.open("rb") as fh:
        return fh.read(size)


def sniff_refused(data: Path | bytes, label: str) -> None:
    """Refuse, by their first bytes, inputs no video decoder may demux (before FFmpeg sees them).

    Raises:
        NoVideoStream: a still image (PNG, JPEG, BMP).
        UnsupportedContainer: an HLS playlist, an ``ffconcat`` script, an SDP description, PostScript.
    """
    head = _head(data).lstrip(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark does not hide a playlist
    text = head.lstrip()
    for prefix, what, still in _SIGNATURES:
        if (head if still else text).startswith(prefix):
            if still:
                raise NoVideoStream(label, f"this is {what}, not a video")
            raise UnsupportedContainer(label, f"this is {what}: refused, only video containers are demuxed")


def open_container(av: Any, data: Path | bytes, label: str) -> InputContainer:
    """``av.open`` under :data:`OPEN_OPTIONS` (demuxer and protocol allow-lists), failures as MediaErrors.

    Raises:
        UnsupportedContainer: the input is a format outside :data:`CONTAINER_FORMATS` (FFmpeg's
            ``format_whitelist`` refused it before reading its header) or a refused text format.
        NoVideoStream: the input is a still image.
        MediaUnreadable: FFmpeg cannot parse it.
    """
    sniff_refused(data, label)
    target: Any = str(data) if isinstance(data, Path) else io.BytesIO(data)
    try:
        container = av.open(target, mode="r", container_options=dict(OPEN_OPTIONS))
    except FileNotFoundError as exc:
        raise MediaNotFound(label, "no such file") from exc
    except av.error.ValueError as exc:  # EINVAL: FFmpeg's "Format not on whitelist" (after probing)
        raise UnsupportedContainer(
            label, f"not one of the accepted container formats ({', '.join(CONTAINER_FORMATS)}); refused ({exc})"
        ) from exc
    except (av.error.FFmpegError, EOFError, OSError) as exc:
        raise MediaUnreadable(label, f"not a readable media container ({exc})") from exc
    except UnicodeDecodeError as exc:  # PyAV decodes the container's metadata tags as UTF-8 while opening
        raise MediaUnreadable(label, f"the container's metadata is not valid UTF-8 ({exc.reason})") from exc
    name = container.format.name
    if not set(name.split(",")) <= set(CONTAINER_FORMATS):  # FFmpeg's whitelist, checked again
        container.close()
        raise UnsupportedContainer(label, f"FFmpeg opened it as {name!r}, not an accepted container format")
    return container


def describe_streams(container: InputContainer) -> str:
    """The container's streams as ``type/codec`` pairs, for error messages."""
    parts = [f"{s.type}/{s.codec_context.name if s.codec_context else '?'}" for s in container.streams]
    return ", ".join(parts) or "none"


def _codec_name(stream: Any) -> str:
    """The stream's codec as far as the container names it, for an error message (never raises).

    PyAV 15 delegates unknown stream attributes to the codec context, which is None when FFmpeg
    has no decoder, so ``stream.codec_tag`` itself raises AttributeError then.
    """
    try:
        return f"codec tag {stream.codec_tag!r}"
    except (AttributeError, ValueError):
        return "codec unknown to FFmpeg"


def video_stream(av: Any, container: InputContainer, label: str) -> VideoStream:
    """The stream decord would pick (FFmpeg's best video stream), rejecting images and cover art."""
    fmt = container.format.name
    if fmt in IMAGE_DEMUXERS or fmt.endswith("_pipe"):
        raise NoVideoStream(label, f"this is a still image ({fmt}), not a video")
    candidates = [s for s in container.streams.video if not (s.disposition & av.stream.Disposition.attached_pic)]
    if not candidates:
        raise NoVideoStream(
            label, f"the container ({fmt}) holds no video stream (streams: {describe_streams(container)})"
        )
    best = container.streams.best("video")
    stream = best if best in candidates else candidates[0]
    if stream.codec_context is None:
        raise UnsupportedCodec(label, f"no decoder in PyAV's FFmpeg for the video stream ({_codec_name(stream)})")
    return stream


def stream_facts(container: InputContainer, stream: VideoStream, label: str = "") -> StreamFacts:
    """The stream's header facts, refusing headers no decoder should be handed (see :func:`check_header`).

    Args:
        container: the opened container.
        stream: its chosen video stream.
        label: the source's printable name for errors (default: the container's name).
    """
    rate = stream.average_rate or stream.guessed_rate
    ctx = stream.codec_context
    facts = StreamFacts(
        container=container.format.name,
        codec=ctx.codec.canonical_name,
        header_frames=int(stream.frames or 0),
        fps=float(rate) if rate and math.isfinite(float(rate)) and float(rate) > 0 else 0.0,
        width=int(ctx.width),
        height=int(ctx.height),
    )
    check_header(facts, pixel_format_known=ctx.format is not None, label=label or str(container.name))
    return facts


def check_header(facts: StreamFacts, *, pixel_format_known: bool, label: str) -> None:
    """Refuse, before any decoder allocates a frame, a stream whose size is absent or absurd.

    * no frame size (0x0): FFmpeg could not parse the size, or refused it as beyond its own limit;
    * over :data:`MAX_FRAME_PIXELS`: one frame would need gigabytes (FFmpeg itself accepts sizes up
      to ~16k x 16k, i.e. 768 MB per RGB frame);
    * frames declared but no pixel format: probing could not decode a single frame (a truncated
      index or corrupt first packets); decord would fail with an opaque filter-graph error.
    """
    if facts.width <= 0 or facts.height <= 0:
        raise MediaUnreadable(
            label,
            f"the {facts.codec} video stream declares no frame size ({facts.width}x{facts.height}): its header "
            "is corrupt or declares a size beyond FFmpeg's limits",
        )
    pixels = facts.width * facts.height
    if pixels > MAX_FRAME_PIXELS:
        raise MediaTooLarge(
            label,
            f"the video stream declares {facts.width}x{facts.height} frames ({pixels} pixels), over the "
            f"limit of {MAX_FRAME_PIXELS} pixels per frame; refused before decoding",
        )
    if facts.header_frames > 0 and not pixel_format_known:
        raise MediaUnreadable(
            label,
            f"no frame of the {facts.codec} video stream could be decoded while probing (pixel format unknown): "
            "the file is truncated or corrupt",
        )


def probe(data: Path | bytes, label: str) -> StreamFacts:
    """Open the container with PyAV and check it has a decodable video stream (header only)."""
    av = import_av(label)
    with open_container(av, data, label) as container:
        return stream_facts(container, video_stream(av, container, label), label)


def count_packets(data: Path | bytes, label: str) -> int:
    """Count the video stream's packets by demuxing (decord's frame count when the header has none)."""
    av = import_av(label)
    with open_container(av, data, label) as container:
        stream = video_stream(av, container, label)
        try:
            count = 0
            for packet in container.demux(stream):
                check_deadline(label)
                count += packet.size > 0
            return count
        except (av.error.FFmpegError, EOFError) as exc:
            raise MediaUnreadable(label, f"demuxing failed while counting frames ({exc})") from exc


def frame_count(data: Path | bytes, label: str, facts: StreamFacts) -> int:
    """decord's N: the header's frame count, else the number of video packets; NoFrames when 0."""
    count = facts.header_frames if facts.header_frames > 0 else count_packets(data, label)
    if count <= 0:
        raise NoFrames(label, f"the {facts.codec} video stream has no frames")
    return count


__all__ = [
    "CONTAINER_FORMATS",
    "IMAGE_DEMUXERS",
    "OPEN_OPTIONS",
    "PROTOCOLS",
    "MAX_FRAME_PIXELS",
    "StreamFacts",
    "check_file",
    "check_header",
    "container_source",
    "count_packets",
    "describe_streams",
    "frame_count",
    "import_av",
    "open_container",
    "probe",
    "sniff_refused",
    "stream_facts",
    "video_stream",
]
