"""OpenAI request → :class:`~videolmm.serve.jobs.ChatJob`; core :class:`Result` → OpenAI response.

The mapping keeps the request the same core request lmms-eval builds: the user's text is the
question, its images and videos become the request's visuals (placed before the question, as
the seeds do, unless the text already holds ``<image>``/``<video>`` placeholders), and decoding
is greedy unless ``temperature`` > 0.

videolmm answers one user turn. System (or ``developer``) messages before it replace the
system prompt for that request (else the model's template's, or the serve config's
``system_prompt``), so a judge that sends a system prompt can use the app. The core has no
conversation history, so assistant and tool messages, and a second user turn, are refused rather
than silently dropped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

from videolmm.serve.config import LimitsConfig, ModelConfig
from videolmm.serve.errors import ApiError, bad_request, unprocessable
from videolmm.serve.jobs import ChatJob, MediaRef
from videolmm.serve.protocol import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChunkChoice,
    Delta,
    ImagePart,
    TextPart,
    UsageInfo,
    VideoLMMInfo,
)
from videolmm.types import GenerationSettings, Result

#: Roles whose messages set the system prompt (OpenAI's newer name for it is ``developer``).
SYSTEM_ROLES = frozenset({"system", "developer"})


def _system_prompt(req: ChatCompletionRequest) -> str | None:
    """The system (or developer) messages before the user turn, joined by newlines; None when there are none.

    Raises:
        ServeError: 400 when one follows the user message or carries an image or a video.
    """
    texts: list[str] = []
    seen_user = False
    for i, message in enumerate(req.messages):
        if message.role == "user":
            seen_user = True
            continue
        if message.role not in SYSTEM_ROLES:
            continue
        if seen_user:
            raise bad_request(
                f"messages[{i}]: a {message.role} message after the user message is not supported; put it first",
                param=f"messages[{i}]",
                code="unsupported_role",
            )
        content = message.content
        if isinstance(content, list):
            parts = []
            for j, part in enumerate(content):
                if not isinstance(part, TextPart):
                    raise bad_request(
                        f"messages[{i}].content[{j}]: a {message.role} message takes text only, got {part.type}",
                        param=f"messages[{i}].content[{j}]",
                    )
                parts.append(part.text)
            content = "\n".join(parts)
        texts.append(content or "")
    return "\n".join(texts) if texts else None


def _user_content(req: ChatCompletionRequest) -> tuple[str, tuple[MediaRef, ...]]:
    """The user turn's text and its media (each named by where it sits in the request)."""
    others = sorted({m.role for m in req.messages if m.role != "user" and m.role not in SYSTEM_ROLES})
    if others:
        raise bad_request(
            f"messages with role(s) {others} are not supported: videolmm answers a single user turn "
            "(after optional system messages) with the model's own template",
            param="messages",
            code="unsupported_role",
        )
    users = [i for i, m in enumerate(req.messages) if m.role == "user"]
    if len(users) != 1:
        raise bad_request(
            f"got {len(users)} user messages; videolmm answers a single user turn",
            param="messages",
            code="unsupported_multi_turn",
        )
    at = f"messages[{users[0]}]"
    content = req.messages[users[0]].content
    if content is None:
        raise bad_request("the user message has no content", param=f"{at}.content")
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


def to_job(req: ChatCompletionRequest, *, request_id: str, model: ModelConfig, limits: LimitsConfig) -> ChatJob:
    """Validate a request against the limits and reduce it to a :class:`ChatJob`.

    Args:
        req: the parsed request body.
        request_id: Serve's request id.
        model: the served model the request names.
        limits: the app's limits.

    Raises:
        ServeError: 400 for roles or turns the core cannot answer (system messages are taken); 422
            for counts or values beyond the limits.
    """
    question, media = _user_content(req)
    system_prompt = _system_prompt(req)
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
    video_kw = req.media_io_kwargs.video if req.media_io_kwargs else None
    num_frames = video_kw.num_frames if video_kw else None
    if num_frames is not None and num_frames > limits.max_frames:
        raise unprocessable(
            f"num_frames={num_frames} exceeds the limit of {limits.max_frames}",
            param="media_io_kwargs.video.num_frames",
        )
    generation = GenerationSettings(
        max_new_tokens=max_new,
        temperature=float(req.temperature or 0.0),
        top_p=req.top_p,
        stop=req.stop_list,
        seed=req.seed,
    )
    return ChatJob(
        request_id=request_id,
        model_id=model.model_id,
        question=question,
        media=media,
        generation=generation,
        num_frames=num_frames,
        fps=video_kw.fps if video_kw else None,
        system_prompt=system_prompt,
    )


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


def completion(
    result: Result, job: ChatJob, *, completion_id: str, created: int, batch_size: int = 1
) -> ChatCompletion:
    """The non-streamed response for a successful result (``batch_size``: requests in its engine call)."""
    return ChatCompletion(
        id=completion_id,
        created=created,
        model=job.model_id,
        choices=[
            Choice(message=AssistantMessage(content=result.text or ""), finish_reason=finish_reason(result, job))
        ],
        usage=usage(result),
        videolmm=VideoLMMInfo(
            request_id=job.request_id,
            frames=[list(f) for f in result.frames],
            visual_tokens=result.usage.visual_tokens,
            batch_size=batch_size,
            timings={k: round(v, 6) for k, v in result.timings.items()},
        ),
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
    chunk (``stop`` or ``length``), with ``stream_options.include_usage`` a last chunk with no
    choices and the usage (every earlier chunk then carries ``"usage": null``), and
    ``data: [DONE]``. An error after the stream began is an ``{"error": {...}}`` event (the
    ``openai`` client raises it as an ``APIError``), then ``[DONE]``.
    """

    job: ChatJob
    completion_id: str
    created: int
    include_usage: bool = False

    def _chunk(self, choices: list[ChunkChoice], usage_info: UsageInfo | None = None) -> str:
        chunk = ChatCompletionChunk(
            id=self.completion_id, created=self.created, model=self.job.model_id, choices=choices, usage=usage_info
        )
        return _event(chunk, include_usage=self.include_usage)

    def role(self) -> str:
        """The first event: the assistant role, empty content."""
        return self._chunk([ChunkChoice(delta=Delta(role="assistant", content=""))])

    def content(self, text: str) -> str:
        """A content delta."""
        return self._chunk([ChunkChoice(delta=Delta(content=text))])

    def finish(self, result: Result) -> Iterator[str]:
        """The finish chunk, the usage chunk (``include_usage``) and ``[DONE]``."""
        yield self._chunk([ChunkChoice(delta=Delta(), finish_reason=finish_reason(result, self.job))])
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


__all__ = ["DONE_EVENT", "StreamEvents", "completion", "finish_reason", "stream_events", "to_job", "usage"]
