"""Loading the engine in a background thread, so that evaluation can decode while it loads.

lmms-eval constructs the model before it builds the tasks and their requests; the model class
starts :class:`BackgroundLoad` in its constructor and joins it where the model is needed (the first
``generate_until`` joins it only after it has started decoding). A failed load is re-raised at
every join as :class:`ModelLoadError`, naming the checkpoint, with the original error as its cause.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from videolmm.errors import VideoLMMError
from videolmm.load import load_engine
from videolmm.models.spec import EngineSpec


class ModelLoadError(VideoLMMError, RuntimeError):
    """The engine's background load failed (the message names the checkpoint and the reason)."""


class BackgroundLoad:
    """``load_engine(spec)`` on a daemon thread; :meth:`result` waits for it.

    Attributes:
        spec: what is being loaded.
        seconds: how long the load took (0 until it finished).
    """

    def __init__(self, spec: EngineSpec, *, pm: Any = None) -> None:
        self.spec = spec
        self.seconds = 0.0
        self._pm = pm
        self._engine: Any = None
        self._error: BaseException | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="videolmm-load", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        start = time.perf_counter()
        try:
            self._engine = load_engine(self.spec, pm=self._pm)
        except BaseException as exc:  # kept and re-raised at every join (result())
            self._error = exc
        finally:
            self.seconds = time.perf_counter() - start
            self._done.set()

    @property
    def done(self) -> bool:
        """Whether the load has finished (loaded or failed)."""
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the load to finish; True when it has."""
        return self._done.wait(timeout)

    def result(self) -> Any:
        """The loaded engine, waiting for it if needed.

        Raises:
            ModelLoadError: the load failed (its cause is the original error).
        """
        self._done.wait()
        if self._error is not None:
            exc = self._error
            reason = f"{type(exc).__name__}: {exc}"
            raise ModelLoadError(f"{self.spec.pretrained}: loading the model failed: {reason}") from exc
        return self._engine


__all__ = ["BackgroundLoad", "ModelLoadError"]
