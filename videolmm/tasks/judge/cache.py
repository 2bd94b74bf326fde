"""A persistent judge-reply cache in SQLite, safe for concurrent writers.

Keyed by the judge's base URL, its model id and the full request (messages and sampling parameters), so a
re-run with the same judge makes zero calls and a different judge or prompt never hits another's
entry. Only successful replies are stored; a failed call is retried on the next run.

Concurrency: the database runs in WAL mode (readers never block the writer); every operation
opens its own short-lived connection with a busy timeout, and a ``database is locked`` error is
retried a bounded number of times. Several processes (``accelerate launch`` ranks, parallel runs)
and threads can share one file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS judge_replies (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    request TEXT NOT NULL,
    reply TEXT NOT NULL,
    served_model TEXT,
    base_url TEXT,
    created REAL NOT NULL
)
"""


def cache_key(
    model: str,
    messages: Sequence[Mapping[str, str]],
    params: Mapping[str, Any],
    *,
    base_url: str | None = None,
) -> str:
    """SHA-256 over the canonical JSON of (judge base URL, judge model, messages, sampling parameters).

    The base URL is part of the key: the same model id served by two endpoints (OpenAI and a local
    proxy, two vLLM servers) are two judges. ``None`` stands for the SDK's default (OpenAI).
    """
    where = base_url.rstrip("/") if base_url else None
    payload = json.dumps(
        {"base_url": where, "model": model, "messages": [dict(m) for m in messages], "params": dict(params)},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CachedReply:
    """A stored judge reply.

    Attributes:
        reply: the judge's text.
        model: the judge model id the request named.
        served_model: the model id the server reported, if any.
        base_url: where the reply came from (also part of the key).
    """

    reply: str
    model: str
    served_model: str | None
    base_url: str | None


class JudgeCache:
    """SQLite store of judge replies.

    Args:
        path: database file (its folder is created).
        busy_timeout_s: how long one statement waits for a lock.
        lock_retries: how many more times a statement is tried after ``database is locked``.
    """

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 30.0, lock_retries: int = 5) -> None:
        self.path = Path(path).expanduser()
        self.busy_timeout_s = float(busy_timeout_s)
        self.lock_retries = int(lock_retries)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._run(self._init_db)

    def __repr__(self) -> str:
        return f"JudgeCache({str(self.path)!r})"

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)

    def _run(self, operation: Any) -> Any:
        """Run ``operation(conn)`` on a fresh connection, retrying a bounded number of lock errors."""
        for attempt in range(self.lock_retries + 1):
            conn = self._connect()
            try:
                return operation(conn)
            except sqlite3.OperationalError as exc:
                locked = "locked" in str(exc) or "busy" in str(exc)
                if not locked or attempt == self.lock_retries:
                    raise
                logger.warning("judge cache %s is locked (%s); retry %d", self.path, exc, attempt + 1)
                time.sleep(min(2.0, 0.05 * 2**attempt))
            finally:
                conn.close()
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _init_db(conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(_SCHEMA)

    def get(self, key: str) -> CachedReply | None:
        """The stored reply for ``key``, or None."""

        def read(conn: sqlite3.Connection) -> CachedReply | None:
            row = conn.execute(
                "SELECT reply, model, served_model, base_url FROM judge_replies WHERE key = ?", (key,)
            ).fetchone()
            return CachedReply(*row) if row else None

        return self._run(read)

    def put(
        self,
        key: str,
        *,
        model: str,
        request: Mapping[str, Any],
        reply: str,
        served_model: str | None = None,
        base_url: str | None = None,
    ) -> None:
        """Store a successful reply (the first writer of a key wins; later writes are ignored)."""
        row = (key, model, json.dumps(dict(request), ensure_ascii=False), reply, served_model, base_url, time.time())

        def write(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT OR IGNORE INTO judge_replies VALUES (?, ?, ?, ?, ?, ?, ?)", row)

        self._run(write)

    def __len__(self) -> int:
        return int(self._run(lambda conn: conn.execute("SELECT COUNT(*) FROM judge_replies").fetchone()[0]))


__all__ = ["CachedReply", "JudgeCache", "cache_key"]
