"""Per-task context shared by the serve modules (kept in an importable module: Ray pickles the
deployment classes by value, and a module-level ``ContextVar`` cannot be pickled)."""

from __future__ import annotations

import contextvars

_batch_request_ids: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar(
    "videolmm_batch_request_ids", default=()
)


def set_batch_request_ids(ids: tuple[str, ...]) -> None:
    """Record the request ids of the batch the current task serves."""
    _batch_request_ids.set(ids)


def batch_request_ids() -> tuple[str, ...]:
    """The request ids of the batch the current task serves (empty outside a batch)."""
    return _batch_request_ids.get()


__all__ = ["batch_request_ids", "set_batch_request_ids"]
