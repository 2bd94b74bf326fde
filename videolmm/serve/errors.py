"""API errors: an HTTP status plus OpenAI's error object, as a value that can cross Ray.

Deployments *return* an :class:`ApiError` instead of raising across a Ray call (exceptions with
custom constructors do not survive pickling reliably); inside a process, code raises
:class:`ServeError` carrying one, and the ingress renders it as ``{"error": {...}}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from videolmm.errors import MediaError, PromptError
from videolmm.serve.protocol import ErrorDetail, ErrorResponse


@dataclass(frozen=True)
class ApiError:
    """An error response.

    Attributes:
        status: HTTP status code.
        message: what went wrong, naming the input and the reason.
        type: OpenAI error type (``invalid_request_error``, ``authentication_error``, ...).
        code: machine-readable code (``too_large``, ``model_not_found``, ...).
        param: the request field at fault, when there is one.
        retry_after_s: seconds a client should wait before retrying (503 only).
    """

    status: int
    message: str
    type: str = "invalid_request_error"
    code: str | None = None
    param: str | None = None
    retry_after_s: float | None = None

    def body(self) -> dict[str, Any]:
        """OpenAI's error envelope, ``{"error": {"message", "type", "param", "code"}}`` (:class:`ErrorResponse`)."""
        detail = ErrorDetail(message=self.message, type=self.type, param=self.param, code=self.code)
        return ErrorResponse(error=detail).model_dump()


class ServeError(Exception):
    """Raised inside a replica; carries the :class:`ApiError` to answer with."""

    def __init__(self, error: ApiError) -> None:
        super().__init__(error.message)
        self.error = error

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.error,))


def bad_request(message: str, *, code: str = "invalid_request", param: str | None = None) -> ServeError:
    """400: the request is well-formed JSON but asks for something invalid."""
    return ServeError(ApiError(400, message, code=code, param=param))


def too_large(message: str, *, param: str | None = None) -> ServeError:
    """413: a payload exceeds a configured size limit."""
    return ServeError(ApiError(413, message, code="too_large", param=param))


def unprocessable(message: str, *, param: str | None = None, code: str = "invalid_value") -> ServeError:
    """400: a field fails validation or exceeds a configured count limit (OpenAI and vLLM answer
    validation errors with 400, not FastAPI's 422)."""
    return ServeError(ApiError(400, message, code=code, param=param))


def unauthorized() -> ServeError:
    """401: missing or wrong API key."""
    return ServeError(
        ApiError(
            401,
            "missing or invalid API key: send 'Authorization: Bearer <key>'",
            type="authentication_error",
            code="invalid_api_key",
        )
    )


def model_not_found(model: str, known: list[str]) -> ServeError:
    """404: the request names a model this app does not serve."""
    return ServeError(
        ApiError(
            404,
            f"model {model!r} does not exist; served models: {', '.join(known)}",
            code="model_not_found",
            param="model",
        )
    )


def overloaded(retry_after_s: float | None, what: str) -> ApiError:
    """503: a deployment's queue is full (by design, under overload)."""
    return ApiError(
        503,
        f"the server is overloaded ({what} queue is full); retry later",
        type="service_unavailable_error",
        code="overloaded",
        retry_after_s=retry_after_s if retry_after_s is not None else 1.0,
    )


def replica_failed(what: str, reason: str, retry_after_s: float = 1.0) -> ApiError:
    """503: the replica working on the request died (killed, out of memory, crashed); safe to retry."""
    return ApiError(
        503,
        f"the {what} replica failed while handling this request ({reason}); retry later",
        type="service_unavailable_error",
        code="replica_failed",
        retry_after_s=retry_after_s,
    )


def internal(message: str) -> ApiError:
    """500: a server-side failure (the message names the stage; never an exception's text)."""
    return ApiError(500, message, type="server_error", code="internal_error")


def internal_error(request_id: str, what: str = "the server") -> ApiError:
    """500 for an unexpected failure: only the stage and the request id, never the exception's text
    (which can hold a traceback, pids, addresses and paths); the traceback is logged with the id."""
    return internal(f"internal error in {what}; the server log has the details under request id {request_id}")


def model_unavailable(model_id: str, reason: str, retry_after_s: float = 5.0) -> ApiError:
    """503: this model cannot serve now (its checkpoint failed to load); the others still can."""
    return ApiError(
        503,
        f"model {model_id!r} is unavailable: {reason}",
        type="service_unavailable_error",
        code="model_unavailable",
        param="model",
        retry_after_s=retry_after_s,
    )


def _subclass_names(cls: type) -> set[str]:
    names = {cls.__name__}
    for sub in cls.__subclasses__():
        names |= _subclass_names(sub)
    return names


def client_error_types() -> frozenset[str]:
    """Core error type names that mean the *request* was bad (400), not the server (500)."""
    return frozenset(_subclass_names(MediaError) | _subclass_names(PromptError))


def from_core_error(error: str, request_id: str = "-") -> ApiError:
    """Map a core ``Result.error`` (``"ErrorType: message"``) to an API error.

    A typed client error (bad media, a prompt the template cannot take, a context overflow) is a
    400 with its message; anything else is the server's own failure: a 500 naming only the request
    id (the caller logs the text).
    """
    kind = error.split(":", 1)[0].strip()
    if kind == "ContextLengthExceeded":  # OpenAI's code for the same refusal
        return ApiError(400, error, code="context_length_exceeded", param="messages")
    if kind in client_error_types():
        return ApiError(400, error, code="invalid_input")
    return internal_error(request_id, "generation")


__all__ = [
    "ApiError",
    "ServeError",
    "bad_request",
    "client_error_types",
    "from_core_error",
    "internal",
    "internal_error",
    "model_not_found",
    "model_unavailable",
    "overloaded",
    "replica_failed",
    "too_large",
    "unauthorized",
    "unprocessable",
]
