"""Video sources and decoders: open anything the core accepts as a video and read frames by index.

Sources (:data:`~videolmm.types.VideoSource`):

* a local file path (``str`` / ``Path``);
* ``bytes`` holding a whole container;
* a directory of frame images, sorted by file name (LLaVA-Hound's pre-extracted frames);
* a list/tuple of images (H×W×3 uint8 arrays, PIL images or image paths), or a (T, H, W, 3) array.

Decoders (:func:`builtin_decoders`): ``decord``, ``pyav``, ``torchcodec``, ``frames``, ``images``. A
decoder instance holds no per-video state and can be shared between threads; :meth:`VideoDecoder.open`
returns an :class:`OpenedVideo` that owns the file handles. For the same file and indices, decord,
PyAV and torchcodec return bit-identical RGB frames (h264, mpeg4), and PyAV counts frames exactly as
decord does.

Every failure raises a :class:`~videolmm.errors.MediaError` subclass naming the source and
the reason. Containers are probed with PyAV before decord or torchcodec see them, so garbage, audio
files and images are rejected with a typed error instead of reaching an older bundled FFmpeg.

decord, av, torchcodec and PIL are imported lazily, inside the functions that need them.
"""

from __future__ import annotations

import importlib
import io
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from videolmm.errors import (
    DecoderUnavailable,
    MediaError,
    MediaNotFound,
    MediaTooLarge,
    MediaUnreadable,
    NoFrames,
    NoVideoStream,
    UnsupportedCodec,
)
from videolmm.types import Frames, FrameSelection, SamplingSpec, VideoInfo, VideoSource

if TYPE_CHECKING:
    from av.container import InputContainer
    from av.video.stream import VideoStream

#: File suffixes the ``frames`` decoder accepts (case-insensitive).
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif"})
_IMAGE_DEMUXERS = frozenset({"image2", "image2pipe"})
#: Largest frame (width × height) a container decoder accepts: 8192×8192, well above 8K UHD.
#: Checked on the header before decoding; a larger declared size raises MediaTooLarge.
MAX_FRAME_PIXELS = 8192 * 8192
_AVERROR_DECODER_NOT_FOUND = "-1128613112"  # FFERRTAG('D','E','C',0xF8), as decord prints it
_DECORD_PREFIX = re.compile(r"^\[[\d:]+\]\s+\S+:\d+:\s*")


# --------------------------------------------------------------------------------------------
# Protocols
# --------------------------------------------------------------------------------------------


@runtime_checkable
class OpenedVideo(Protocol):
    """One opened video: its facts and random access to its frames. Also a context manager.

    Attributes:
        info: frame count, rate and size, known without decoding pixels.
    """

    info: VideoInfo

    def read(self, indices: Sequence[int]) -> np.ndarray:
        """Decode frames by index: uint8 RGB ``(T, H, W, 3)`` in the order given; duplicates allowed."""
        ...

    def close(self) -> None:
        """Release the handles; reading afterwards is an error."""
        ...

    def __enter__(self) -> OpenedVideo: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


@runtime_checkable
class VideoDecoder(Protocol):
    """A decoding backend. Instances are stateless and safe to share.

    Attributes:
        name: registry name (``decord``, ``pyav``, ...).
    """

    name: str

    def available(self) -> bool:
        """Whether the backend's library can be imported here."""
        ...

    def open(self, source: VideoSource) -> OpenedVideo:
        """Open ``source``; raises a MediaError subclass when it cannot be decoded."""
        ...


# --------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------


def _is_bytes(source: object) -> bool:
    return isinstance(source, (bytes, bytearray, memoryview))


def module_importable(name: str, errors: tuple[type[BaseException], ...] = (ImportError,)) -> bool:
    """Whether ``name`` imports here (what each decoder's ``available()`` answers).

    Args:
        name: the module to import.
        errors: the exceptions that mean "not available" (torchcodec also raises OSError or
            RuntimeError when FFmpeg's shared libraries are missing).
    """
    try:
        importlib.import_module(name)
    except errors:
        return False
    return True


def is_image_sequence(source: object) -> bool:
    """True for an in-memory frame list: a list/tuple of images or a ``(T, H, W, C)`` array."""
    if isinstance(source, np.ndarray):
        return source.ndim == 4
    return isinstance(source, (list, tuple))


