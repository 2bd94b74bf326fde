"""CPU cores for decoding: the process's cores, shared among the reads that run at once.

The ``keyframe`` decoder sizes a read's workers and FFmpeg frame threads for the cores it may use.
One read alone may use every core; but reads often run at once (evaluation decodes the next batches
in a thread pool, Serve decodes several requests at once), and each sized for the whole machine
oversubscribes it: threads wait for a core, and a read's FFmpeg frame threads stall each other.
:data:`READS_IN_FLIGHT` counts the reads running in this process, and :func:`share` gives each read
``cores // reads`` at the moment it starts (at least one). The count is per process: separate
processes (Serve replicas) do not see each other's reads.
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
    """A thread-safe count of the reads running at once.

    Attributes:
        count: reads in flight now.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0

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


#: The process-wide count the ``keyframe`` decoder's reads share (every decoder instance).
READS_IN_FLIGHT = ReadsInFlight()


def share(cores: int, workers: int, reads: int) -> tuple[int, int]:
    """The ``(cores, workers)`` one of ``reads`` reads running at once may use.

    A read alone (``reads <= 1``) keeps ``(cores, workers)`` exactly; otherwise it gets
    ``cores // reads`` cores (at least 1) and no more workers than those cores.

    Args:
        cores: the cores a read alone may use (>= 1).
        workers: the worker containers a read alone may use (>= 1).
        reads: reads in flight, this one included.
    """
    if cores < 1 or workers < 1:
        raise ValueError(f"cores and workers must be >= 1, got cores={cores}, workers={workers}")
    if reads <= 1:
        return cores, workers
    mine = max(1, cores // reads)
    return mine, min(workers, mine)


__all__ = ["READS_IN_FLIGHT", "ReadsInFlight", "available_cores", "share"]
