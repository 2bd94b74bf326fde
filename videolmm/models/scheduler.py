"""The continuous scheduler: requests join the running batch at step boundaries and leave at their end.

Two drivers over :class:`~videolmm.models.continuous.RunningBatch`:

- :func:`generate_continuous` answers a list of requests (``Engine.generate``, lmms-eval): at
  most ``max_batch_size`` run at once; when one ends, the next waiting request is prefilled and
  joins, so no request waits for the longest answer of a batch;
- :class:`Scheduler` runs a background thread for a server: :meth:`Scheduler.submit` returns a
  :class:`Ticket` at once, text deltas go to the caller's callback as tokens are produced, and
  :meth:`Ticket.cancel` frees the slot at the next step (a client that went away).

Failure isolation: a group whose prefill fails is retried one request at a time, so only the
culprit fails; a failing step fails the requests running in it, and the scheduler goes on.
Beam search (``num_beams > 1``) runs on the static path, alone.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import replace
from typing import Any

from videolmm.models.batch import DecodedRequest, error_text
from videolmm.models.continuous import Row, RunningBatch, row_result
from videolmm.types import Result, Usage

logger = logging.getLogger(__name__)

#: Called with each new piece of a request's text, from the scheduler's thread.
DeltaSink = Callable[[str], None]


def _shape_key(item: DecodedRequest) -> tuple[Any, ...]:
    return (tuple(v.array.shape for v in item.videos), tuple(img.shape for img in item.images))


def _failed(item: DecodedRequest, error: str) -> Result:
    return Result(request_id=item.request.request_id, error=error, timings={"decode": item.decode_seconds})


def _outside(engine: Any, item: DecodedRequest) -> Result | None:
    """The answer of an item that does not join a batch (a failed decode; beam search runs static, alone)."""
    if item.error is not None:
        return _failed(item, item.error)
    return engine.generate_static([item], batch_size=1)[0] if item.request.generation.num_beams > 1 else None


def admit(
    batch: RunningBatch, items: Sequence[DecodedRequest], sinks: Sequence[DeltaSink | None]
) -> list[Row | Result]:
    """Prefill ``items`` into ``batch`` by groups of equal visual shapes; one entry per item: its
    :class:`Row` (running, or already done on its first token) or a failed :class:`Result`."""
    out: list[Row | Result | None] = [None] * len(items)
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, item in enumerate(items):
        groups.setdefault(_shape_key(item), []).append(i)
    for indices in groups.values():
        entries = _admit_isolated(batch, [items[i] for i in indices], [sinks[i] for i in indices])
        for i, entry in zip(indices, entries, strict=True):
            out[i] = entry
    return [entry for entry in out if entry is not None]


def _admit_isolated(batch: RunningBatch, items: list[DecodedRequest], sinks: list[Any]) -> list[Row | Result]:
    try:
        return list(batch.admit(items, sinks))
    except Exception as exc:  # isolate: retry one by one so that only the culprit fails
        if len(items) > 1:
            logger.warning("prefill of %d requests failed (%s); retrying one by one", len(items), error_text(exc))
            return [
                entry
                for item, sink in zip(items, sinks, strict=True)
                for entry in _admit_isolated(batch, [item], [sink])
            ]
        logger.warning("request %s failed: %s", items[0].request.request_id or "-", error_text(exc))
        return [_failed(items[0], error_text(exc))]


def _step(batch: RunningBatch) -> list[Row]:
    """One step; on failure the running rows fail (marked ``error``) and leave."""
    try:
        return batch.step()
    except Exception as exc:
        reason = error_text(exc)
        logger.warning("a generation step of %d requests failed: %s", len(batch), reason)
        for row in batch.rows:
            row.done, row.error = "error", reason
        return batch.drop(range(len(batch.rows)))


def finish(engine: Any, row: Row) -> Result:
    """The result of a finished row; its stream's last delta goes to its sink."""
    if row.done == "error":
        return _failed(row.item, row.error or "generation failed")
    result = row_result(row, row.done or "stop")
    rest = row.stream.finish(result.text or "")
    if rest and row.sink is not None:
        row.sink(rest)
    return result


