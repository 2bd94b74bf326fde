"""What the ingress checks before a request reaches the model: the body, its JSON, its size and shape.

Every check answers with an :class:`~videolmm.serve.errors.ApiError` that names the field or
header and the reason, and bounds the work a request can cause before any of it is done:

* :func:`read_body`: ``limits.max_request_bytes`` (413), read as it streams in;
* :class:`InflightBytes`: ``limits.max_inflight_bytes``, the bodies one ingress replica holds at
  once (503 with ``Retry-After``, as a full queue is);
* :func:`parse_request`: JSON (400, nesting depth and ``NaN``/``Infinity`` included), then the
  pydantic request (400, naming the field);
* :func:`check_request`: stop strings (count and length), messages, content parts, prompt
  characters and ``media_io_kwargs.video.fps``;
* :func:`host_allowed`: the ``Host`` header while no API key is set (DNS rebinding);
* :func:`request_id`: a client's ``x-request-id`` is used only when it is short and plain.

Pure functions over FastAPI's request: no Ray here (the ingress deployment wraps them).
"""

from __future__ import annotations

import json
import math
import re
import uuid
from typing import TYPE_CHECKING

from pydantic import ValidationError

from videolmm.serve.config import LimitsConfig
from videolmm.serve.errors import ApiError, ServeError, bad_request, too_large, unprocessable
from videolmm.serve.protocol import ChatCompletionRequest, TextPart, UnrecognizedArgument

if TYPE_CHECKING:
    from starlette.requests import Request

#: The sampling rates ``media_io_kwargs.video.fps`` may ask for (frames per second).
FPS_RANGE = (0.01, 240.0)
#: A client's ``x-request-id`` is kept only if it matches this (else a fresh id is used).
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


async def read_body(request: Request, limit: int, hold: BodyHold | None = None) -> bytes:
    """The request body, refused with 413 as soon as it exceeds ``limit`` bytes.

    With ``hold``, the body's bytes are counted against the replica's in-flight budget as they
    arrive (the declared ``Content-Length`` at once, before reading); the caller closes it.
    """
    declared = request.headers.get("content-length")
    known = declared is not None and declared.isdigit()
    if known and int(declared) > limit:
        raise too_large(f"request body is {declared} bytes; the limit is {limit}")
    if hold is not None and known:
        hold.add(int(declared))
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise too_large(f"request body exceeds the limit of {limit} bytes")
        if hold is not None and not known:
            hold.add(len(chunk))
        chunks.append(chunk)
    return b"".join(chunks)


class InflightBytes:
    """The request-body bytes one ingress replica holds at once (``limits.max_inflight_bytes``).

    One per replica, used from its event loop only (no lock needed). Each request opens a
    :class:`BodyHold`, adds its declared ``Content-Length`` before reading the body (a streamed
    body, chunk by chunk) and closes it when it is answered; an addition that would pass the
    limit is refused with 503 ``overloaded`` and ``Retry-After``, as vLLM and OpenAI answer an
    overloaded server.
    """

    def __init__(self, limit: int, retry_after_s: float = 1.0) -> None:
        self.limit = limit
        self.retry_after_s = retry_after_s
        self.held = 0

    def hold(self) -> BodyHold:
        """A new request's share of the budget (empty until it adds bytes)."""
        return BodyHold(self)


class BodyHold:
    """One request's bytes in an :class:`InflightBytes` budget; :meth:`close` gives them back."""

    def __init__(self, budget: InflightBytes) -> None:
        self.budget = budget
        self.bytes = 0

    def add(self, n: int) -> None:
        """Hold ``n`` more bytes; 503 ``overloaded`` if the replica would hold more than its limit."""
        budget = self.budget
        if budget.held + n > budget.limit:
            raise ServeError(
                ApiError(
                    503,
                    f"the server holds {budget.held} bytes of request bodies and this one ({self.bytes + n} bytes) "
                    f"would pass limits.max_inflight_bytes={budget.limit}; retry later",
                    type="service_unavailable_error",
                    code="overloaded",
                    param="limits.max_inflight_bytes",
                    retry_after_s=budget.retry_after_s,
                )
            )
        budget.held += n
        self.bytes += n

    def close(self) -> None:
        """Give the bytes back (idempotent)."""
        self.budget.held = max(0, self.budget.held - self.bytes)
        self.bytes = 0


