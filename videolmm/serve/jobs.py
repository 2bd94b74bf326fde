"""What the ingress hands the media deployment: a chat request reduced to the core's terms.

Frozen dataclasses, small and picklable: they cross Ray process boundaries. The media
deployment turns a :class:`ChatJob` into the core's
:class:`~videolmm.models.engine.DecodedRequest`, which the model deployment generates from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from videolmm.media.resize import FrameResize
from videolmm.types import GenerationSettings, Result, Turn


@dataclass(frozen=True)
class MediaRef:
    """One image or video of a request, still as the client's URL.

    Attributes:
        kind: ``video`` or ``image``.
        url: ``data:``, ``file://`` or ``http(s)://`` URL.
        param: where it sits in the request (``messages[0].content[1].video_url.url``), for errors.
    """

    kind: Literal["video", "image"]
    url: str
    param: str


@dataclass(frozen=True)
class ChatJob:
    """A validated chat request: the last user turn, after the earlier turns of its conversation.

    Attributes:
        request_id: Serve's request id (``x-request-id``), also the core request's id.
        model_id: the served model it is for.
        question: the last user message's text parts joined by newlines.
        media: the request's images and videos, in message order (every user turn's; each
            turn in ``turns`` says how many of each kind it carries, the question the rest).
        generation: decoding settings (greedy unless temperature > 0).
        num_frames: ``media_io_kwargs.video.num_frames``, overriding the model's frame count.
        fps: ``media_io_kwargs.video.fps``, for rate-based samplers.
        system_prompt: the request's system (or developer) messages joined by newlines; None keeps
            the model's (its template's, or the serve config's ``system_prompt``).
        turns: the earlier user and assistant messages, oldest first (the core's
            :attr:`~videolmm.types.Request.turns`); empty for a single question.
        resize: the model's frame resize, for the MediaDecoder to run on the sampled frames
            before sending them (``media_resize``); None sends them at their decoded size.
    """

    request_id: str
    model_id: str
    question: str
    media: tuple[MediaRef, ...] = ()
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    num_frames: int | None = None
    fps: float | None = None
    system_prompt: str | None = None
    turns: tuple[Turn, ...] = ()
    resize: FrameResize | None = None

    @property
    def videos(self) -> tuple[MediaRef, ...]:
        """The video references, in order."""
        return tuple(m for m in self.media if m.kind == "video")

    @property
    def images(self) -> tuple[MediaRef, ...]:
        """The image references, in order."""
        return tuple(m for m in self.media if m.kind == "image")


@dataclass(frozen=True)
class Generated:
    """What the model deployment returns for one request.

    Attributes:
        result: the core's result (text and usage, or the error); its ``timings`` include
            ``queue``, the seconds the request waited at the model replica for its batch.
        batch_size: how many requests shared the engine call.
    """

    result: Result
    batch_size: int = 1


__all__ = ["ChatJob", "Generated", "MediaRef"]
