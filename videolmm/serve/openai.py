"""OpenAI request → :class:`~videolmm.serve.jobs.ChatJob`; core :class:`Result` → OpenAI response.

The mapping keeps the request the same core request lmms-eval builds: the user's text is the
question, its images and videos become the request's visuals (placed before the question, as
the seeds do, unless the text already holds ``<image>``/``<video>`` placeholders), and decoding
is greedy unless ``temperature`` > 0.

A conversation maps to the core's :attr:`~videolmm.types.Request.turns`: user and assistant
messages alternate from a user message and end with the user message to answer; each user message
may carry images and videos (counted together against the per-request limits), assistant messages
carry text. System (or ``developer``) messages before the first of them replace the system prompt
for that request (else the model's template's, or the serve config's ``system_prompt``), so a judge
that sends a system prompt can use the app. Tool messages, media in an assistant message, and
histories the model's template cannot render (two user or two assistant messages in a row, a
conversation that does not end with a user message) are refused with a 400 naming the message.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

from videolmm.serve.config import LimitsConfig, ModelConfig
from videolmm.serve.errors import ApiError, ServeError, bad_request, unprocessable
from videolmm.serve.jobs import ChatJob, MediaRef
from videolmm.serve.protocol import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    ChatCompletionRequest,
    ChatMessage,
    Choice,
    ChunkChoice,
    Delta,
    ImagePart,
    TextPart,
    UsageInfo,
    VideoLMMInfo,
)
from videolmm.types import GenerationSettings, Result, Turn

#: Roles whose messages set the system prompt (OpenAI's newer name for it is ``developer``).
SYSTEM_ROLES = frozenset({"system", "developer"})


def _text_only(message: ChatMessage, at: str) -> str:
    """A system or assistant message's text: a string, or text parts joined by newlines.

    Raises:
        ServeError: 400 naming the part that is an image or a video, or the message without content.
    """
    content = message.content
    if content is None:
        what = " (tool calls are not supported)" if message.role == "assistant" else ""
        raise bad_request(f"{at}: the {message.role} message has no content{what}", param=f"{at}.content")
    if isinstance(content, str):
        return content
    texts: list[str] = []
    for j, part in enumerate(content):
        if not isinstance(part, TextPart):
            raise bad_request(
                f"{at}.content[{j}]: a {message.role} message takes text only, got {part.type}",
                param=f"{at}.content[{j}]",
                code="invalid_conversation" if message.role == "assistant" else "invalid_request",
            )
        texts.append(part.text)
    return "\n".join(texts)


def _user_content(message: ChatMessage, at: str) -> tuple[str, tuple[MediaRef, ...]]:
    """A user message's text (text parts joined by newlines) and its media (each named by where it sits)."""
    content = message.content
    if content is None:
        raise bad_request(f"{at}: the user message has no content", param=f"{at}.content")
    if isinstance(content, str):
        return content, ()
    texts: list[str] = []
    media: list[MediaRef] = []
    for i, part in enumerate(content):
        where = f"{at}.content[{i}]"
        if isinstance(part, TextPart):
            texts.append(part.text)
        elif isinstance(part, ImagePart):
            media.append(MediaRef("image", part.image_url.url, f"{where}.image_url.url"))
        else:
            media.append(MediaRef("video", part.video_url.url, f"{where}.video_url.url"))
    return "\n".join(texts), tuple(media)


@dataclass(frozen=True)
class Conversation:
    """A request's messages in the core's terms.

    Attributes:
        system_prompt: the system (or developer) messages joined by newlines; None when there are none.
        turns: the user and assistant messages before the last user message.
        question: the last user message's text.
        media: every user message's images and videos, in message order.
    """

    system_prompt: str | None
    turns: tuple[Turn, ...]
    question: str
    media: tuple[MediaRef, ...]


def _invalid(message: str, at: str) -> ServeError:
    return bad_request(message, param=at, code="invalid_conversation")