def generate_continuous(
    engine: Any,
    items: Iterable[DecodedRequest],
    *,
    max_batch_size: int,
    on_result: Callable[[int, Result], None] | None = None,
    min_join: int = 1,
) -> list[Result]:
    """Answer ``items`` with at most ``max_batch_size`` running at once, joining as others leave.

    ``items`` is consumed lazily: the next item is taken only when a slot is free, so a caller can
    decode ahead in threads (lmms-eval's prefetch) while generation runs.

    Args:
        engine: a loaded :class:`~videolmm.models.engine.Engine`.
        items: decoded requests (a failed decode is answered with its error).
        max_batch_size: running requests at most.
        on_result: called with ``(index, result)`` as each request finishes (in finishing order).
        min_join: while requests run, newcomers join only once this many slots are free, so that
            they are prefilled together (throughput: evaluation); 1 admits each at once (latency).

    Returns:
        One :class:`Result` per item, in the items' order.
    """
    source = iter(items)
    results: dict[int, Result] = {}
    count = 0
    batch = RunningBatch(engine)
    index_of: dict[int, int] = {}

    def done(i: int, result: Result) -> None:
        results[i] = result
        if on_result is not None:
            on_result(i, result)

    exhausted = False
    while not exhausted or len(batch):
        room = max(1, max_batch_size) - len(batch)
        if len(batch) and room < min(max(1, min_join), max(1, max_batch_size)):
            room = 0  # wait for more free slots: one prefill for several newcomers
        taken: list[tuple[int, DecodedRequest]] = []
        while room > len(taken) and not exhausted:
            item = next(source, None)
            if item is None:
                exhausted = True
            else:
                taken.append((count, item))
                count += 1
        joining = []
        for i, item in taken:
            if (alone := _outside(engine, item)) is not None:
                done(i, alone)
            else:
                joining.append((i, item))
        if joining:
            entries = admit(batch, [item for _, item in joining], [None] * len(joining))
            for (i, _), entry in zip(joining, entries, strict=True):
                if isinstance(entry, Result):
                    done(i, entry)
                elif entry.done is not None:
                    done(i, finish(engine, entry))
                else:
                    index_of[id(entry)] = i
        for row in _step(batch):
            done(index_of.pop(id(row)), finish(engine, row))
    return [results[i] for i in range(count)]


def _resolve(ticket: Ticket, result: Result) -> None:
    """Set a ticket's result unless its future was cancelled (or already set) by the caller."""
    if not ticket.future.done():
        try:
            ticket.future.set_result(result)
        except Exception:  # cancelled by the caller between the check and the set (InvalidStateError)
            logger.debug("request %s: result dropped, the caller cancelled", ticket.item.request.request_id or "-")


def _fail_all(running: dict[int, Ticket]) -> None:
    for ticket in running.values():
        _resolve(ticket, _failed(ticket.item, "RuntimeError: the scheduler failed"))
    running.clear()


class Ticket:
    """A request submitted to a :class:`Scheduler`.

    Attributes:
        future: resolves to the request's :class:`Result` (also after a cancel: with an error).
    """

    def __init__(self, scheduler: Scheduler, item: DecodedRequest) -> None:
        self.future: Future[Result] = Future()
        self.item = item
        self._scheduler = scheduler
        self.submitted = time.perf_counter()
        #: set by :meth:`cancel`; the scheduler drops the request at its next step
        self.cancelled = flag = threading.Event()
        # a caller that cancels the future (asyncio.wrap_future on a cancelled task) cancels the request; through the
        # flag, not self: a ticket ↔ future cycle would hold the frames (in Serve, object-store buffers) until a GC
        # pass, and fill the store (issue 14's decode-heavy stall)
        self.future.add_done_callback(lambda f: scheduler._cancel(flag) if f.cancelled() else None)

    def cancel(self) -> None:
        """Stop generating for this request at the next step and free its slot."""
        self._scheduler._cancel(self.cancelled)

    def result(self, timeout: float | None = None) -> Result:
        """Block until the request's result is ready."""
        return self.future.result(timeout)


