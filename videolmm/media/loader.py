"""Frames for a source: a decoder, a sampler, the frame cache and size limits, composed in one place.

:class:`FrameLoader` is what callers use: ``FrameLoader(registry, cache=..., limits=...)`` then
``loader.load(source, media)``. It picks the decoder for the source (a directory → ``frames``, an
image list → ``images``, else ``media.decoder``), the sampler for that decoder
(:meth:`~videolmm.types.MediaSettings.sampler_for`), reads through the :class:`FrameCache` when one
is set, and refuses a video over its :class:`MediaLimits` from the header and the sampler's
selection, before any pixel is decoded (a cache hit is checked against the same limits, from the
cached frames). Decoded bytes are charged to a :class:`DecodeBudget` (one per request in Serve),
and decoding runs under a :class:`~videolmm.media.deadline.Deadline`.

:func:`load_frames` is the primitive underneath, for one explicit decoder and sampler object.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from videolmm.errors import MediaTooLarge
from videolmm.media.base import OpenedVideo, VideoDecoder, describe_source, read_sampled, resolve_decoder_name
from videolmm.media.deadline import Deadline, deadline_scope
from videolmm.media.decord import DecordDecoder
from videolmm.media.ffmpeg_filter import FfmpegCliDecoder
from videolmm.media.frames import FramesDirDecoder, ImagesDecoder
from videolmm.media.packets import PacketIndex, decode_bound
from videolmm.media.probe import container_source, probe
from videolmm.media.pyav import PyAVDecoder
from videolmm.media.torchcodec import TorchCodecDecoder
from videolmm.types import Frames, FrameSelection, MediaSettings, VideoInfo, VideoSource

if TYPE_CHECKING:
    from videolmm.media.cache import FrameCache


#: Built-in container decoders, which all probe with PyAV: :meth:`FrameLoader.check_header` reads
#: the header before they open a source.
PROBED_DECODERS = frozenset({"keyframe", "pyav", "decord", "torchcodec", "ffmpeg_cli"})


class MediaLimitExceeded(MediaTooLarge):
    """A video over one of a caller's :class:`MediaLimits` (a policy such as Serve's).

    Distinct from a plain :class:`~videolmm.errors.MediaTooLarge`, which is the core's own refusal
    of a header no decoder should be handed (:data:`~videolmm.media.probe.MAX_FRAME_PIXELS`).

    Attributes:
        limit: the :class:`MediaLimits` field crossed (``max_duration_s``, ``max_frame_pixels``,
            ``max_source_fps``, ``max_source_frames``, ``max_decode_frames`` or ``max_decoded_bytes``).
        value: the video's value of that quantity.
        maximum: the limit's value.
    """

    def __init__(self, source: object, reason: str, *, limit: str, value: float, maximum: float) -> None:
        super().__init__(source, reason)
        self.limit = limit
        self.value = value
        self.maximum = maximum


@dataclass(frozen=True)
class MediaLimits:
    """Largest video, and most work, a :class:`FrameLoader` accepts; None means unlimited.

    Every limit is checked before a pixel is decoded: the header's facts when the video is opened,
    the sampler's selection (frames decoded, bytes held) before it is read.

    Attributes:
        max_duration_s: longest video, ``N / fps`` as the decoder reports it.
        max_frame_pixels: largest ``width × height`` of a frame.
        max_source_fps: highest declared frame rate (a 10,000 fps header makes a long video look short).
        max_source_frames: most frames N in the video stream.
        max_decode_frames: most frames decoded to get the selection: for the ``keyframe`` decoder
            the packet index's :func:`~videolmm.media.packets.decode_bound` (keyframe → wanted
            frame runs), for every other decoder the frames up to the last one wanted.
        max_decoded_bytes: most bytes of decoded RGB frames (``F·H·W·3``, repeated indices
            counted every time) for one :class:`DecodeBudget`, i.e. summed over a request's media.
        decode_timeout_s: wall-clock seconds one :meth:`FrameLoader.load` may decode (see
            :mod:`videolmm.media.deadline`); the PyAV-based decoders stop themselves then.
    """

    max_duration_s: float | None = None
    max_frame_pixels: int | None = None
    max_source_fps: float | None = None
    max_source_frames: int | None = None
    max_decode_frames: int | None = None
    max_decoded_bytes: int | None = None
    decode_timeout_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_duration_s", "max_source_fps", "decode_timeout_s"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be > 0 or None, got {value}")
        for name in ("max_frame_pixels", "max_source_frames", "max_decode_frames", "max_decoded_bytes"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {value}")

    def check(
        self, source: str, *, duration: float, width: int, height: int, fps: float = 0.0, num_frames: int = 0
    ) -> None:
        """Raise :class:`MediaLimitExceeded` naming ``source``, the value and the limit when one is crossed."""

        def refuse(limit: str, value: float, reason: str) -> None:
            maximum = getattr(self, limit)
            raise MediaLimitExceeded(source, reason, limit=limit, value=value, maximum=maximum)

        if self.max_source_fps is not None and fps > self.max_source_fps:
            refuse("max_source_fps", fps, f"the video declares {fps:g} fps; the limit is {self.max_source_fps:g} fps")
        if self.max_source_frames is not None and num_frames > self.max_source_frames:
            refuse(
                "max_source_frames",
                num_frames,
                f"the video stream has {num_frames} frames; the limit is {self.max_source_frames}",
            )
        if self.max_duration_s is not None and duration > self.max_duration_s:
            refuse("max_duration_s", duration, f"video lasts {duration:.1f} s; the limit is {self.max_duration_s:g} s")
        pixels = width * height
        if self.max_frame_pixels is not None and pixels > self.max_frame_pixels:
            refuse(
                "max_frame_pixels",
                pixels,
                f"frames are {width}x{height} ({pixels} pixels); the limit is {self.max_frame_pixels} pixels",
            )

    def check_info(self, info: VideoInfo) -> None:
        """Check an opened video's header facts (nothing decoded yet)."""
        self.check(
            info.source,
            duration=info.duration,
            width=info.width,
            height=info.height,
            fps=info.fps,
            num_frames=info.num_frames,
        )

    def check_frames(self, frames: Frames) -> None:
        """Check frames read back from a cache: their source's duration and rate, and their frame size."""
        height, width = frames.array.shape[1:3]
        self.check(
            frames.source,
            duration=frames.duration,
            width=int(width),
            height=int(height),
            fps=frames.fps,
            num_frames=frames.num_source_frames,
        )

    def check_work(self, video: OpenedVideo, selection: FrameSelection) -> None:
        """Refuse a selection whose decoding work is over :attr:`max_decode_frames` (nothing decoded yet)."""
        if self.max_decode_frames is None or not selection.indices:
            return
        work = decode_work(video, selection.indices)
        if work > self.max_decode_frames:
            raise MediaLimitExceeded(
                video.info.source,
                f"the {len(selection.indices)} frames sampled need {work} frames decoded (keyframe to frame); "
                f"the limit is {self.max_decode_frames}",
                limit="max_decode_frames",
                value=work,
                maximum=self.max_decode_frames,
            )