def describe_source(source: VideoSource) -> str:
    """A printable name for a source: the path, ``<bytes:1234>`` or ``<images:8>``.

    Args:
        source: any video source.

    Returns:
        The name used in :class:`VideoInfo` and in error messages.
    """
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if _is_bytes(source):
        return f"<bytes:{memoryview(source).nbytes}>"  # type: ignore[arg-type]
    if is_image_sequence(source):
        return f"<images:{len(source)}>"  # type: ignore[arg-type]
    return f"<{type(source).__name__}>"


def resolve_decoder_name(source: VideoSource, requested: str) -> str:
    """The decoder a source needs: a directory → ``frames``; images → ``images``; else ``requested``.

    Args:
        source: any video source.
        requested: the decoder configured for containers (``decord``, ``pyav``, ...).

    Returns:
        A decoder name.
    """
    if isinstance(source, (str, os.PathLike)) and os.path.isdir(source):
        return "frames"
    if is_image_sequence(source):
        return "images"
    return requested


def _check_file(source: str | os.PathLike[str], label: str) -> Path:
    """A local file path that exists, is a file and is not empty."""
    path = Path(source)
    if not path.exists():
        raise MediaNotFound(label, "no such file")
    if path.is_dir():
        raise MediaUnreadable(label, "is a directory, not a video file (use the 'frames' decoder)")
    size = path.stat().st_size
    if size == 0:
        raise MediaUnreadable(label, "empty file (0 bytes)")
    return path


def _container_source(source: VideoSource, label: str) -> Path | bytes:
    """Validate a container source (path or bytes) and normalise it to ``Path`` or ``bytes``."""
    if isinstance(source, (str, os.PathLike)):
        return _check_file(source, label)
    if _is_bytes(source):
        data = bytes(source)  # type: ignore[arg-type]
        if not data:
            raise MediaUnreadable(label, "empty byte string")
        return data
    raise MediaUnreadable(label, f"a {type(source).__name__} is not a video container (path or bytes)")


# --------------------------------------------------------------------------------------------
# PyAV probing (shared by all container decoders)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _StreamFacts:
    """What PyAV learns from a container's header about its best video stream."""

    container: str
    codec: str
    header_frames: int
    fps: float
    width: int
    height: int


def _import_av(label: str) -> Any:
    try:
        return importlib.import_module("av")
    except ImportError as exc:
        raise DecoderUnavailable(label, f"PyAV is not importable ({exc}); pip install av") from exc


def _open_container(av: Any, data: Path | bytes, label: str) -> InputContainer:
    """``av.open`` with its failures turned into MediaErrors."""
    target: Any = str(data) if isinstance(data, Path) else io.BytesIO(data)
    try:
        return av.open(target, mode="r")
    except FileNotFoundError as exc:
        raise MediaNotFound(label, "no such file") from exc
    except (av.error.FFmpegError, EOFError, OSError) as exc:
        raise MediaUnreadable(label, f"not a readable media container ({exc})") from exc


def _describe_streams(container: InputContainer) -> str:
    parts = [f"{s.type}/{s.codec_context.name if s.codec_context else '?'}" for s in container.streams]
    return ", ".join(parts) or "none"


def _video_stream(av: Any, container: InputContainer, label: str) -> VideoStream:
    """The stream decord would pick (FFmpeg's best video stream), rejecting images and cover art."""
    fmt = container.format.name
    if fmt in _IMAGE_DEMUXERS or fmt.endswith("_pipe"):
        raise NoVideoStream(label, f"this is a still image ({fmt}), not a video")
    candidates = [s for s in container.streams.video if not (s.disposition & av.stream.Disposition.attached_pic)]
    if not candidates:
        raise NoVideoStream(
            label, f"the container ({fmt}) holds no video stream (streams: {_describe_streams(container)})"
        )
    best = container.streams.best("video")
    stream = best if best in candidates else candidates[0]
    if stream.codec_context is None:
        raise UnsupportedCodec(
            label, f"no decoder in PyAV's FFmpeg for the video stream (codec tag {stream.codec_tag!r})"
        )
    return stream


