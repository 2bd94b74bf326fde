"""CPU cores for decoding: the process's cores, shared among the reads that run at once.

The ``keyframe`` decoder sizes a read's workers and FFmpeg frame threads for the cores it may use.
One read alone may use every core; but reads often run at once (evaluation decodes the next batches
in a thread pool, Serve decodes several requests at once), and each sized for the whole machine
oversubscribes it: threads wait for a core, and a read's FFmpeg frame threads stall each other.
:data:`READS_IN_FLIGHT` counts the reads running in this process, and :func:`share` gives each read
``cores // reads`` at the moment it starts (at least one). Other work may hold cores too
(:meth:`ReadsInFlight.reserve`: evaluation holds torch's threads while it generates); reads then
share what is left. The count is per process: separate processes (Serve replicas) do not see each
other's reads.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager


def available_cores() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity else os.cpu_count() or 1


class ReadsInFlight:
    """A thread-safe count of the reads running at once, and of the cores other work holds.

    Attributes:
        count: reads in flight now.
        reserved: cores held by other work (:meth:`reserve`), not for reads.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0
        self.reserved = 0

    @contextmanager
    def enter(self) -> Iterator[int]:
        """Count one read for the ``with`` block; yields the reads in flight, this one included."""
        with self._lock:
            self.count += 1
            now = self.count
        try:
            yield now
        finally:
            with self._lock:
                self.count -= 1

    def reserve(self) -> Reservation:
        """A holding of cores for other work, 0 until :meth:`Reservation.hold` sets it (release it when done)."""
        return Reservation(self)

    def _adjust(self, delta: int) -> None:
        with self._lock:
            self.reserved += delta


class Reservation:
    """Cores another piece of work holds from the reads (see :meth:`ReadsInFlight.reserve`).

    Use as a context manager, or call :meth:`release`; :meth:`hold` changes the count held.
    """

    def __init__(self, reads: ReadsInFlight) -> None:
        self._reads, self.cores = reads, 0

    def hold(self, cores: int) -> None:
        """Hold ``cores`` (>= 0) from now on instead of what was held."""
        if cores < 0:
            raise ValueError(f"cores must be >= 0, got {cores}")
        self._reads._adjust(cores - self.cores)
        self.cores = cores

    def release(self) -> None:
        """Hold nothing (idempotent)."""
        self.hold(0)

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


#: The process-wide count the ``keyframe`` decoder's reads share (every decoder instance).
READS_IN_FLIGHT = ReadsInFlight()


def share(cores: int, workers: int, reads: int, reserved: int = 0) -> tuple[int, int]:
    """The ``(cores, workers)`` one of ``reads`` reads running at once may use.

    A read alone with no cores reserved (``reads <= 1``, ``reserved == 0``) keeps ``(cores, workers)``
    exactly; otherwise it gets ``(cores - reserved) // reads`` cores (at least 1) and no more workers
    than those cores.

    Args:
        cores: the cores a read alone may use (>= 1).
        workers: the worker containers a read alone may use (>= 1).
        reads: reads in flight, this one included.
        reserved: cores other work holds (:meth:`ReadsInFlight.reserve`).
    """
    if cores < 1 or workers < 1:
        raise ValueError(f"cores and workers must be >= 1, got cores={cores}, workers={workers}")
    if reads <= 1 and reserved <= 0:
        return cores, workers
    mine = max(1, (cores - max(0, reserved)) // max(1, reads))
    return mine, min(workers, mine)


__all__ = ["READS_IN_FLIGHT", "ReadsInFlight", "Reservation", "available_cores", "share"]
