"""OpenAI chat-completions wire format (the subset videolmm serves), as pydantic models.

Requests are validated here; anything the core cannot honour is rejected with a message that
names the field, never silently dropped. A top-level field is accepted when it is one of OpenAI's
chat-completions parameters (the installed ``openai`` SDK's ``CompletionCreateParams``) or one of the
extensions below; any other is refused as OpenAI refuses it (400 ``Unrecognized request argument
supplied: NAME``). OpenAI parameters that only concern OpenAI's platform (``user``, ``metadata``,
``store``, ``service_tier``, ``prompt_cache_key``, ...) are accepted and have no effect; those that
would change the answer are accepted only at their neutral values.

Extensions over OpenAI, from vLLM's conventions:

* content parts of type ``video_url`` (``{"type": "video_url", "video_url": {"url": ...}}``);
* ``media_io_kwargs``: ``{"video": {"num_frames": N, "fps": F}}`` per request;
* ``mm_processor_kwargs``: ``{"num_frames": N, "fps": F}`` — the same two settings under vLLM's
  other name for them; any other key is refused (400), and a value contradicting
  ``media_io_kwargs.video`` too.

Responses are the ``openai`` SDK's own models (``openai.types.chat.ChatCompletion`` /
``ChatCompletionChunk``), so the wire format is OpenAI's by construction.

Responses carry one extra top-level object, ``videolmm`` (:class:`VideoLMMInfo`): the sampled
frame indices and their timestamps and the stage timings, so that a client can see what the model
was shown. A streamed response carries it on its finish chunk.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessage
from openai.types.chat import completion_create_params as _openai_params
from openai.types.chat.chat_completion import Choice
from openai.types.chat.chat_completion_chunk import Choice as ChunkChoice
from openai.types.chat.chat_completion_chunk import ChoiceDelta as Delta
from openai.types.completion_usage import CompletionUsage as UsageInfo
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: Every top-level parameter of OpenAI's chat-completions API, as the installed SDK declares it.
OPENAI_PARAMS: frozenset[str] = frozenset(
    _openai_params.CompletionCreateParamsBase.__required_keys__
    | _openai_params.CompletionCreateParamsBase.__optional_keys__
    | _openai_params.CompletionCreateParamsStreaming.__required_keys__
)
#: OpenAI parameters that would change the answer: accepted only at these neutral values.
_NEUTRAL: dict[str, tuple[Any, ...]] = {
    "logit_bias": (None, {}),
    "modalities": (None, ["text"]),
    "audio": (None,),
    "functions": (None, []),
    "function_call": (None, "none", "auto"),
    "tool_choice": (None, "none", "auto"),
    "web_search_options": (None,),
    "reasoning_effort": (None,),
    "verbosity": (None,),
    "prediction": (None,),
    "moderation": (None,),
}
#: The settings ``mm_processor_kwargs`` may carry (vLLM's meaning: per-request processor settings).
MM_PROCESSOR_KEYS = ("num_frames", "fps")

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


class UnrecognizedArgument(ValueError):
    """A top-level request field that is neither an OpenAI parameter nor a videolmm extension."""

    def __init__(self, name: str) -> None:
        super().__init__(f"Unrecognized request argument supplied: {name}")
        self.name = name


class ChatCompletionRequest(BaseModel):
    """``POST /v1/chat/completions`` body.

    Greedy decoding unless ``temperature`` > 0: an omitted temperature means greedy, the seeds'
    evaluation setting (OpenAI's own default would sample at 1.0).
    """

    model_config = ConfigDict(extra="allow", frozen=True)

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
    mm_processor_kwargs: dict[str, Any] | None = None
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

    @model_validator(mode="before")
    @classmethod
    def _known_fields_only(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name in data:
                if name not in cls.model_fields and name not in OPENAI_PARAMS:
                    raise UnrecognizedArgument(str(name))
        return data

    @field_validator("mm_processor_kwargs")
    @classmethod
    def _check_mm_processor_kwargs(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        unknown = sorted(set(value) - set(MM_PROCESSOR_KEYS))
        if unknown:
            raise ValueError(
                f"{', '.join(unknown)} not supported: videolmm's processors take only "
                f"{' and '.join(MM_PROCESSOR_KEYS)} per request (the rest is fixed by the model's seed settings)"
            )
        VideoIOKwargs.model_validate(value)  # the same types and bounds as media_io_kwargs.video
        return value

    @model_validator(mode="after")
    def _check_unsupported(self) -> ChatCompletionRequest:
        problems = []
        for name, neutral in _NEUTRAL.items():
            value = (self.model_extra or {}).get(name)
            if value not in neutral:
                problems.append(f"{name}={value!r} is not supported")
        if self.mm_processor_kwargs and self.media_io_kwargs and self.media_io_kwargs.video:
            given = self.media_io_kwargs.video
            for key, value in self.mm_processor_kwargs.items():
                if getattr(given, key) is not None and getattr(given, key) != value:
                    problems.append(
                        f"mm_processor_kwargs.{key}={value!r} contradicts media_io_kwargs.video.{key}="
                        f"{getattr(given, key)!r}"
                    )
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
    def video_kwargs(self) -> VideoIOKwargs | None:
        """The per-request video settings: ``media_io_kwargs.video`` merged with ``mm_processor_kwargs``."""
        given = self.media_io_kwargs.video if self.media_io_kwargs else None
        if not self.mm_processor_kwargs:
            return given
        merged = {**(given.model_dump(exclude_none=True) if given else {}), **self.mm_processor_kwargs}
        return VideoIOKwargs.model_validate(merged)

    def video_param(self, key: str) -> str:
        """The request field a :attr:`video_kwargs` setting came from, for error messages."""
        given_here = key in (self.mm_processor_kwargs or {})
        return f"mm_processor_kwargs.{key}" if given_here else f"media_io_kwargs.video.{key}"

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
    decoded_in: Literal["media_deployment", "model_replica"] | None = Field(
        default=None, description="Where the media were decoded: the MediaDecoder deployment or the model replica."
    )


class ModelCard(_Out):
    """An entry of ``GET /v1/models``: OpenAI's fields, vLLM's ``root`` / ``parent`` / ``max_model_len``,
    and the model's family and default frames (None fields are left out)."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "videolmm"
    root: str | None = Field(default=None, description="The checkpoint (path or hub id), as vLLM names it.")
    parent: str | None = None
    max_model_len: int | None = Field(default=None, description="Context length in tokens (vLLM's name).")
    family: str | None = None
    num_frames: int | None = Field(default=None, description="Frames sampled per video by default.")
    sampler: str | None = None
    error: str | None = Field(default=None, description="Why the settings could not be read.")


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
    "MM_PROCESSOR_KEYS",
    "OPENAI_PARAMS",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionMessage",
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
    "UnrecognizedArgument",
    "UsageInfo",
    "VideoIOKwargs",
    "VideoLMMInfo",
    "VideoPart",
    "VideoURL",
]