def conversation(req: ChatCompletionRequest) -> Conversation:
    """Map a request's messages (a chat UI's history included) to a :class:`Conversation`.

    Raises:
        ServeError: 400 naming the message: a tool message or a system message after the
            conversation began (``unsupported_role``); two user or two assistant messages in a
            row, a conversation that starts with an assistant message or does not end with a user
            message, media in an assistant message (``invalid_conversation``); no content.
    """
    systems: list[str] = []
    turns: list[Turn] = []
    media: list[MediaRef] = []
    last_role: str | None = None
    for i, message in enumerate(req.messages):
        at = f"messages[{i}]"
        if message.role in SYSTEM_ROLES:
            if last_role is not None:
                raise bad_request(
                    f"{at}: a {message.role} message after the conversation began is not supported; put it first",
                    param=at,
                    code="unsupported_role",
                )
            systems.append(_text_only(message, at))
            continue
        if message.role not in ("user", "assistant"):
            raise bad_request(
                f"{at}: {message.role} messages are not supported (no tool use); send system, user and assistant "
                "messages",
                param=at,
                code="unsupported_role",
            )
        if message.role == last_role:
            raise _invalid(
                f"{at}: two {message.role} messages in a row (messages[{i - 1}] and {at}); user and assistant "
                "messages must alternate",
                at,
            )
        if last_role is None and message.role == "assistant":
            raise _invalid(f"{at}: the conversation starts with an assistant message; start with a user message", at)
        last_role = message.role
        if message.role == "user":
            text, refs = _user_content(message, at)
            media.extend(refs)
            n_videos = sum(1 for r in refs if r.kind == "video")
            turns.append(Turn("user", text, videos=n_videos, images=len(refs) - n_videos))
        else:
            turns.append(Turn("assistant", _text_only(message, at)))
    if not turns:
        raise bad_request("messages: no user message to answer", param="messages", code="invalid_conversation")
    if last_role != "user":
        at = f"messages[{len(req.messages) - 1}]"
        raise _invalid(
            f"{at}: the conversation ends with an assistant message; it must end with the user message to answer", at
        )
    question = turns.pop()
    return Conversation("\n".join(systems) if systems else None, tuple(turns), question.text, tuple(media))


def to_job(req: ChatCompletionRequest, *, request_id: str, model: ModelConfig, limits: LimitsConfig) -> ChatJob:
    """Validate a request against the limits and reduce it to a :class:`ChatJob`.

    Args:
        req: the parsed request body.
        request_id: Serve's request id.
        model: the served model the request names.
        limits: the app's limits.

    Raises:
        ServeError: 400 for roles or histories the core cannot answer (see :func:`conversation`) and
            for counts (every user message's media together) or values beyond the limits.
    """
    conv = conversation(req)
    media = conv.media
    n_videos = sum(1 for m in media if m.kind == "video")
    n_images = len(media) - n_videos
    if n_videos > limits.max_videos_per_request:
        raise unprocessable(
            f"{n_videos} videos in one request; the limit is {limits.max_videos_per_request}", param="messages"
        )
    if n_images > limits.max_images_per_request:
        raise unprocessable(
            f"{n_images} images in one request; the limit is {limits.max_images_per_request}", param="messages"
        )
    # an omitted max_tokens takes the model's default, capped by the limit; an explicit one must fit
    max_new = req.max_new_tokens or min(model.default_max_tokens, limits.max_tokens)
    if max_new > limits.max_tokens:
        raise unprocessable(f"max_tokens={max_new} exceeds the limit of {limits.max_tokens}", param="max_tokens")
    video_kw = req.video_kwargs  # media_io_kwargs.video, or vLLM's mm_processor_kwargs
    num_frames = video_kw.num_frames if video_kw else None
    if num_frames is not None and num_frames > limits.max_frames:
        message = f"num_frames={num_frames} exceeds the limit of {limits.max_frames}"
        raise unprocessable(message, param=req.video_param("num_frames"))
    generation = GenerationSettings(
        max_new_tokens=max_new,
        temperature=sampling_temperature(req.temperature),
        top_p=req.top_p,
        stop=req.stop_list,
        seed=req.seed,
    )
    return ChatJob(
        request_id=request_id,
        model_id=model.model_id,
        question=conv.question,
        media=media,
        generation=generation,
        num_frames=num_frames,
        fps=video_kw.fps if video_kw else None,
        system_prompt=conv.system_prompt,
        turns=conv.turns,
    )


#: Temperatures below this decode greedily (vLLM's rule): logits divided by 1e-300 overflow to inf,
#: and sampling from the NaN probabilities would fail the whole running batch.
MIN_SAMPLING_TEMPERATURE = 1e-5


def sampling_temperature(temperature: float | None) -> float:
    """The temperature the core samples with: 0 (greedy) when omitted or below :data:`MIN_SAMPLING_TEMPERATURE`."""
    value = float(temperature or 0.0)
    return value if value >= MIN_SAMPLING_TEMPERATURE else 0.0


def finish_reason(result: Result, job: ChatJob) -> str:
    """The core's reason (``stop``: EOS or a stop string; ``length``: ``max_tokens`` ran out); for a
    result without one, ``length`` when the token budget was used up, else ``stop``."""
    if result.finish_reason in ("stop", "length"):
        return result.finish_reason
    return "length" if result.usage.completion_tokens >= job.generation.max_new_tokens else "stop"


def usage(result: Result) -> UsageInfo:
    """OpenAI usage from the core's token counts."""
    u = result.usage
    return UsageInfo(
        prompt_tokens=u.prompt_tokens,
        completion_tokens=u.completion_tokens,
        total_tokens=u.prompt_tokens + u.completion_tokens,
    )


