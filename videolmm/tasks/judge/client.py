"""The judge client: any OpenAI-compatible chat endpoint, with retries, a circuit breaker, a concurrency
bound and a cache.

Where the judge is comes from the environment, read when a client is asked for (never at
import), so the same task can be judged by OpenAI, a proxy, a local vLLM / videolmm Serve app or
a test server:

================================  ===========================================================
``VIDEOLMM_JUDGE_MODEL``          judge model id; else lmms-eval's ``MODEL_VERSION``; else the
                                  protocol's seed judge
``VIDEOLMM_JUDGE_BASE_URL``       e.g. ``http://127.0.0.1:8000/v1``; else lmms-eval's
                                  ``OPENAI_API_URL`` (a full ``.../chat/completions`` URL, its
                                  base is derived); else ``OPENAI_BASE_URL``; else OpenAI
``VIDEOLMM_JUDGE_API_KEY``        else ``OPENAI_API_KEY``; else ``EMPTY`` when a base URL is set
``VIDEOLMM_JUDGE_TIMEOUT``        seconds per request (default 60)
``VIDEOLMM_JUDGE_MAX_ATTEMPTS``   attempts per request, retries included (default 6)
``VIDEOLMM_JUDGE_BACKOFF``        first backoff in seconds (default 0.5, the SDK's); the SDK's
                                  schedule (doubled per retry, jittered) is scaled to it, capped
                                  at 30 s
``VIDEOLMM_JUDGE_BREAKER``        consecutive failed calls that open the circuit breaker
                                  (default 5; ``0`` disables it)
``VIDEOLMM_JUDGE_CONCURRENCY``    requests in flight per process (default 8)
``VIDEOLMM_JUDGE_CACHE``          SQLite cache file; ``off`` disables it (default
                                  ``$VIDEOLMM_CACHE/judge-cache.sqlite``)
================================  ===========================================================

Retries are the ``openai`` SDK's own (``max_retries``): HTTP 429, 408, 409 and 5xx, timeouts and
connection errors, with its exponential backoff and ``Retry-After`` handling. Other errors (400,
401, 404, ...) fail at once. The attempts a call took are read back from the SDK
(``x-stainless-retry-count`` on the last request sent, ``retries_taken`` on a reply). A request
that still fails is returned as a :class:`JudgeReply` with ``error`` set; nothing here raises for
a failed call.

**Circuit breaker.** After ``VIDEOLMM_JUDGE_BREAKER`` consecutive calls that failed for a reason
that is not about the one request (connection, timeout, 5xx, 429, 401/403/404), the client stops
calling: every later request is answered at once with a ``JudgeCircuitOpen`` error (counted as a
judge failure by the task, with no HTTP attempt), and the opening is logged once at ERROR. A
judge that is down costs K calls' retries, not minutes per remaining doc. The breaker stays open
for the life of the client (one eval run); a successful call before it opens resets the count.
The ``openai`` package is imported on first use only.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from videolmm.tasks.judge.cache import JudgeCache, cache_key

logger = logging.getLogger(__name__)

ENV_PREFIX = "VIDEOLMM_JUDGE_"
#: lmms-eval's judge variables (its GPT-judged tasks read these), honoured as fallbacks.
LMMS_EVAL_URL_ENV = "OPENAI_API_URL"
LMMS_EVAL_MODEL_ENV = "MODEL_VERSION"
BACKOFF_CAP_S = 30.0
#: The SDK's first retry delay (``openai._constants.INITIAL_RETRY_DELAY``); ``backoff_s`` scales from it.
SDK_INITIAL_BACKOFF_S = 0.5
#: Failures that say nothing about the judge as a whole (one request refused) and never trip the breaker.
REQUEST_ERRORS = ("BadRequestError", "UnprocessableEntityError", "ConflictError", "EmptyReply")
NO_KEY = "EMPTY"


class JudgeConfigError(ValueError):
    """A judge setting is missing or malformed (the message names the variable)."""


def _base_from_chat_url(url: str) -> str:
    """``https://host/v1/chat/completions`` → ``https://host/v1`` (lmms-eval's ``OPENAI_API_URL``)."""
    url = url.strip().rstrip("/")
    suffix = "/chat/completions"
    return url[: -len(suffix)] if url.endswith(suffix) else url


