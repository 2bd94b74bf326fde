"""Decode processes that serve the first decodes while the model loads in the evaluation process.

The model load is Python-bound while it imports the family's modules and builds the model (all of it
for a small checkpoint), so it holds the GIL nearly all the time. A decode thread beside it hands the
GIL back and forth at every FFmpeg call (a few hundred per clip: the packet index, every packet sent,
every frame received) and waits up to the switch interval each time: measured, a 23 ms decode took
175-230 ms beside a busy Python thread, and each hand-over delays the load as well (docs/benchmarks.md,
*Eval throughput*). A process has its own interpreter: beside the load it decodes at full speed on a
core the load leaves, and hands over one pickled result per request.

:class:`ForkedDecoders` forks its processes in the model's constructor, after the decoder is warmed
and before the load thread starts (so no thread of ours runs at the fork, and each child has the media
modules imported and the model's media settings, registry and frame cache). ``generate_until`` routes
the decodes it starts while the load runs to them (:class:`~videolmm.eval.prefetch.DecodePipeline`'s
``load_decode``) and retires them when the load ends; the decodes after it run in threads as before.
Frames are the same either way: the child runs the very same :meth:`EarlyMedia.decode
<videolmm.eval.prefetch.EarlyMedia.decode>`. A child that dies (a crash inside FFmpeg) or a request
that does not pickle falls back to decoding in the calling thread, so no sample is lost.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import signal
import sys
import threading
from dataclasses import asdict
from multiprocessing.connection import Connection
from typing import Any

from videolmm.media.cores import READS_IN_FLIGHT
from videolmm.models.engine import DecodedRequest

logger = logging.getLogger(__name__)


def fork_available() -> bool:
    """Whether decode processes can be forked here (Linux: ``fork`` is safe with the media libraries;
    macOS and Windows would need ``spawn``, which re-imports everything and is not worth it for a load)."""
    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()


def _serve(media: Any, conn: Connection, hold: int) -> None:
    """The child's loop: decode each request received, send back its :class:`DecodedRequest`; stop at
    None or when the parent's end closes. ``hold`` cores are held from the child's reads (the parent's
    load and the other children use them). Ctrl-C is the parent's to handle: the child ignores it and
    stops when the parent closes its end."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    READS_IN_FLIGHT.reserve().hold(hold)
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        cache = media.frame_cache
        before = asdict(cache.stats) if cache is not None else {}
        out = media.decode(request)  # failures are recorded in the result, never raised
        counted = None  # this decode's frame-cache counters (the parent adds them to its own)
        if cache is not None:
            counted = type(cache.stats)(**{k: v - before[k] for k, v in asdict(cache.stats).items()})
        try:
            conn.send((out, counted))
        except (EOFError, OSError):
            return
        except Exception as exc:  # the result does not pickle: the parent decodes this one itself
            conn.send(f"{type(exc).__name__}: {exc}")


class _Child:
    def __init__(self, context: Any, media: Any, hold: int) -> None:
        self.conn, child_end = context.Pipe()
        self.process = context.Process(target=_serve, args=(media, child_end, hold), daemon=True)
        self.process.start()
        child_end.close()

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except (OSError, ValueError):
            pass  # already gone: nothing to stop
        self.conn.close()


class ForkedDecoders:
    """``processes`` forked decode processes (see the module doc); :meth:`decode` is thread-safe.

    Args:
        media: the model's :class:`~videolmm.eval.prefetch.EarlyMedia` (its ``decode`` runs in the child).
        processes: how many (>= 1); each decodes one request at a time.
        cores: the cores of the machine the children share with the load (each child's reads plan for
            ``max(1, cores // (processes + 1))`` of them).

    Attributes:
        processes: the children started.
        served: requests the children decoded.
        fallbacks: requests decoded in the calling thread instead (a child died, a request or result
            did not pickle, or the children were retired meanwhile).
    """

    def __init__(self, media: Any, processes: int, cores: int) -> None:
        if processes < 1:
            raise ValueError(f"processes must be >= 1, got {processes}")
        self._media = media
        context = multiprocessing.get_context("fork")
        each = max(1, cores // (processes + 1))
        self._idle: queue.SimpleQueue[_Child | None] = queue.SimpleQueue()  # None: retired
        self._children: list[_Child] = []
        self._lock = threading.RLock()  # guards retiring against children coming back
        self._retired = False
        self.served = self.fallbacks = 0
        for _ in range(processes):
            child = _Child(context, media, hold=max(0, cores - each))
            self._children.append(child)
            self._idle.put(child)
        self.processes = self._live = len(self._children)

    @property
    def retired(self) -> bool:
        """Whether :meth:`retire` was called (no new request goes to a child)."""
        return self._retired

    def decode(self, request: Any) -> DecodedRequest:
        """Decode ``request`` in an idle child (waiting for one), or here when none can."""
        child = self._take()
        if child is not None:
            out = self._ask(child, request)
            if out is not None:
                return out
        with self._lock:
            self.fallbacks += 1
        return self._media.decode(request)

    def _take(self) -> _Child | None:
        if self._retired or self._live == 0:
            return None
        child = self._idle.get()
        if child is None:  # retired (or the last child stopped) while waiting: pass the word on
            self._idle.put(None)
            return None
        if self._retired:
            self._stop(child)
            return None
        return child

    def _ask(self, child: _Child, request: Any) -> DecodedRequest | None:
        try:
            child.conn.send(request)
            out = child.conn.recv()
        except (EOFError, OSError, ValueError) as exc:  # the child died (or the pipe broke): decode here
            logger.warning("videolmm: a decode process stopped (%s: %s); decoding here", type(exc).__name__, exc)
            self._stop(child)
            return None
        except Exception as exc:  # the request does not pickle (e.g. an in-memory object): decode here
            logger.info("videolmm: request not sent to a decode process (%s: %s)", type(exc).__name__, exc)
            self._give_back(child)
            return None
        self._give_back(child)
        if isinstance(out, str):  # the child could not send its result back
            logger.info("videolmm: a decode process could not return its result (%s); decoding here", out)
            return None
        decoded, counted = out
        cache = self._media.frame_cache
        if cache is not None and counted is not None:  # the child's frame-cache counters
            cache.add_stats(counted)
        with self._lock:
            self.served += 1
        return decoded

    def _give_back(self, child: _Child) -> None:
        with self._lock:
            if self._retired:
                self._stop(child)
            else:
                self._idle.put(child)

    def _stop(self, child: _Child) -> None:
        with self._lock:
            if child.conn.closed:
                return
            child.stop()
            self._live -= 1
            if self._live == 0:
                self._idle.put(None)  # wakes a request waiting for a child (it then decodes itself)

    def retire(self) -> None:
        """No new request goes to a child: idle ones stop now, busy ones after their request
        (idempotent). Requests waiting for a child decode in their own thread instead."""
        with self._lock:
            if self._retired:
                return
            self._retired = True
            while True:
                try:
                    child = self._idle.get_nowait()
                except queue.Empty:
                    break
                if child is not None:
                    self._stop(child)
            self._idle.put(None)  # wakes a request waiting in _take (it then decodes itself)

    def close(self, timeout: float = 5.0) -> None:
        """Retire, then wait for the children to exit (killed after ``timeout`` seconds)."""
        self.retire()
        for child in self._children:
            child.process.join(timeout)
            if child.process.is_alive():
                child.process.kill()
                child.process.join(1)


__all__ = ["ForkedDecoders", "fork_available"]