def check_content_type(value: str | None) -> None:
    """Refuse (415) a body that is not declared JSON: ``application/json`` or ``application/*+json``.

    Browsers send ``text/plain``, form and multipart bodies cross-origin without a preflight, so
    accepting them would let any web page drive a server on localhost that has no API key.
    """
    media_type = (value or "").split(";", 1)[0].strip().lower()
    if media_type == "application/json" or (media_type.startswith("application/") and media_type.endswith("+json")):
        return
    raise ServeError(
        ApiError(
            415,
            f"request body must be JSON (Content-Type: application/json), got {value or 'no Content-Type'!r}"[:300],
            code="unsupported_media_type",
        )
    )


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def parse_request(body: bytes) -> ChatCompletionRequest:
    """Validate a chat-completions body: 400 for bad JSON, for a parameter OpenAI does not have, and
    naming each invalid field.

    Nesting too deep for the parser (``[[[[...``), ``NaN``/``Infinity`` (not JSON, though Python
    reads them) and integers of thousands of digits are bad JSON (400), never a 500.
    """
    try:
        data = json.loads(body, parse_constant=_no_constant)
    except RecursionError as exc:
        raise bad_request("request body is not valid JSON (nested too deeply)", code="invalid_json") from exc
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError, NaN, over-long integers
        raise bad_request(f"request body is not valid JSON ({str(exc)[:200]})", code="invalid_json") from exc
    if not isinstance(data, dict):
        raise bad_request("request body must be a JSON object", code="invalid_json")
    try:
        return ChatCompletionRequest.model_validate(data)
    except RecursionError as exc:
        raise bad_request("request body is nested too deeply", code="invalid_json") from exc
    except ValidationError as exc:
        errors = exc.errors(include_input=False, include_url=False)
        unknown = (errors[0].get("ctx") or {}).get("error")
        if isinstance(unknown, UnrecognizedArgument):  # as OpenAI answers a parameter it does not have
            raise bad_request(str(unknown), param=unknown.name, code="unrecognized_argument") from exc
        param = ".".join(str(p) for p in errors[0]["loc"]) or None
        details = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in errors[:8])
        raise unprocessable(details[:2000], param=param) from exc


def check_request(req: ChatCompletionRequest, limits: LimitsConfig) -> None:
    """The request's size and shape against ``limits`` (before any media or model work).

    Raises:
        ServeError: 400 ``stop`` longer than ``max_stop_chars`` or ``fps`` outside
            :data:`FPS_RANGE`; 413 more than ``max_prompt_chars`` of text; 400 more than
            ``max_messages`` messages or ``max_content_parts`` content parts.
    """
    for i, stop in enumerate(req.stop_list):
        if len(stop) > limits.max_stop_chars:
            raise bad_request(
                f"stop[{i}] is {len(stop)} characters; a stop sequence may have at most {limits.max_stop_chars}",
                param="stop",
                code="invalid_value",
            )
    if len(req.messages) > limits.max_messages:
        raise unprocessable(
            f"{len(req.messages)} messages in one request; the limit is {limits.max_messages}", param="messages"
        )
    parts = chars = 0
    for message in req.messages:
        if isinstance(message.content, str):
            chars += len(message.content)
        elif message.content is not None:
            parts += len(message.content)
            chars += sum(len(p.text) for p in message.content if isinstance(p, TextPart))
    if parts > limits.max_content_parts:
        raise unprocessable(
            f"{parts} content parts in one request; the limit is {limits.max_content_parts}", param="messages"
        )
    if chars > limits.max_prompt_chars:
        raise too_large(
            f"the messages hold {chars} characters of text; the limit is {limits.max_prompt_chars}", param="messages"
        )
    video = req.video_kwargs
    if video is not None and video.fps is not None:
        low, high = FPS_RANGE
        if not (math.isfinite(video.fps) and low <= video.fps <= high):
            raise bad_request(
                f"{req.video_param('fps')}={video.fps:g} is outside {low:g}..{high:g} frames per second",
                param=req.video_param("fps"),
                code="invalid_value",
            )


def _host_name(host: str) -> str:
    """A ``Host`` header without its port, lower-cased (``[::1]:8000`` → ``[::1]``)."""
    host = host.strip().lower().rstrip(".")
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def host_allowed(host: str | None, allowed: tuple[str, ...]) -> bool:
    """Whether a ``Host`` header names an allowed host (any port); ``*`` in ``allowed`` allows any."""
    if "*" in allowed:
        return True
    if not host:
        return False
    name = _host_name(host)
    return name in {_host_name(a) for a in allowed}


def check_host(host: str | None, allowed: tuple[str, ...]) -> None:
    """Refuse (421 ``misdirected_request``) a ``Host`` that is not on ``security.allowed_hosts``.

    Applied while no API key is set: a page on another site whose name re-resolves to
    127.0.0.1 (DNS rebinding) reaches the server with its own name in ``Host``.
    """
    if not host_allowed(host, allowed):
        shown = (host or "")[:100]
        raise ServeError(
            ApiError(
                421,
                f"Host {shown!r} is not on security.allowed_hosts (a server without an API key answers only "
                "those names, against DNS rebinding); list it there or set an API key",
                code="misdirected_request",
                param="Host",
            )
        )


def request_id(header: str | None) -> str:
    """The request's id: the client's ``x-request-id`` if it is 1–64 of ``[A-Za-z0-9._:-]``, else a new one."""
    if header and REQUEST_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


__all__ = [
    "FPS_RANGE",
    "BodyHold",
    "InflightBytes",
    "check_content_type",
    "check_host",
    "check_request",
    "host_allowed",
    "parse_request",
    "read_body",
    "request_id",
]