def _number(env: Mapping[str, str], name: str, default: float, kind: Callable[[str], float], low: float) -> Any:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise JudgeConfigError(f"{name}={raw!r} is not a valid {kind.__name__}") from None
    if value < low:
        raise JudgeConfigError(f"{name}={raw!r} must be >= {low}")
    return value


def default_cache_path(env: Mapping[str, str]) -> str:
    """``$VIDEOLMM_CACHE/judge-cache.sqlite`` (default ``~/.cache/videolmm/judge-cache.sqlite``)."""
    root = env.get("VIDEOLMM_CACHE") or str(Path.home() / ".cache" / "videolmm")
    return str(Path(root).expanduser() / "judge-cache.sqlite")


@dataclass(frozen=True)
class JudgeSettings:
    """Where and how to call the judge.

    Attributes:
        model: judge model id (recorded with every score).
        base_url: OpenAI-compatible base URL (``.../v1``), or None for OpenAI's.
        api_key: bearer token (kept out of ``repr``).
        timeout_s: seconds per HTTP request.
        max_attempts: attempts per request, the first included.
        backoff_s: first retry delay; the SDK's schedule (doubled per retry, jittered) scaled to
            it, each delay capped at :data:`BACKOFF_CAP_S`; a server's ``Retry-After`` wins.
        max_concurrency: requests in flight at once in this process.
        cache_path: SQLite cache file, or None for no cache.
        breaker_threshold: consecutive judge-level failures that open the circuit breaker
            (0: never).
    """

    model: str
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = 60.0
    max_attempts: int = 6
    backoff_s: float = SDK_INITIAL_BACKOFF_S
    max_concurrency: int = 8
    cache_path: str | None = None
    breaker_threshold: int = 5

    @classmethod
    def from_env(cls, default_model: str, env: Mapping[str, str] | None = None) -> JudgeSettings:
        """Resolve the settings from ``env`` (default: ``os.environ``) at call time.

        Args:
            default_model: the protocol's seed judge, used when no variable names a model.
            env: the variables to read.

        Raises:
            JudgeConfigError: a numeric variable is malformed or out of range.
        """
        env = os.environ if env is None else env
        model = env.get(ENV_PREFIX + "MODEL") or env.get(LMMS_EVAL_MODEL_ENV) or default_model
        base_url = env.get(ENV_PREFIX + "BASE_URL") or None
        if base_url is None and env.get(LMMS_EVAL_URL_ENV):
            base_url = _base_from_chat_url(env[LMMS_EVAL_URL_ENV])
        base_url = base_url or env.get("OPENAI_BASE_URL") or None
        api_key = env.get(ENV_PREFIX + "API_KEY") or env.get("OPENAI_API_KEY") or (NO_KEY if base_url else None)
        cache = env.get(ENV_PREFIX + "CACHE")
        if cache is None or cache.strip() == "":
            cache_path: str | None = default_cache_path(env)
        elif cache.strip().lower() in ("off", "none", "0", "false"):
            cache_path = None
        else:
            cache_path = str(Path(cache).expanduser())
        return cls(
            model=model,
            base_url=base_url.rstrip("/") if base_url else None,
            api_key=api_key,
            timeout_s=_number(env, ENV_PREFIX + "TIMEOUT", 60.0, float, 0.001),
            max_attempts=_number(env, ENV_PREFIX + "MAX_ATTEMPTS", 6, int, 1),
            backoff_s=_number(env, ENV_PREFIX + "BACKOFF", SDK_INITIAL_BACKOFF_S, float, 0.0),
            max_concurrency=_number(env, ENV_PREFIX + "CONCURRENCY", 8, int, 1),
            cache_path=cache_path,
            breaker_threshold=_number(env, ENV_PREFIX + "BREAKER", 5, int, 0),
        )