def _stream_facts(container: InputContainer, stream: VideoStream, label: str = "") -> _StreamFacts:
    """The stream's header facts, refusing headers no decoder should be handed (see :func:`_check_header`).

    Args:
        container: the opened container.
        stream: its chosen video stream.
        label: the source's printable name for errors (default: the container's name).
    """
    rate = stream.average_rate or stream.guessed_rate
    ctx = stream.codec_context
    facts = _StreamFacts(
        container=container.format.name,
        codec=ctx.codec.canonical_name,
        header_frames=int(stream.frames or 0),
        fps=float(rate) if rate and math.isfinite(float(rate)) and float(rate) > 0 else 0.0,
        width=int(ctx.width),
        height=int(ctx.height),
    )
    _check_header(facts, pixel_format_known=ctx.format is not None, label=label or str(container.name))
    return facts


def _check_header(facts: _StreamFacts, *, pixel_format_known: bool, label: str) -> None:
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


def _probe(data: Path | bytes, label: str) -> _StreamFacts:
    """Open the container with PyAV and check it has a decodable video stream (header only)."""
    av = _import_av(label)
    with _open_container(av, data, label) as container:
        return _stream_facts(container, _video_stream(av, container, label), label)


def _count_packets(data: Path | bytes, label: str) -> int:
    """Count the video stream's packets by demuxing (decord's frame count when the header has none)."""
    av = _import_av(label)
    with _open_container(av, data, label) as container:
        stream = _video_stream(av, container, label)
        try:
            return sum(1 for packet in container.demux(stream) if packet.size > 0)
        except (av.error.FFmpegError, EOFError) as exc:
            raise MediaUnreadable(label, f"demuxing failed while counting frames ({exc})") from exc


def _frame_count(data: Path | bytes, label: str, facts: _StreamFacts) -> int:
    """decord's N: the header's frame count, else the number of video packets; NoFrames when 0."""
    count = facts.header_frames if facts.header_frames > 0 else _count_packets(data, label)
    if count <= 0:
        raise NoFrames(label, f"the {facts.codec} video stream has no frames")
    return count


# --------------------------------------------------------------------------------------------
# Opened videos
# --------------------------------------------------------------------------------------------


def _checked_indices(info: VideoInfo, indices: Sequence[int]) -> list[int]:
    """Indices as Python ints, each in ``[0, N)``; raises MediaError naming the first bad one."""
    out = []
    for raw in indices:
        if isinstance(raw, (bool, np.bool_)) or not isinstance(raw, (int, np.integer)):
            raise MediaError(info.source, f"frame index {raw!r} is not an integer")
        idx = int(raw)
        if not 0 <= idx < info.num_frames:
            raise MediaError(
                info.source,
                f"frame index {idx} is out of range: the video has {info.num_frames} frames "
                f"(valid 0..{info.num_frames - 1})",
            )
        out.append(idx)
    return out


def _check_batch(array: np.ndarray, count: int, info: VideoInfo, backend: str) -> np.ndarray:
    """A backend's output must be uint8 ``(count, H, W, 3)``."""
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[0] != count or array.shape[-1] != 3:
        raise MediaUnreadable(
            info.source, f"{backend} returned {array.dtype} {tuple(array.shape)}, expected uint8 ({count}, H, W, 3)"
        )
    return array


class _OpenedBase:
    """Shared plumbing: index checks, de-duplication, ordering and the context manager."""

    backend = "base"

    def __init__(self, info: VideoInfo) -> None:
        self.info = info
        self._closed = False

    def read(self, indices: Sequence[int]) -> np.ndarray:
        """Decode frames by index.

        Args:
            indices: frame indices in ``[0, N)``, any order, duplicates allowed.

        Returns:
            uint8 RGB array ``(T, H, W, 3)``, frame ``t`` being source frame ``indices[t]``.
        """
        if self._closed:
            raise MediaError(self.info.source, "read() after close()")
        wanted = _checked_indices(self.info, indices)
        if not wanted:
            return np.zeros((0, self.info.height, self.info.width, 3), dtype=np.uint8)
        unique = sorted(set(wanted))
        frames = _check_batch(self._read_sorted(unique), len(unique), self.info, self.backend)
        if unique == wanted:
            return frames
        position = {idx: k for k, idx in enumerate(unique)}
        return frames[[position[i] for i in wanted]]

    def _read_sorted(self, indices: list[int]) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        """Release the backend's handles (idempotent)."""
        if not self._closed:
            self._closed = True
            self._release()

    def _release(self) -> None:
        """Backend hook: drop handles."""

    def __enter__(self) -> _OpenedBase:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


# ----- decord ---------------------------------------------------------------------------------


