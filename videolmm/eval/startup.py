"""What the eval model does at construction so that decoding runs at full speed beside the model load.

``generate_until`` starts decoding and then waits for the background load (:mod:`videolmm.eval.loading`);
the decode threads and the load share one interpreter. Measured in process (docs/benchmarks.md, *Eval
throughput*), two things kept the first decodes from finishing during the load:

- **The cyclic garbage collector.** The load allocates enough to trigger a full (generation 2)
  collection, and a full collection walks every object the process holds: after importing torch,
  transformers and lmms-eval about half a million, 0.3 s with the GIL held, during which no thread runs
  Python (a decode's per-packet loop included). :class:`FrozenHeap` moves the objects that exist before
  the load into the permanent generation (:func:`gc.freeze`), so later collections skip them, and puts
  them back (:func:`gc.unfreeze`) when the model no longer needs it (the end of its first evaluation call).
  Objects are still freed by reference counting meanwhile; only cycles among the frozen ones wait.
- **The decoder's first use** imports its libraries (PyAV loads FFmpeg's shared libraries, about
  60 ms with the GIL held). :func:`warm_decoder` decodes a tiny clip encoded in memory through the
  model's own decoder and sampler before the load starts.
- **The GIL itself.** The load is Python-bound, and a decode thread beside it waits for the GIL at
  every FFmpeg call. Decode processes forked before the load (:mod:`videolmm.eval.forked`) take the
  decodes started while it runs.

:class:`Startup` does all three in the model's constructor, in that order, and undoes them at the end
of the first evaluation call (:meth:`Startup.end`).
"""

from __future__ import annotations

import gc
import io
import logging
import sys
import threading
import time
from typing import Any

from videolmm.errors import ConfigError
from videolmm.eval.forked import ForkedDecoders, fork_available
from videolmm.media.loader import PROBED_DECODERS, FrameLoader
from videolmm.models.spec import parse_bool
from videolmm.types import MediaSettings

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_holders = 0  # FrozenHeap instances holding the freeze
_owned = False  # whether the freeze in effect is ours (False: the GC was frozen or off before, left alone)


class FrozenHeap:
    """Holds :func:`gc.freeze` until :meth:`release` (idempotent); freezes are shared between holders.

    The first holder freezes (unless the process already froze objects or disabled the collector: then
    it is left as it is); the last release unfreezes what the first froze.

    Attributes:
        frozen: objects moved to the permanent generation by this holder's freeze (0 when it joined
            an existing freeze or left the collector alone).
    """

    def __init__(self) -> None:
        global _holders, _owned
        self.frozen = 0
        self._held = True
        with _lock:
            if _holders == 0:
                _owned = gc.isenabled() and gc.get_freeze_count() == 0
                if _owned:
                    gc.freeze()
                    self.frozen = gc.get_freeze_count()
            _holders += 1

    @property
    def held(self) -> bool:
        """Whether this holder has not released yet."""
        return self._held

    def release(self) -> None:
        """Drop this hold; the last one unfreezes (when the freeze was ours)."""
        global _holders, _owned
        with _lock:
            if not self._held:
                return
            self._held = False
            _holders -= 1
            if _holders == 0 and _owned:
                gc.unfreeze()
                _owned = False


def tiny_clip(frames: int = 8, size: int = 64) -> bytes:
    """An H.264 MP4 of ``frames`` black ``size`` x ``size`` frames, encoded in memory (a few ms)."""
    import av
    import numpy as np

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        black = np.zeros((size, size, 3), np.uint8)
        for _ in range(frames):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(black, format="rgb24")))
        container.mux(stream.encode())
    return buffer.getvalue()


def warm_decoder(registry: Any, media: MediaSettings) -> float | None:
    """Decode :func:`tiny_clip` with ``media``'s decoder and sampler (no frame cache), so that the first
    real decode does not pay the decoder's imports and first opens.

    Only container decoders (:data:`~videolmm.media.loader.PROBED_DECODERS`) are warmed; others read
    files or frame folders, which a clip in memory is not.

    Returns:
        The seconds it took, or None when the decoder is not warmed (not a container decoder, or the
        warm-up failed: logged with its reason; the first real decode reports its own errors).
    """
    if media.decoder not in PROBED_DECODERS:
        return None
    start = time.perf_counter()
    try:
        FrameLoader(registry).load(tiny_clip(), media)
    except Exception as exc:  # nothing depends on the warm-up: say why it did not run, decode as before
        logger.info("videolmm: decoder %r not warmed up (%s: %s)", media.decoder, type(exc).__name__, exc)
        return None
    return time.perf_counter() - start


#: :func:`warm_decoder` under a name that :class:`Startup`'s ``warm_decoder`` flag does not shadow
_warm = warm_decoder


def load_processes_for(setting: int | str, cores: int) -> int:
    """Decode processes to fork for the load: ``auto`` → ``min(4, cores - 1)`` where forking is
    available (:func:`~videolmm.eval.forked.fork_available`), else 0; an integer as given (0: none).

    Raises:
        ConfigError: not ``auto`` or a non-negative integer, or processes asked for where forking is not
            available.
    """
    text = str(setting).strip().lower()
    if text == "auto":
        return min(4, cores - 1) if fork_available() else 0
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise ConfigError(f"load_processes={setting!r}: expected 'auto' or an integer >= 0")
    if n and not fork_available():
        raise ConfigError(f"load_processes={setting!r}: forking decode processes is not available on {sys.platform}")
    return n


class Startup:
    """The eval model's start-up measures, taken in its constructor before the load starts (module doc).

    Args:
        media: the model's :class:`~videolmm.eval.prefetch.EarlyMedia`.
        cores: the cores the process may use.
        freeze_gc: hold a :class:`FrozenHeap`.
        warm_decoder: run :func:`warm_decoder`.
        load_processes: ``auto`` or how many decode processes to fork (:func:`load_processes_for`).

    Attributes:
        frozen: the heap hold, or None.
        warmup_s: seconds the warm-up took (0 when not run).
        forked: the decode processes serving the decodes started during the load, or None.

    Raises:
        ConfigError: a flag is not a boolean, or ``load_processes`` is not valid.
    """

    def __init__(
        self, media: Any, cores: int, *, freeze_gc: Any = True, warm_decoder: Any = True, load_processes: Any = "auto"
    ) -> None:
        freeze, warm = parse_bool(freeze_gc, "freeze_gc"), parse_bool(warm_decoder, "warm_decoder")
        processes = load_processes_for(load_processes, cores)
        self.frozen = FrozenHeap() if freeze else None
        self.warmup_s = (_warm(media.registry, media.media) if warm else None) or 0.0
        self.forked = ForkedDecoders(media, processes, cores) if processes else None

    def load_ended(self) -> None:
        """The model is loaded: new decodes run in threads again (the processes stop)."""
        if self.forked is not None:
            self.forked.retire()

    def end(self) -> None:
        """The first evaluation call is over (or the model is dropped): unfreeze, stop the processes
        (idempotent)."""
        if self.frozen is not None:
            self.frozen.release()
        if self.forked is not None:
            self.forked.close()


__all__ = ["FrozenHeap", "Startup", "load_processes_for", "tiny_clip", "warm_decoder"]
