"""What every decoder shares: the two protocols, a base class for opened videos, and source helpers.

A decoder (:class:`VideoDecoder`) holds no per-video state and can be shared between threads;
:meth:`VideoDecoder.open` returns an :class:`OpenedVideo` that owns the file handles. A plugin
decoder usually subclasses :class:`OpenedVideoBase`, which does the index checks, de-duplication,
ordering, the closed-state check and the context manager, and implements two hooks:
``read_sorted(indices)`` (decode sorted, unique, in-range indices) and optionally ``release()``.

Sources (:data:`~videolmm.types.VideoSource`):

* a local file path (``str`` / ``Path``);
* ``bytes`` holding a whole container;
* a directory of frame images, sorted by file name (LLaVA-Hound's pre-extracted frames);
* a list/tuple of images (H×W×3 uint8 arrays, PIL images or image paths), or a (T, H, W, 3) array.

:func:`load_frames` (open, sample, read) is the primitive for one explicit decoder and sampler;
callers that pick them by registry name, with the frame cache and size limits, use
:class:`~videolmm.media.loader.FrameLoader`.

Pure Python and numpy: no decoding library is imported here.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Protocol, runtime_checkable

import numpy as np

from videolmm.errors import MediaError, MediaUnreadable
from videolmm.media.sampling import Sampler
from videolmm.types import Frames, FrameSelection, SamplingSpec, VideoInfo, VideoSource

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


def is_bytes(source: object) -> bool:
    """True for container bytes (``bytes``, ``bytearray`` or ``memoryview``)."""
    return isinstance(source, (bytes, bytearray, memoryview))


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
    if is_bytes(source):
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


# --------------------------------------------------------------------------------------------
# Opened videos
# --------------------------------------------------------------------------------------------


def checked_indices(info: VideoInfo, indices: Sequence[int]) -> list[int]:
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


def repeat_view(frame: np.ndarray, count: int) -> np.ndarray:
    """``count`` copies of one ``(H, W, 3)`` frame as a ``(count, H, W, 3)`` view holding one frame.

    Stride 0 along T: the memory of one frame, whatever ``count`` is (a one-frame clip sampled
    ``uniform`` with F=64 holds one frame, not 64). Writeable, because torch's ``from_numpy``
    (inside the HF processors) warns on read-only arrays; every family's processor reads it
    without writing, giving bit-identical pixel values (tests/test_media_budget.py). Writing
    into it would change every frame at once: copy it first (``np.array(view)``).
    """
    frame = np.ascontiguousarray(frame)
    return np.lib.stride_tricks.as_strided(frame, (count, *frame.shape), (0, *frame.strides), writeable=True)


def check_batch(array: np.ndarray, count: int, info: VideoInfo, backend: str) -> np.ndarray:
    """A backend's output must be uint8 ``(count, H, W, 3)``; raises MediaUnreadable otherwise."""
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[0] != count or array.shape[-1] != 3:
        raise MediaUnreadable(
            info.source, f"{backend} returned {array.dtype} {tuple(array.shape)}, expected uint8 ({count}, H, W, 3)"
        )
    return array