def _decord_message(exc: BaseException) -> str:
    """decord's first error line without its ``[time] file.cc:line:`` prefix."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return _DECORD_PREFIX.sub("", first)


def _decord_error(label: str, exc: BaseException, facts: _StreamFacts, action: str) -> MediaError:
    """Map a decord failure on a container PyAV accepted to a MediaError."""
    message = _decord_message(exc)
    if _AVERROR_DECODER_NOT_FOUND in message or "cannot find video stream" in message:
        return UnsupportedCodec(label, f"decord's bundled FFmpeg cannot decode {facts.codec} video ({message})")
    return MediaUnreadable(label, f"decord failed to {action}: {message}")


class _DecordVideo(_OpenedBase):
    backend = "decord"

    def __init__(self, info: VideoInfo, reader: Any, errors: tuple[type[BaseException], ...], facts: _StreamFacts):
        super().__init__(info)
        self._reader = reader
        self._errors = errors
        self._facts = facts

    def _read_sorted(self, indices: list[int]) -> np.ndarray:
        try:
            return self._reader.get_batch(indices).asnumpy()
        except self._errors as exc:
            raise _decord_error(self.info.source, exc, self._facts, f"decode frames {indices[:8]}") from exc

    def _release(self) -> None:
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
        data = _container_source(source, label)
        facts = _probe(data, label)
        _frame_count(data, label, facts)  # decord cannot open a stream without packets
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


# ----- PyAV -----------------------------------------------------------------------------------


def frame_to_rgb(frame: Any) -> np.ndarray:
    """A decoded PyAV frame as uint8 RGB ``(H, W, 3)``, turned upright by its display matrix.

    decord (the seeds' decoder) applies the container's rotation (e.g. a phone video's 90°
    ``tkhd`` matrix), so PyAV-based decoders do too, giving the same pixels. ``VideoInfo.width`` and
    ``height`` stay the coded (stored) size.
    """
    rgb = frame.to_ndarray(format="rgb24")
    turns = int(getattr(frame, "rotation", 0) or 0) // 90
    return np.ascontiguousarray(np.rot90(rgb, turns)) if turns % 4 else rgb


class _PyAVVideo(_OpenedBase):
    backend = "pyav"

    def __init__(self, info: VideoInfo, data: Path | bytes) -> None:
        super().__init__(info)
        self._data = data

    def _read_sorted(self, indices: list[int]) -> np.ndarray:
        av = _import_av(self.info.source)
        with _open_container(av, self._data, self.info.source) as container:
            stream = _video_stream(av, container, self.info.source)
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
        data = _container_source(source, label)
        facts = _probe(data, label)
        count = _frame_count(data, label, facts)
        info = VideoInfo(source=label, num_frames=count, fps=facts.fps, width=facts.width, height=facts.height)
        return _PyAVVideo(info, data)


# ----- torchcodec -----------------------------------------------------------------------------

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


class _TorchCodecVideo(_OpenedBase):
    backend = "torchcodec"

    def __init__(self, info: VideoInfo, decoder: Any) -> None:
        super().__init__(info)
        self._decoder = decoder

    def _read_sorted(self, indices: list[int]) -> np.ndarray:
        try:
            batch = self._decoder.get_frames_at(indices=indices)
        except (RuntimeError, ValueError, IndexError) as exc:
            raise MediaUnreadable(
                self.info.source, f"torchcodec failed to decode frames {indices[:8]}: {exc}"
            ) from exc
        return np.ascontiguousarray(batch.data.cpu().numpy())

    def _release(self) -> None:
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
        data = _container_source(source, label)
        facts = _probe(data, label)
        _frame_count(data, label, facts)
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


# ----- images ---------------------------------------------------------------------------------


def _pil_image_module(label: str) -> Any:
    try:
        return importlib.import_module("PIL.Image")
    except ImportError as exc:
        raise DecoderUnavailable(label, f"Pillow is not importable ({exc}); pip install pillow") from exc


def _load_image_file(path: Path, label: str, what: str) -> np.ndarray:
    """Decode one image file to uint8 RGB; errors name the file."""
    image_mod = _pil_image_module(label)
    if not path.exists():
        raise MediaNotFound(label, f"{what} {path} does not exist")
    try:
        with image_mod.open(path) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError) as exc:
        raise MediaUnreadable(label, f"{what} {path} is not a readable image ({exc})") from exc


def _array_to_rgb(array: np.ndarray, label: str, what: str) -> np.ndarray:
    """An image array as uint8 ``(H, W, 3)``: grey is replicated, an alpha channel dropped."""
    if array.dtype != np.uint8:
        raise MediaUnreadable(label, f"{what} has dtype {array.dtype}; expected uint8")
    if array.ndim == 2:
        return np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim == 3 and array.shape[2] in (3, 4):
        return np.ascontiguousarray(array[:, :, :3])
    raise MediaUnreadable(label, f"{what} has shape {tuple(array.shape)}; expected (H, W, 3)")


def _image_to_rgb(item: Any, label: str, what: str) -> np.ndarray:
    """Any supported image item (array, PIL image, path) as uint8 ``(H, W, 3)``."""
    if isinstance(item, np.ndarray):
        return _array_to_rgb(item, label, what)
    if isinstance(item, (str, os.PathLike)):
        return _load_image_file(Path(item), label, what)
    image_mod = _pil_image_module(label)
    if isinstance(item, image_mod.Image):
        return np.asarray(item.convert("RGB"), dtype=np.uint8)
    raise MediaUnreadable(label, f"{what} is a {type(item).__name__}, not an image (array, PIL image or path)")


def _stack_same_size(images: list[np.ndarray], names: list[str], info: VideoInfo) -> np.ndarray:
    """Stack frames, insisting they all have the video's size."""
    for image, name in zip(images, names, strict=True):
        if image.shape[:2] != (info.height, info.width):
            raise MediaUnreadable(
                info.source,
                f"{name} is {image.shape[1]}x{image.shape[0]} but the first frame is {info.width}x{info.height}",
            )
    return np.stack(images)


class _FramesDirVideo(_OpenedBase):
    backend = "frames"

    def __init__(self, info: VideoInfo, files: list[Path]) -> None:
        super().__init__(info)
        self._files = files

    def _read_sorted(self, indices: list[int]) -> np.ndarray:
        files = [self._files[i] for i in indices]
        images = [_load_image_file(f, self.info.source, "frame file") for f in files]
        return _stack_same_size(images, [f"frame file {f}" for f in files], self.info)


class FramesDirDecoder:
    """A directory of frame images, sorted by file name (``sorted(os.listdir)``, like LLaVA-Hound).

    Hidden files (names starting with ``.``) and subdirectories are ignored; any other file must
    have an image suffix (:data:`IMAGE_SUFFIXES`).

    Args:
        fps: the rate the frames were extracted at (LLaVA-Hound extracts at 2).
    """

    name = "frames"

    def __init__(self, fps: float = 1.0) -> None:
        self.fps = fps

    def available(self) -> bool:
        """Whether Pillow imports."""
        return module_importable("PIL.Image")

    def open(self, source: VideoSource) -> OpenedVideo:
        """List and check the directory; reads the first frame's header for the size.

        Args:
            source: a directory path.

        Returns:
            The opened frame sequence.
        """
        label = describe_source(source)
        if not isinstance(source, (str, os.PathLike)):
            raise MediaUnreadable(label, "the frames decoder needs a directory path")
        folder = Path(source)
        if not folder.exists():
            raise MediaNotFound(label, "no such directory")
        if not folder.is_dir():
            raise MediaUnreadable(label, "not a directory of frames")
        files = [folder / n for n in sorted(os.listdir(folder)) if not n.startswith(".") and (folder / n).is_file()]
        for file in files:
            if file.suffix.lower() not in IMAGE_SUFFIXES:
                raise MediaUnreadable(
                    label, f"{file} is not an image file (expected {', '.join(sorted(IMAGE_SUFFIXES))})"
                )
        if not files:
            raise NoFrames(label, "the directory holds no frame images")
        first = _load_image_file(files[0], label, "frame file")
        info = VideoInfo(
            source=label, num_frames=len(files), fps=self.fps, width=first.shape[1], height=first.shape[0]
        )
        return _FramesDirVideo(info, files)


class _ImagesVideo(_OpenedBase):
    backend = "images"

    def __init__(self, info: VideoInfo, items: Sequence[Any], first: np.ndarray) -> None:
        super().__init__(info)
        self._items = items
        self._first = first

    def _read_sorted(self, indices: list[int]) -> np.ndarray:
        label = self.info.source
        images = [self._first if i == 0 else _image_to_rgb(self._items[i], label, f"image {i}") for i in indices]
        return _stack_same_size(images, [f"image {i}" for i in indices], self.info)


class ImagesDecoder:
    """An in-memory sequence of images (arrays, PIL images or paths) treated as consecutive frames.

    Args:
        fps: the rate to report for the sequence.
    """

    name = "images"

    def __init__(self, fps: float = 1.0) -> None:
        self.fps = fps

    def available(self) -> bool:
        """Always True (Pillow is only needed for PIL images and paths)."""
        return True

    def open(self, source: VideoSource) -> OpenedVideo:
        """Check the sequence and convert its first image to learn the size.

        Args:
            source: a list/tuple of images or a ``(T, H, W, C)`` uint8 array.

        Returns:
            The opened frame sequence.
        """
        label = describe_source(source)
        if not is_image_sequence(source):
            raise MediaUnreadable(label, "the images decoder needs a list/tuple of images or a (T, H, W, 3) array")
        items: Sequence[Any] = source  # type: ignore[assignment]
        if len(items) == 0:
            raise NoFrames(label, "the image list is empty")
        first = _image_to_rgb(items[0], label, "image 0")
        info = VideoInfo(
            source=label, num_frames=len(items), fps=self.fps, width=first.shape[1], height=first.shape[0]
        )
        return _ImagesVideo(info, items, first)


def builtin_decoders() -> dict[str, VideoDecoder]:
    """Fresh instances of the built-in decoders by registry name (whether or not importable here)."""
    return {
        "decord": DecordDecoder(),
        "pyav": PyAVDecoder(),
        "torchcodec": TorchCodecDecoder(),
        "frames": FramesDirDecoder(),
        "images": ImagesDecoder(),
    }


# --------------------------------------------------------------------------------------------
# Sampling + decoding
# --------------------------------------------------------------------------------------------


def _check_selection(selection: FrameSelection, info: VideoInfo, sampler_name: str) -> None:
    """A sampler's answer must be consistent and inside the video."""
    who = f"sampler {sampler_name!r}" if sampler_name else "the sampler"
    if len(selection.indices) != len(selection.timestamps):
        raise MediaError(
            info.source, f"{who} returned {len(selection.indices)} indices but {len(selection.timestamps)} timestamps"
        )
    bad = [i for i in selection.indices if not 0 <= int(i) < info.num_frames]
    if bad:
        raise MediaError(
            info.source,
            f"{who} chose frame {bad[0]} but the video has {info.num_frames} frames (valid 0..{info.num_frames - 1})",
        )


def load_frames(
    source: VideoSource,
    *,
    decoder: VideoDecoder,
    sampler: Callable[[VideoInfo, SamplingSpec], FrameSelection],
    spec: SamplingSpec,
    sampler_name: str = "",
) -> Frames:
    """Open a source, let the sampler pick frames, decode them.

    ``spec.reverse`` is applied here for every sampler: indices, timestamps and pixels are reversed
    after sampling. ``frame_time`` (the seed's textual list) is kept as the sampler wrote it, i.e. in
    ascending order, as it would read for the reversed clip.

    Args:
        source: path, bytes, frames directory or image sequence.
        decoder: the backend to decode with.
        sampler: ``(VideoInfo, SamplingSpec) -> FrameSelection``.
        spec: how many frames and at which rate.
        sampler_name: recorded in the result.

    Returns:
        The decoded frames with their provenance.
    """
    with decoder.open(source) as video:
        info = video.info
        selection = sampler(info, spec)
        _check_selection(selection, info, sampler_name)
        array = video.read(selection.indices)
    indices = tuple(int(i) for i in selection.indices)
    timestamps = tuple(float(t) for t in selection.timestamps)
    if spec.reverse:
        indices, timestamps = indices[::-1], timestamps[::-1]
        array = np.ascontiguousarray(array[::-1])
    return Frames(
        array=array,
        indices=indices,
        timestamps=timestamps,
        fps=info.fps,
        duration=info.duration,
        source=info.source,
        num_source_frames=info.num_frames,
        frame_time=selection.frame_time,
        decoder=decoder.name,
        sampler=sampler_name,
    )


__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_FRAME_PIXELS",
    "DecordDecoder",
    "FramesDirDecoder",
    "ImagesDecoder",
    "OpenedVideo",
    "PyAVDecoder",
    "TorchCodecDecoder",
    "VideoDecoder",
    "builtin_decoders",
    "describe_source",
    "frame_to_rgb",
    "is_image_sequence",
    "module_importable",
    "load_frames",
    "resolve_decoder_name",
]