class Scheduler:
    """A background thread running one engine's continuous batch for concurrent callers.

    Args:
        engine: a loaded engine.
        max_batch_size: running requests at most; the rest wait their turn in arrival order.
        on_step: optional ``(running, waiting)`` callback after every step (metrics).
    """

    def __init__(self, engine: Any, *, max_batch_size: int = 8, on_step: Callable[[int, int], None] | None = None):
        self.engine = engine
        self.max_batch_size = max(1, int(max_batch_size))
        self.on_step = on_step
        self._inbox: queue.SimpleQueue[tuple[Ticket, DeltaSink | None] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, item: DecodedRequest, on_delta: DeltaSink | None = None) -> Ticket:
        """Queue a decoded request; ``on_delta`` receives its text as it is produced."""
        if self._closed:
            raise RuntimeError("the scheduler is closed")
        ticket = Ticket(self, item)
        self._inbox.put((ticket, on_delta))
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="videolmm-scheduler", daemon=True)
                self._thread.start()
        return ticket

    def close(self) -> None:
        """Stop the thread after the running requests (new submissions are refused)."""
        self._closed = True
        self._inbox.put(None)

    def _cancel(self, flag: threading.Event) -> None:
        flag.set()
        self._inbox.put(None)  # wake the thread if it is idle

    def _run(self) -> None:
        batch = RunningBatch(self.engine)
        waiting: deque[tuple[Ticket, DeltaSink | None]] = deque()
        running: dict[int, Ticket] = {}
        # stages are methods: no local here keeps a finished request's frames alive while the thread waits
        while self._receive(waiting, block=not waiting and not len(batch)) or waiting or len(batch):
            try:
                self._drop_cancelled(batch, waiting, running)
                self._admit(batch, waiting, running)
                self._advance(batch, running)
            except Exception:  # never lose the thread: fail what runs and go on
                logger.exception("scheduler loop failed; failing %d running requests", len(running))
                _fail_all(running)
                batch = RunningBatch(self.engine)
            if self.on_step is not None:
                try:
                    self.on_step(len(batch), len(waiting))
                except Exception:  # a metrics callback never stops the scheduler
                    logger.exception("scheduler on_step callback failed")

    def _receive(self, waiting: deque, *, block: bool) -> bool:
        """Move submissions to ``waiting`` (first waiting for one when ``block``); False once closed and idle."""
        if block and self._closed:
            return False
        try:
            entry = self._inbox.get(block=block)
            while True:
                if entry is not None:
                    waiting.append(entry)
                elif self._closed:
                    return False
                entry = self._inbox.get_nowait()
        except queue.Empty:
            return True

    def _advance(self, batch: RunningBatch, running: dict[int, Ticket]) -> None:
        for row in _step(batch):
            _resolve(running.pop(id(row)), finish(self.engine, row))

    def _drop_cancelled(self, batch: RunningBatch, waiting: deque, running: dict[int, Ticket]) -> None:
        for entry in [e for e in waiting if e[0].cancelled.is_set()]:
            waiting.remove(entry)
            _resolve(entry[0], _failed(entry[0].item, "RequestCancelled: the client went away"))
        gone = [i for i, row in enumerate(batch.rows) if running[id(row)].cancelled.is_set()]
        for row in batch.drop(gone):
            ticket = running.pop(id(row))
            failed = _failed(ticket.item, "RequestCancelled: the client went away")
            _resolve(ticket, replace(failed, usage=Usage(row.prompt_tokens, len(row.ids), row.visual_tokens)))

    def _admit(self, batch: RunningBatch, waiting: deque, running: dict[int, Ticket]) -> None:
        room = self.max_batch_size - len(batch)
        if room <= 0 or not waiting:
            return
        taken = [waiting.popleft() for _ in range(min(room, len(waiting)))]
        joining = []
        for ticket, sink in taken:
            if (alone := _outside(self.engine, ticket.item)) is not None:
                _resolve(ticket, alone)
            else:
                joining.append((ticket, sink))
        if not joining:
            return
        entries = admit(batch, [t.item for t, _ in joining], [s for _, s in joining])
        for (ticket, _), entry in zip(joining, entries, strict=True):
            if isinstance(entry, Result):
                _resolve(ticket, entry)
            elif entry.done is not None:
                _resolve(ticket, finish(self.engine, entry))
            else:
                running[id(entry)] = ticket


__all__ = ["DeltaSink", "Scheduler", "Ticket", "admit", "finish", "generate_continuous"]
