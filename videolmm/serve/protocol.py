"""OpenAI chat-completions wire format (the subset videolmm serves), as pydantic models.

Requests are validated here; anything the core cannot honour is rejected with a message that
names the field, never silently dropped. Unknown top-level fields are ignored, as OpenAI-compatible
servers do, so that clients sending newer optional fields keep working.

Extensions over OpenAI, both from vLLM's conventions:

* content parts of type ``video_url`` (``{"type": "video_url", "video_url": {"url": ...}}``);
* ``media_io_kwargs``: ``{"video": {"num_frames": N, "fps": F}}`` per request.

Responses carry one extra top-level object, ``videolmm`` (:class:`VideoLMMInfo`): the sampled
frame indices and their timestamps and the stage timings, so that a client can see what the model
was shown. A streamed response carries it on its finish chunk.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# ---------------------------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------------------------


class _Part(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class TextPart(_Part):
    """A text content part."""

    type: Literal["text"]
    text: str


class ImageURL(_Part):
    """An image reference: ``data:``, ``file://`` or ``http(s)://`` URL."""

    url: str = Field(min_length=1)
    detail: str | None = Field(default=None, description="Accepted for compatibility; frames are never tiled.")


class ImagePart(_Part):
    """An ``image_url`` content part."""

    type: Literal["image_url"]
    image_url: ImageURL


class VideoURL(_Part):
    """A video reference: ``data:`` (base64), ``file://`` or ``http(s)://`` URL."""

    url: str = Field(min_length=1)


class VideoPart(_Part):
    """A ``video_url`` content part (vLLM's extension)."""

    type: Literal["video_url"]
    video_url: VideoURL


ContentPart = Annotated[TextPart | ImagePart | VideoPart, Field(discriminator="type")]


class ChatMessage(BaseModel):
    """One message of the conversation (how a history maps to the core: :mod:`videolmm.serve.openai`)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None


class VideoIOKwargs(BaseModel):
    """vLLM's ``media_io_kwargs.video``: how to sample this request's videos."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_frames: int | None = Field(default=None, ge=1, description="Frames to sample per video.")
    fps: float | None = Field(
        default=None, gt=0, description="Target rate for rate-based samplers (``fps``, ``hound``)."
    )


class MediaIOKwargs(BaseModel):
    """vLLM's ``media_io_kwargs``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    video: VideoIOKwargs | None = None


class StreamOptions(BaseModel):
    """OpenAI's ``stream_options``."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """``POST /v1/chat/completions`` body.

    Greedy decoding unless ``temperature`` > 0: an omitted temperature means greedy, the seeds'
    evaluation setting (OpenAI's own default would sample at 1.0).
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    model: str = Field(min_length=1, max_length=256)
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=-(2**63), lt=2**64, description="A 64-bit seed (torch's range).")
    n: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    media_io_kwargs: MediaIOKwargs | None = None
    # Known OpenAI fields the core cannot honour: accepted only at their neutral values.
    logprobs: bool | None = None
    top_logprobs: int | None = None
    tools: list[Any] | None = None
    response_format: dict[str, Any] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None

    @field_validator("stop")
    @classmethod
    def _check_stop(cls, value: str | list[str] | None) -> str | list[str] | None:
        items = [value] if isinstance(value, str) else value or []
        if len(items) > 4:
            raise ValueError(f"at most 4 stop sequences are allowed, got {len(items)}")
        if any(not s for s in items):
            raise ValueError("stop sequences must be non-empty strings")
        return value

    @model_validator(mode="after")
    def _check_unsupported(self) -> ChatCompletionRequest:
        problems = []
        if self.n not in (None, 1):
            problems.append(f"n={self.n}: only n=1 is supported")
        if self.logprobs or self.top_logprobs:
            problems.append("logprobs are not supported")
        if self.tools:
            problems.append("tools are not supported")
        if self.response_format and self.response_format.get("type", "text") != "text":
            problems.append(f"response_format {self.response_format.get('type')!r} is not supported (only 'text')")
        for name in ("presence_penalty", "frequency_penalty"):
            if getattr(self, name):
                problems.append(f"{name} is not supported (only 0)")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def max_new_tokens(self) -> int | None:
        """``max_completion_tokens`` (the current name) or ``max_tokens``."""
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    @property
    def stop_list(self) -> tuple[str, ...]:
        """``stop`` as a tuple."""
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    @property
    def include_usage(self) -> bool:
        """Whether a streamed response ends with a usage chunk."""
        return bool(self.stream_options and self.stream_options.include_usage)


# ---------------------------------------------------------------------------------------------
# Responses
# ---------------------------------------------------------------------------------------------


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class UsageInfo(_Out):
    """Token counts (visual placeholder tokens count as prompt tokens)."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class VideoLMMInfo(_Out):
    """videolmm's extension: what the model was shown and where the time went."""

    request_id: str
    frames: list[list[int]] = Field(description="Per video, the sampled source frame indices.")
    timestamps: list[list[float]] = Field(
        default_factory=list, description="Per video, the seconds of those frames in the source (same order)."
    )
    visual_tokens: int
    batch_size: int = Field(description="Requests that shared this request's engine call.")
    timings: dict[str, float] = Field(
        description="Seconds per stage: decode (fetch + decode + sample), queue (wait for a batch at the model "
        "replica), preprocess, generate (the engine call)."
    )


class AssistantMessage(_Out):
    """The assistant's reply."""

    role: Literal["assistant"] = "assistant"
    content: str


class Choice(_Out):
    """One (the only) choice."""

    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]


class ChatCompletion(_Out):
    """A non-streamed chat completion."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[Choice]
    usage: UsageInfo
    videolmm: VideoLMMInfo | None = None


class Delta(_Out):
    """A streamed message delta."""

    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(_Out):
    """A streamed choice."""

    index: int = 0
    delta: Delta
    finish_reason: Literal["stop", "length"] | None = None


class ChatCompletionChunk(_Out):
    """One server-sent event of a streamed completion."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: UsageInfo | None = None
    videolmm: VideoLMMInfo | None = Field(default=None, description="On the finish chunk only.")


class ModelCard(_Out):
    """An entry of ``GET /v1/models``."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "videolmm"


class ModelList(_Out):
    """``GET /v1/models``."""

    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorDetail(_Out):
    """OpenAI's error object."""

    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(_Out):
    """OpenAI's error envelope: ``{"error": {...}}`` (what :meth:`videolmm.serve.errors.ApiError.body` renders)."""

    error: ErrorDetail


__all__ = [
    "AssistantMessage",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionRequest",
    "ChatMessage",
    "Choice",
    "ChunkChoice",
    "ContentPart",
    "Delta",
    "ErrorDetail",
    "ErrorResponse",
    "ImagePart",
    "ImageURL",
    "MediaIOKwargs",
    "ModelCard",
    "ModelList",
    "StreamOptions",
    "TextPart",
    "UsageInfo",
    "VideoIOKwargs",
    "VideoLMMInfo",
    "VideoPart",
    "VideoURL",
]