def decode_work(video: OpenedVideo, indices: Sequence[int]) -> int:
    """Frames a decoder must decode to read ``indices``, known before decoding.

    The ``keyframe`` decoder's exact packet index gives :func:`~videolmm.media.packets.decode_bound`;
    without one (and for decoders that decode from the start) it is the last wanted index + 1.
    """
    index = getattr(video, "index", None)
    if isinstance(index, PacketIndex) and index.exact:
        return decode_bound(index.keyframes, indices)
    return max(int(i) for i in indices) + 1


class DecodeBudget:
    """Decoded bytes charged against :attr:`MediaLimits.max_decoded_bytes`, over several videos and images.

    One budget per request: Serve charges every video and image of a request to one; a
    :class:`FrameLoader` called without one charges each load to a fresh budget. Thread-safe.

    Args:
        max_bytes: the limit; None only counts.
    """

    def __init__(self, max_bytes: int | None) -> None:
        self.max_bytes = max_bytes
        self.used = 0
        self._lock = threading.Lock()

    def charge(self, source: str, *, frames: int, width: int, height: int, what: str = "frames") -> None:
        """Add ``frames × height × width × 3`` bytes; raise :class:`MediaLimitExceeded` (nothing added) when over."""
        size = int(frames) * int(width) * int(height) * 3
        with self._lock:
            total = self.used + size
            if self.max_bytes is not None and total > self.max_bytes:
                raise MediaLimitExceeded(
                    source,
                    f"decoding {frames} {what} of {width}x{height} needs {size} bytes ({frames}x{width}x{height}x3), "
                    f"{total} bytes with the request's other media; the limit is {self.max_bytes} bytes per request",
                    limit="max_decoded_bytes",
                    value=total,
                    maximum=self.max_bytes,
                )
            self.used = total