def videolmm_info(result: Result, job: ChatJob, batch_size: int = 1, decoded_in: str | None = None) -> VideoLMMInfo:
    """The response's ``videolmm`` object: frames and timestamps shown, visual tokens, batch, timings,
    and where the media were decoded."""
    return VideoLMMInfo(
        decoded_in=decoded_in,
        request_id=job.request_id,
        frames=[list(f) for f in result.frames],
        timestamps=[[round(t, 6) for t in ts] for ts in result.timestamps],
        visual_tokens=result.usage.visual_tokens,
        batch_size=batch_size,
        timings={k: round(v, 6) for k, v in result.timings.items()},
    )


def completion(
    result: Result,
    job: ChatJob,
    *,
    completion_id: str,
    created: int,
    batch_size: int = 1,
    decoded_in: str | None = None,
) -> ChatCompletion:
    """The non-streamed response for a successful result (``batch_size``: requests in its engine call)."""
    message = ChatCompletionMessage(role="assistant", content=result.text or "")
    return ChatCompletion(
        id=completion_id,
        object="chat.completion",
        created=created,
        model=job.model_id,
        choices=[Choice(index=0, message=message, finish_reason=finish_reason(result, job))],
        usage=usage(result),
        videolmm=videolmm_info(result, job, batch_size, decoded_in).model_dump(exclude_none=True),
    )


def _sse(data: dict) -> str:
    return f"data: {json.dumps(data, separators=(',', ':'))}\n\n"


def _event(chunk: ChatCompletionChunk, *, include_usage: bool) -> str:
    data = chunk.model_dump(exclude_none=True)
    if include_usage:
        data["usage"] = chunk.usage.model_dump() if chunk.usage else None
    return _sse(data)


#: The last event of every stream.
DONE_EVENT = "data: [DONE]\n\n"


@dataclass(frozen=True)
class StreamEvents:
    """The server-sent events of one streamed completion, as OpenAI sends them.

    A role chunk first, then one content chunk per piece of text as it is generated, a finish
    chunk (``stop`` or ``length``; it carries the ``videolmm`` object: frames, timestamps, timings),
    with ``stream_options.include_usage`` a last chunk with no choices and the usage (every earlier
    chunk then carries ``"usage": null``), and ``data: [DONE]``. An error after the stream began is
    an ``{"error": {...}}`` event (the ``openai`` client raises it as an ``APIError``), then ``[DONE]``.
    """

    job: ChatJob
    completion_id: str
    created: int
    include_usage: bool = False
    #: where the media were decoded (``media_deployment`` / ``model_replica``), shown in the ``videolmm`` object
    decoded_in: str | None = None

    def _chunk(
        self, choices: list[ChunkChoice], usage_info: UsageInfo | None = None, info: VideoLMMInfo | None = None
    ) -> str:
        chunk = ChatCompletionChunk(
            id=self.completion_id,
            object="chat.completion.chunk",
            created=self.created,
            model=self.job.model_id,
            choices=choices,
            usage=usage_info,
            **({"videolmm": info.model_dump(exclude_none=True)} if info is not None else {}),
        )
        return _event(chunk, include_usage=self.include_usage)

    def role(self) -> str:
        """The first event: the assistant role, empty content."""
        return self._chunk([ChunkChoice(index=0, delta=Delta(role="assistant", content=""))])

    def content(self, text: str) -> str:
        """A content delta."""
        return self._chunk([ChunkChoice(index=0, delta=Delta(content=text))])

    def finish(self, result: Result, batch_size: int = 1) -> Iterator[str]:
        """The finish chunk (with the ``videolmm`` object), the usage chunk (``include_usage``) and ``[DONE]``."""
        choice = ChunkChoice(index=0, delta=Delta(), finish_reason=finish_reason(result, self.job))
        yield self._chunk([choice], info=videolmm_info(result, self.job, batch_size, self.decoded_in))
        if self.include_usage:
            yield self._chunk([], usage(result))
        yield DONE_EVENT

    def error(self, error: ApiError) -> Iterator[str]:
        """An error after the stream began: the error event, then ``[DONE]``."""
        yield _sse(error.body())
        yield DONE_EVENT


def stream_events(
    result: Result, job: ChatJob, *, completion_id: str, created: int, include_usage: bool
) -> Iterator[str]:
    """Server-sent events for a finished result: role chunk, its whole text in one content chunk,
    finish chunk, usage chunk (``include_usage``), ``[DONE]`` (:class:`StreamEvents` streams)."""
    events = StreamEvents(job, completion_id, created, include_usage)
    yield events.role()
    if result.text:
        yield events.content(result.text)
    yield from events.finish(result)


__all__ = [
    "Conversation",
    "DONE_EVENT",
    "StreamEvents",
    "completion",
    "conversation",
    "finish_reason",
    "sampling_temperature",
    "stream_events",
    "to_job",
    "usage",
    "videolmm_info",
]
