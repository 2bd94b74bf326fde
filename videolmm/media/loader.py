"""Frames for a source: a decoder, a sampler, the frame cache and size limits, composed in one place.

:class:`FrameLoader` is what callers use: ``FrameLoader(registry, cache=..., limits=...)`` then
``loader.load(source, media)``. It picks the decoder for the source (a directory → ``frames``, an
image list → ``images``, else ``media.decoder``), the sampler for that decoder
(:meth:`~videolmm.types.MediaSettings.sampler_for`), reads through the :class:`FrameCache` when one
is set, and refuses a video over its :class:`MediaLimits` from the header, before any pixel is
decoded (a cache hit is checked against the same limits, from the cached frames).

:func:`load_frames` is the primitive underneath, for one explicit decoder and sampler object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from videolmm.errors import MediaTooLarge
from videolmm.media.base import VideoDecoder, read_sampled, resolve_decoder_name
from videolmm.media.decord import DecordDecoder
from videolmm.media.frames import FramesDirDecoder, ImagesDecoder
from videolmm.media.pyav import PyAVDecoder
from videolmm.media.torchcodec import TorchCodecDecoder
from videolmm.types import Frames, MediaSettings, VideoInfo, VideoSource

if TYPE_CHECKING:
    from videolmm.media.cache import FrameCache


class MediaLimitExceeded(MediaTooLarge):
    """A video over one of a caller's :class:`MediaLimits` (a policy such as Serve's).

    Distinct from a plain :class:`~videolmm.errors.MediaTooLarge`, which is the core's own refusal
    of a header no decoder should be handed (:data:`~videolmm.media.probe.MAX_FRAME_PIXELS`).

    Attributes:
        limit: the :class:`MediaLimits` field crossed (``max_duration_s`` or ``max_frame_pixels``).
        value: the video's duration (s) or frame size (pixels).
        maximum: the limit's value.
    """

    def __init__(self, source: object, reason: str, *, limit: str, value: float, maximum: float) -> None:
        super().__init__(source, reason)
        self.limit = limit
        self.value = value
        self.maximum = maximum


@dataclass(frozen=True)
class MediaLimits:
    """Largest video a :class:`FrameLoader` accepts; None means unlimited.

    Attributes:
        max_duration_s: longest video, ``N / fps`` as the decoder reports it.
        max_frame_pixels: largest ``width × height`` of a frame.
    """

    max_duration_s: float | None = None
    max_frame_pixels: int | None = None

    def __post_init__(self) -> None:
        if self.max_duration_s is not None and not self.max_duration_s > 0:
            raise ValueError(f"max_duration_s must be > 0 or None, got {self.max_duration_s}")
        if self.max_frame_pixels is not None and self.max_frame_pixels < 1:
            raise ValueError(f"max_frame_pixels must be >= 1 or None, got {self.max_frame_pixels}")

    def check(self, source: str, *, duration: float, width: int, height: int) -> None:
        """Raise :class:`MediaLimitExceeded` naming ``source``, the value and the limit when one is crossed."""
        if self.max_duration_s is not None and duration > self.max_duration_s:
            raise MediaLimitExceeded(
                source,
                f"video lasts {duration:.1f} s; the limit is {self.max_duration_s:g} s",
                limit="max_duration_s",
                value=duration,
                maximum=self.max_duration_s,
            )
        pixels = width * height
        if self.max_frame_pixels is not None and pixels > self.max_frame_pixels:
            raise MediaLimitExceeded(
                source,
                f"frames are {width}x{height} ({pixels} pixels); the limit is {self.max_frame_pixels} pixels",
                limit="max_frame_pixels",
                value=pixels,
                maximum=self.max_frame_pixels,
            )

    def check_info(self, info: VideoInfo) -> None:
        """Check an opened video's header facts (nothing decoded yet)."""
        self.check(info.source, duration=info.duration, width=info.width, height=info.height)

    def check_frames(self, frames: Frames) -> None:
        """Check frames read back from a cache: their source's duration and their frame size."""
        height, width = frames.array.shape[1:3]
        self.check(frames.source, duration=frames.duration, width=int(width), height=int(height))


class FrameLoader:
    """Decode and sample videos by registry name, through an optional cache, under optional limits.

    Args:
        registry: anything with ``decoder(name)`` and ``sampler(name)``
            (:class:`~videolmm.registry.Registry`).
        cache: read and write decoded frames here; None decodes every time.
        limits: refuse larger videos; None accepts any size the decoders accept.
    """

    def __init__(self, registry: Any, *, cache: FrameCache | None = None, limits: MediaLimits | None = None) -> None:
        self.registry = registry
        self.cache = cache
        self.limits = limits or MediaLimits()

    def load(self, source: VideoSource, media: MediaSettings) -> Frames:
        """The frames ``media`` selects from ``source``.

        Args:
            source: path, bytes, frames directory or image sequence.
            media: decoder, sampler and sampling numbers.

        Returns:
            The frames with their provenance; decoded now or read back from the cache (bit-identical).

        Raises:
            MediaLimitExceeded: the video is over :attr:`limits` (refused before decoding, or on a cache hit).
            MediaError: any other reason the source cannot be turned into frames.
            RegistryError: the decoder or sampler name is not registered.
        """
        name = resolve_decoder_name(source, media.decoder)
        sampler_name = media.sampler_for(name)
        decoder = self.registry.decoder(name)
        sampler = self.registry.sampler(sampler_name)

        def decode() -> Frames:
            with decoder.open(source) as video:
                self.limits.check_info(video.info)
                return read_sampled(
                    video, sampler, media.sampling, sampler_name=sampler_name, decoder_name=decoder.name
                )

        if self.cache is None:
            return decode()
        return self.cache.read_through(
            source,
            decoder_name=name,
            sampler_name=sampler_name,
            spec=media.sampling,
            decode=decode,
            check=self.limits.check_frames,
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
    }


__all__ = [
    "FrameLoader",
    "MediaLimitExceeded",
    "MediaLimits",
    "builtin_decoders",
]
