"""A wall-clock deadline for decoding, checked by the decoders' own loops between packets and frames.

A caller that must bound the time a decode takes (Serve's media stage, a :class:`FrameLoader` with
``MediaLimits.decode_timeout_s``) opens a :func:`deadline_scope`; inside it, the PyAV-based
decoders (``pyav``, ``keyframe``) and the packet-index and packet-count passes call
:func:`check_deadline` after every packet they demux and every frame they decode, so the work
stops itself within one packet or frame of the deadline, raising
:class:`~videolmm.errors.DecodeTimeout`. :meth:`Deadline.cancel` stops it the same way at once (a
client that went away).

The scope is per thread (a ``threading.local``): a decoder that starts worker threads (the
``keyframe`` decoder's parallel GOP runs) hands :func:`current_deadline` to each of them and opens
the same scope there. The ``ffmpeg_cli`` route checks after every frame it decodes and every frame
it JPEG-encodes. torchcodec decodes a whole batch inside one C++ call, so it checks only before and
after that call; decord does not check at all. Serve reads every container with the PyAV-based
decoders (see ``docs/serving.md``).

Pure Python: no decoding library is imported here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from videolmm.errors import DecodeTimeout


class Deadline:
    """A point in time (``time.monotonic``) after which decoding stops, and a cancel switch.

    Args:
        seconds: time allowed from now; None never expires (only :meth:`cancel` stops the work).
    """

    def __init__(self, seconds: float | None) -> None:
        if seconds is not None and not seconds > 0:
            raise ValueError(f"a decode deadline must be > 0 seconds or None, got {seconds}")
        self.seconds = seconds
        self.start = time.monotonic()
        self.expires = None if seconds is None else self.start + seconds
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        """Stop the work at its next check (thread-safe)."""
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self._cancelled.is_set()

    def check(self, label: str) -> None:
        """Raise :class:`DecodeTimeout` naming ``label`` when the deadline has passed or was cancelled."""
        if self._cancelled.is_set():
            raise DecodeTimeout(label, "decoding was cancelled (the request went away)")
        if self.expires is not None and time.monotonic() > self.expires:
            elapsed = time.monotonic() - self.start
            raise DecodeTimeout(
                label, f"decoding stopped after {elapsed:.2f} s: the limit is {self.seconds:g} s per request"
            )


_local = threading.local()


def current_deadline() -> Deadline | None:
    """The deadline of the innermost :func:`deadline_scope` open in this thread, if any."""
    return getattr(_local, "deadline", None)


@contextmanager
def deadline_scope(deadline: Deadline | None) -> Iterator[Deadline | None]:
    """Make ``deadline`` the one :func:`check_deadline` consults in this thread (None: no change).

    Scopes nest: the inner one applies until it closes.
    """
    if deadline is None:
        yield current_deadline()
        return
    previous = current_deadline()
    _local.deadline = deadline
    try:
        yield deadline
    finally:
        _local.deadline = previous


def check_deadline(label: str) -> None:
    """Raise :class:`DecodeTimeout` when this thread's deadline has passed (no-op without a scope)."""
    deadline = getattr(_local, "deadline", None)
    if deadline is not None:
        deadline.check(label)


__all__ = ["Deadline", "check_deadline", "current_deadline", "deadline_scope"]
