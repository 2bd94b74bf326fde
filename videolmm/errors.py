"""Typed errors. Every message names the input and the reason."""

from __future__ import annotations


class VideoLMMError(Exception):
    """Base class of every error videolmm raises on purpose."""


class ConfigError(VideoLMMError, ValueError):
    """A setting is unknown, inconsistent or unsupported (names the setting)."""


class RegistryError(VideoLMMError, KeyError):
    """A family, decoder, sampler or template name is unknown or registered twice."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class MediaError(VideoLMMError, ValueError):
    """A media source cannot be turned into frames.

    Attributes:
        source: printable name of the input (path, ``<bytes:N>``, ...).
        reason: why it failed, in words.
    """

    kind = "media error"

    def __init__(self, source: object, reason: str) -> None:
        self.source = str(source)
        self.reason = reason
        super().__init__(f"{self.source}: {self.kind}: {reason}")


class MediaNotFound(MediaError):
    """The path does not exist."""

    kind = "not found"


class MediaUnreadable(MediaError):
    """The container cannot be opened or parsed (corrupt, truncated, not a video)."""

    kind = "unreadable"


class NoVideoStream(MediaError):
    """The container opens but holds no video stream (audio-only, image, ...)."""

    kind = "no video stream"


class NoFrames(MediaError):
    """The video stream yields zero decodable frames."""

    kind = "zero frames"


class UnsupportedCodec(MediaError):
    """The decoder has no codec for this stream."""

    kind = "unsupported codec"


class MediaTooLarge(MediaError):
    """The stream declares frames too large to decode safely (see ``videolmm.media.probe.MAX_FRAME_PIXELS``)."""

    kind = "too large"


class UnsupportedContainer(MediaError):
    """The bytes are a container format the media layer does not demux (playlists, concat
    scripts, SDP, image sequences, anything outside ``videolmm.media.probe.CONTAINER_FORMATS``)."""

    kind = "unsupported container"


class DecodeTimeout(MediaError):
    """Decoding passed its wall-clock deadline (or was cancelled) and stopped itself."""

    kind = "decode deadline exceeded"


class DecoderUnavailable(MediaError):
    """The named decoder's library is not installed."""

    kind = "decoder unavailable"


class PromptError(VideoLMMError, ValueError):
    """The prompt and the visual inputs do not agree (e.g. more placeholders than videos)."""


class ContextLengthExceeded(PromptError):
    """The prompt (text + visual tokens) plus ``max_new_tokens`` does not fit the model's context."""


class TokenCountMismatch(VideoLMMError, RuntimeError):
    """The processor inserted a different number of visual tokens than the config implies."""


__all__ = [
    "ConfigError",
    "ContextLengthExceeded",
    "DecodeTimeout",
    "DecoderUnavailable",
    "MediaError",
    "MediaNotFound",
    "MediaTooLarge",
    "MediaUnreadable",
    "NoFrames",
    "NoVideoStream",
    "PromptError",
    "RegistryError",
    "TokenCountMismatch",
    "UnsupportedCodec",
    "UnsupportedContainer",
    "VideoLMMError",
]
