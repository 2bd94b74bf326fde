"""The judge client: any OpenAI-compatible chat endpoint, with retries, a concurrency bound and a cache.

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
``VIDEOLMM_JUDGE_BACKOFF``        first backoff in seconds, doubled per retry up to 30 (default 1)
``VIDEOLMM_JUDGE_CONCURRENCY``    requests in flight per process (default 8)
``VIDEOLMM_JUDGE_CACHE``          SQLite cache file; ``off`` disables it (default
                                  ``$VIDEOLMM_CACHE/judge-cache.sqlite``)
================================  ===========================================================

Retried (bounded, exponential backoff with jitter, ``Retry-After`` honoured up to the cap): HTTP
429, 408, 409 and 5xx, timeouts and connection errors. Other errors (400, 401, 404, ...) fail at
once. A request that still fails is returned as a :class:`JudgeReply` with ``error`` set; nothing
here raises for a failed call. The ``openai`` package is imported on first use only.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
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
RETRY_STATUS = frozenset({408, 409, 429})
BACKOFF_CAP_S = 30.0
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
        backoff_s: first retry delay; doubled per retry up to :data:`BACKOFF_CAP_S`.
        max_concurrency: requests in flight at once in this process.
        cache_path: SQLite cache file, or None for no cache.
    """

    model: str
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = 60.0
    max_attempts: int = 6
    backoff_s: float = 1.0
    max_concurrency: int = 8
    cache_path: str | None = None

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
            backoff_s=_number(env, ENV_PREFIX + "BACKOFF", 1.0, float, 0.0),
            max_concurrency=_number(env, ENV_PREFIX + "CONCURRENCY", 8, int, 1),
            cache_path=cache_path,
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
        attempts: HTTP attempts made for this request (0 for a cache hit).
        error: ``"ErrorType: message"`` when every attempt failed or the call was refused.
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


def _retry_delay(exc: Exception, attempt: int, backoff_s: float) -> float:
    """Exponential backoff with jitter; a server's ``Retry-After`` (seconds) wins up to the cap."""
    response = getattr(exc, "response", None)
    header = response.headers.get("retry-after") if response is not None else None
    if header:
        try:
            return min(BACKOFF_CAP_S, max(0.0, float(header)))
        except ValueError:
            pass
    return min(BACKOFF_CAP_S, backoff_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)


def _retryable(exc: Exception) -> bool:
    import openai

    if isinstance(exc, (openai.APITimeoutError, openai.APIConnectionError)):
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in RETRY_STATUS or exc.status_code >= 500
    return False


class JudgeClient:
    """Calls one judge (one :class:`JudgeSettings`), caching replies and bounding concurrency.

    Thread-safe: lmms-eval's post-processing threads share one client per settings through
    :func:`get_client`.

    Args:
        settings: the judge.
        sleep: how to wait between attempts (injectable for tests of the schedule).
    """

    def __init__(self, settings: JudgeSettings, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings
        self.cache = JudgeCache(settings.cache_path) if settings.cache_path else None
        self._sleep = sleep
        self._slots = threading.BoundedSemaphore(settings.max_concurrency)
        self._lock = threading.Lock()
        self._openai: Any = None

    def __repr__(self) -> str:
        return f"JudgeClient({self.settings!r})"

    def _client(self) -> Any:
        with self._lock:
            if self._openai is None:
                import openai

                if not self.settings.api_key:
                    raise JudgeConfigError(
                        "no judge API key: set VIDEOLMM_JUDGE_API_KEY (or OPENAI_API_KEY), "
                        "or VIDEOLMM_JUDGE_BASE_URL for a server that needs none"
                    )
                self._openai = openai.OpenAI(
                    api_key=self.settings.api_key,
                    base_url=self.settings.base_url,
                    timeout=self.settings.timeout_s,
                    max_retries=0,  # retries are ours: bounded, counted, cached
                )
            return self._openai

    def complete(self, request: JudgeRequest) -> JudgeReply:
        """Ask the judge once (cache first). Never raises for a failed call; see :attr:`JudgeReply.error`."""
        import openai

        model, params = self.settings.model, request.params()
        key = cache_key(model, request.messages, params)
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                return JudgeReply(hit.reply, model, served_model=hit.served_model, cached=True)
        attempts, error = 0, "no attempt made"
        while attempts < self.settings.max_attempts:
            attempts += 1
            try:
                client = self._client()
                with self._slots:
                    response = client.chat.completions.create(
                        model=model, messages=[dict(m) for m in request.messages], **params
                    )
            except JudgeConfigError as exc:
                return JudgeReply(None, model, attempts=0, error=f"{type(exc).__name__}: {exc}")
            except openai.OpenAIError as exc:  # HTTP, timeout and connection errors; anything else is a bug
                error = f"{type(exc).__name__}: {exc}"
                if not _retryable(exc) or attempts == self.settings.max_attempts:
                    break
                delay = _retry_delay(exc, attempts, self.settings.backoff_s)
                logger.info("judge %s: %s; retry %d in %.2fs", model, error, attempts, delay)
                self._sleep(delay)
                continue
            choice = response.choices[0] if response.choices else None
            text = choice.message.content if choice is not None else None
            if text is None:
                error = "EmptyReply: the judge returned no message content"
                break
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
        logger.warning("judge %s failed after %d attempt(s): %s", model, attempts, error)
        return JudgeReply(None, model, attempts=attempts, error=error)

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