@dataclass(frozen=True)
class JudgeRequest:
    """One chat request to the judge.

    Attributes:
        messages: ``({"role": ..., "content": ...}, ...)``.
        temperature: sampling temperature.
        top_p: ``top_p``, or None to leave it out.
    """

    messages: tuple[Mapping[str, str], ...]
    temperature: float = 0.0
    top_p: float | None = None

    def params(self) -> dict[str, float]:
        """The sampling parameters sent (and keyed in the cache)."""
        out = {"temperature": self.temperature}
        if self.top_p is not None:
            out["top_p"] = self.top_p
        return out


@dataclass(frozen=True)
class JudgeReply:
    """The judge's answer to one request, or why there is none.

    Attributes:
        text: the reply text, or None when the call failed.
        model: the judge model id the request named.
        served_model: the model id the server reported (None from cache entries without one).
        cached: True when the reply came from the cache (no call made).
        attempts: HTTP attempts made for this request (0 for a cache hit or an open breaker).
        error: ``"ErrorType: message"`` when every attempt failed or the call was refused
            (``"JudgeCircuitOpen: ..."`` when the breaker answered without calling).
    """

    text: str | None
    model: str
    served_model: str | None = None
    cached: bool = False
    attempts: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when there is a reply text."""
        return self.text is not None and self.error is None


@functools.cache
def _sdk_client_class() -> type:
    """``openai.OpenAI`` whose retry delays are scaled to ``backoff_s`` (built on first use)."""
    import openai

    class JudgeOpenAI(openai.OpenAI):
        """The SDK client; only the length of its backoff differs (``Retry-After`` still wins)."""

        backoff_scale = 1.0

        def _calculate_retry_timeout(
            self, remaining_retries: int, options: Any, response_headers: Any = None
        ) -> float:
            delay = super()._calculate_retry_timeout(remaining_retries, options, response_headers)
            retry_after = self._parse_retry_after_header(response_headers)
            if retry_after is not None and 0 < retry_after <= delay:  # the server's delay, as the SDK chose it
                return delay
            return min(BACKOFF_CAP_S, delay * self.backoff_scale)

    return JudgeOpenAI


def _attempts(exc: Exception) -> int:
    """HTTP attempts behind a failed SDK call: the SDK stamps ``x-stainless-retry-count`` on each request."""
    request = getattr(exc, "request", None)
    count = request.headers.get("x-stainless-retry-count") if request is not None else None
    return int(count) + 1 if count is not None and count.isdigit() else 1


class JudgeClient:
    """Calls one judge (one :class:`JudgeSettings`), caching replies and bounding concurrency.

    Thread-safe: lmms-eval's post-processing threads share one client per settings through
    :func:`get_client` (and so share its circuit breaker).

    Args:
        settings: the judge.
    """

    def __init__(self, settings: JudgeSettings) -> None:
        self.settings = settings
        self.cache = JudgeCache(settings.cache_path) if settings.cache_path else None
        self._slots = threading.BoundedSemaphore(settings.max_concurrency)
        self._lock = threading.Lock()
        self._openai: Any = None
        self._consecutive_failures = 0
        self._open_reason: str | None = None
        #: requests answered by the open breaker without a call (for logs and tests)
        self.short_circuited = 0

    def __repr__(self) -> str:
        return f"JudgeClient({self.settings!r})"

    @property
    def breaker_open(self) -> bool:
        """True once the breaker stopped calling the judge."""
        return self._open_reason is not None

    def _client(self) -> Any:
        with self._lock:
            if self._openai is None:
                if not self.settings.api_key:
                    raise JudgeConfigError(
                        "no judge API key: set VIDEOLMM_JUDGE_API_KEY (or OPENAI_API_KEY), "
                        "or VIDEOLMM_JUDGE_BASE_URL for a server that needs none"
                    )
                client = _sdk_client_class()(
                    api_key=self.settings.api_key,
                    base_url=self.settings.base_url,
                    timeout=self.settings.timeout_s,
                    max_retries=self.settings.max_attempts - 1,
                )
                client.backoff_scale = self.settings.backoff_s / SDK_INITIAL_BACKOFF_S
                self._openai = client
            return self._openai

    def _record(self, error: str | None) -> None:
        """Count a finished call toward the breaker (``error`` None: it succeeded)."""
        threshold = self.settings.breaker_threshold
        with self._lock:
            if error is None:
                self._consecutive_failures = 0
                return
            if error.split(":", 1)[0] in REQUEST_ERRORS:
                return
            self._consecutive_failures += 1
            if threshold and self._open_reason is None and self._consecutive_failures >= threshold:
                where = self.settings.base_url or "the OpenAI API"
                self._open_reason = (
                    f"JudgeCircuitOpen: the judge at {where} failed {self._consecutive_failures} consecutive "
                    f"calls (VIDEOLMM_JUDGE_BREAKER={threshold}); not called again in this run. Last error: {error}"
                )
                logger.error("judge circuit breaker open: %s", self._open_reason)

    def _short_circuit(self, model: str) -> JudgeReply | None:
        with self._lock:
            if self._open_reason is None:
                return None
            self.short_circuited += 1
            return JudgeReply(None, model, attempts=0, error=self._open_reason)

    def complete(self, request: JudgeRequest) -> JudgeReply:
        """Ask the judge once (cache first). Never raises for a failed call; see :attr:`JudgeReply.error`."""
        import openai

        model, params = self.settings.model, request.params()
        key = cache_key(model, request.messages, params, base_url=self.settings.base_url)
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                return JudgeReply(hit.reply, model, served_model=hit.served_model, cached=True)
        refused = self._short_circuit(model)
        if refused is not None:
            return refused
        try:
            client = self._client()
            with self._slots:
                raw = client.chat.completions.with_raw_response.create(
                    model=model, messages=[dict(m) for m in request.messages], **params
                )
                response = raw.parse()
        except JudgeConfigError as exc:
            return JudgeReply(None, model, attempts=0, error=f"{type(exc).__name__}: {exc}")
        except openai.OpenAIError as exc:  # HTTP, timeout and connection errors; anything else is a bug
            error, attempts = f"{type(exc).__name__}: {exc}", _attempts(exc)
            logger.warning("judge %s failed after %d attempt(s): %s", model, attempts, error)
            self._record(error)
            return JudgeReply(None, model, attempts=attempts, error=error)
        attempts = raw.retries_taken + 1
        choice = response.choices[0] if response.choices else None
        text = choice.message.content if choice is not None else None
        if text is None:
            self._record(None)  # the judge is up; this request got no content
            return JudgeReply(
                None, model, attempts=attempts, error="EmptyReply: the judge returned no message content"
            )
        self._record(None)
        if self.cache is not None:
            request_record = {"messages": [dict(m) for m in request.messages], **params}
            self.cache.put(
                key,
                model=model,
                request=request_record,
                reply=text,
                served_model=response.model,
                base_url=self.settings.base_url,
            )
        return JudgeReply(text, model, served_model=response.model, attempts=attempts)

    def complete_many(self, requests: Sequence[JudgeRequest]) -> list[JudgeReply]:
        """:meth:`complete` over many requests in a thread pool of ``max_concurrency`` workers, in order."""
        if not requests:
            return []
        with ThreadPoolExecutor(self.settings.max_concurrency, thread_name_prefix="videolmm-judge") as pool:
            return list(pool.map(self.complete, requests))


_CLIENTS: dict[JudgeSettings, JudgeClient] = {}
_CLIENTS_LOCK = threading.Lock()


def get_client(settings: JudgeSettings) -> JudgeClient:
    """The process-wide client for ``settings`` (one concurrency bound and HTTP pool per judge)."""
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(settings)
        if client is None:
            client = _CLIENTS[settings] = JudgeClient(settings)
        return client


__all__ = [
    "JudgeClient",
    "JudgeConfigError",
    "JudgeReply",
    "JudgeRequest",
    "JudgeSettings",
    "get_client",
]