class FrameLoader:
    """Decode and sample videos by registry name, through an optional cache, under optional limits.

    Args:
        registry: anything with ``decoder(name)`` and ``sampler(name)``
            (:class:`~videolmm.registry.Registry`).
        cache: read and write decoded frames here; None decodes every time.
        limits: refuse larger videos and larger work; None accepts any size the decoders accept.
    """

    def __init__(self, registry: Any, *, cache: FrameCache | None = None, limits: MediaLimits | None = None) -> None:
        self.registry = registry
        self.cache = cache
        self.limits = limits or MediaLimits()

    def check_header(self, source: VideoSource, decoder_name: str) -> None:
        """Check a container's header against :attr:`limits` before a decoder opens it.

        A decoder's ``open`` may already work in proportion to the stream (``keyframe`` demuxes
        every packet to build its index, ``pyav`` counts packets when the header has no count):
        a header declaring 10,000 fps, or more frames than ``max_source_frames``, is refused from
        one header read first. Only for :data:`PROBED_DECODERS` (they probe containers with PyAV
        anyway; frames directories, image lists and plugin decoders are checked once opened), and
        only when a header limit is set.
        """
        lim = self.limits
        header_limits = (lim.max_source_fps, lim.max_source_frames, lim.max_duration_s, lim.max_frame_pixels)
        if decoder_name not in PROBED_DECODERS or all(v is None for v in header_limits):
            return
        label = describe_source(source)
        facts = probe(container_source(source, label), label)
        duration = facts.header_frames / facts.fps if facts.fps > 0 else 0.0
        lim.check(
            label,
            duration=duration,
            width=facts.width,
            height=facts.height,
            fps=facts.fps,
            num_frames=facts.header_frames,
        )

    def load(
        self,
        source: VideoSource,
        media: MediaSettings,
        *,
        budget: DecodeBudget | None = None,
        deadline: Deadline | None = None,
    ) -> Frames:
        """The frames ``media`` selects from ``source``.

        Args:
            source: path, bytes, frames directory or image sequence.
            media: decoder, sampler and sampling numbers.
            budget: the request's decoded-bytes budget; None charges this load to a fresh one of
                ``limits.max_decoded_bytes``.
            deadline: stops decoding when passed or cancelled; None starts one of
                ``limits.decode_timeout_s`` (when set).

        Returns:
            The frames with their provenance; decoded now or read back from the cache (bit-identical).

        Raises:
            MediaLimitExceeded: the video or the work is over :attr:`limits` (refused before
                decoding, or on a cache hit).
            DecodeTimeout: decoding passed the deadline and stopped.
            MediaError: any other reason the source cannot be turned into frames.
            RegistryError: the decoder or sampler name is not registered.
        """
        name = resolve_decoder_name(source, media.decoder)
        sampler_name = media.sampler_for(name)
        decoder = self.registry.decoder(name)
        sampler = self.registry.sampler(sampler_name)
        budget = budget if budget is not None else DecodeBudget(self.limits.max_decoded_bytes)
        if deadline is None and self.limits.decode_timeout_s is not None:
            deadline = Deadline(self.limits.decode_timeout_s)

        def before_decode(video: OpenedVideo, selection: FrameSelection) -> None:
            self.limits.check_work(video, selection)
            info = video.info
            budget.charge(info.source, frames=len(selection.indices), width=info.width, height=info.height)

        def decode() -> Frames:
            with deadline_scope(deadline):
                self.check_header(source, name)
            with deadline_scope(deadline), decoder.open(source) as video:
                self.limits.check_info(video.info)
                return read_sampled(
                    video,
                    sampler,
                    media.sampling,
                    sampler_name=sampler_name,
                    decoder_name=decoder.name,
                    before_decode=before_decode,
                )

        def check_cached(frames: Frames) -> None:
            self.limits.check_frames(frames)
            count, height, width = frames.array.shape[:3]
            budget.charge(frames.source, frames=count, width=width, height=height)

        if self.cache is None:
            return decode()
        return self.cache.read_through(
            source,
            decoder_name=name,
            sampler_name=sampler_name,
            spec=media.sampling,
            decode=decode,
            check=check_cached,
        )


def builtin_decoders() -> dict[str, VideoDecoder]:
    """Fresh instances of the built-in container and frame decoders by registry name (importable or not).

    The ``keyframe`` decoder (:class:`~videolmm.media.keyframe.KeyframeDecoder`) is registered
    next to these by the built-in plugin.
    """
    return {
        "decord": DecordDecoder(),
        "pyav": PyAVDecoder(),
        "torchcodec": TorchCodecDecoder(),
        "frames": FramesDirDecoder(),
        "images": ImagesDecoder(),
        "ffmpeg_cli": FfmpegCliDecoder(),  # LLaVA-Hound's exact extraction (scale=336:-1,fps=2 → JPEG)
    }


__all__ = [
    "DecodeBudget",
    "FrameLoader",
    "MediaLimitExceeded",
    "MediaLimits",
    "PROBED_DECODERS",
    "builtin_decoders",
    "decode_work",
]