class OpenedVideoBase:
    """An :class:`OpenedVideo` built on one hook: decode sorted, unique, in-range indices.

    Subclasses set :attr:`backend` (named in errors), call ``super().__init__(info)`` and implement
    :meth:`read_sorted`; those holding handles also implement :meth:`release`. :meth:`read` checks
    the indices (MediaError naming the first bad one), reads each distinct frame once, checks the
    batch (uint8 ``(T, H, W, 3)``) and returns the frames in the order asked, duplicates included.

    Attributes:
        info: frame count, rate and size.
        backend: the decoder's name, for error messages.
    """

    backend = "base"
    #: Return one frame repeated as a stride-0 view (:func:`repeat_view`) when every index asked
    #: is the same frame; False makes :meth:`read` return a full copy per index.
    share_repeats = True

    def __init__(self, info: VideoInfo) -> None:
        self.info = info
        self._closed = False

    def read(self, indices: Sequence[int]) -> np.ndarray:
        """Decode frames by index.

        Args:
            indices: frame indices in ``[0, N)``, any order, duplicates allowed.

        Returns:
            uint8 RGB array ``(T, H, W, 3)``, frame ``t`` being source frame ``indices[t]``. When
            every index is the same frame (a one-frame clip under ``uniform``), a stride-0 view of
            that one frame (:func:`repeat_view`); otherwise distinct frames are decoded once and
            repeated ones copied.
        """
        if self._closed:
            raise MediaError(self.info.source, "read() after close()")
        wanted = checked_indices(self.info, indices)
        if not wanted:
            return np.zeros((0, self.info.height, self.info.width, 3), dtype=np.uint8)
        unique = sorted(set(wanted))
        frames = check_batch(self.read_sorted(unique), len(unique), self.info, self.backend)
        if unique == wanted:
            return frames
        if len(unique) == 1 and self.share_repeats:
            return repeat_view(frames[0], len(wanted))
        position = {idx: k for k, idx in enumerate(unique)}
        return frames[[position[i] for i in wanted]]

    def read_sorted(self, indices: list[int]) -> np.ndarray:
        """Subclass hook: decode ``indices`` (sorted, unique, in range) to uint8 ``(len, H, W, 3)``."""
        raise NotImplementedError(f"{type(self).__name__} must implement read_sorted()")

    def close(self) -> None:
        """Release the backend's handles (idempotent)."""
        if not self._closed:
            self._closed = True
            self.release()

    def release(self) -> None:
        """Subclass hook: drop handles (called once, by the first :meth:`close`)."""

    def __enter__(self) -> OpenedVideoBase:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


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


def read_sampled(
    video: OpenedVideo,
    sampler: Sampler,
    spec: SamplingSpec,
    *,
    sampler_name: str = "",
    decoder_name: str = "",
    before_decode: Callable[[OpenedVideo, FrameSelection], None] | None = None,
) -> Frames:
    """Let the sampler pick frames of an opened video and decode them.

    ``spec.reverse`` is applied here for every sampler: indices, timestamps and pixels are reversed
    after sampling. ``frame_time`` (the seed's textual list) is kept as the sampler wrote it, i.e. in
    ascending order, as it would read for the reversed clip.

    Args:
        video: the opened video (left open).
        sampler: ``(VideoInfo, SamplingSpec) -> FrameSelection``.
        spec: how many frames and at which rate.
        sampler_name: recorded in the result.
        decoder_name: recorded in the result.
        before_decode: called with the video and the checked selection before any pixel is
            decoded (size and work budgets); may raise.

    Returns:
        The decoded frames with their provenance.
    """
    info = video.info
    selection = sampler(info, spec)
    _check_selection(selection, info, sampler_name)
    if before_decode is not None:
        before_decode(video, selection)
    array = video.read(selection.indices)
    indices = tuple(int(i) for i in selection.indices)
    timestamps = tuple(float(t) for t in selection.timestamps)
    if spec.reverse:
        indices, timestamps = indices[::-1], timestamps[::-1]
        if array.strides[0] != 0:  # a repeated frame (stride 0) reads the same backwards
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
        decoder=decoder_name,
        sampler=sampler_name,
    )


def load_frames(
    source: VideoSource,
    *,
    decoder: VideoDecoder,
    sampler: Sampler,
    spec: SamplingSpec,
    sampler_name: str = "",
) -> Frames:
    """Open a source with one decoder object, let the sampler pick frames, decode them (no cache, no limits).

    Args:
        source: path, bytes, frames directory or image sequence.
        decoder: the backend to decode with.
        sampler: ``(VideoInfo, SamplingSpec) -> FrameSelection``.
        spec: how many frames and at which rate (see :func:`read_sampled` for ``reverse``).
        sampler_name: recorded in the result.

    Returns:
        The decoded frames with their provenance.
    """
    with decoder.open(source) as video:
        return read_sampled(video, sampler, spec, sampler_name=sampler_name, decoder_name=decoder.name)


__all__ = [
    "OpenedVideo",
    "OpenedVideoBase",
    "VideoDecoder",
    "check_batch",
    "checked_indices",
    "describe_source",
    "is_bytes",
    "is_image_sequence",
    "load_frames",
    "module_importable",
    "read_sampled",
    "repeat_view",
    "resolve_decoder_name",
]
