"""Opt-in log output for the ``videolmm`` logger (``VIDEOLMM_LOG_LEVEL=INFO``).

videolmm never configures logging at import. Entry points (the CLI, the lmms-eval model
classes) call :func:`configure_from_env` once; without the variable nothing changes.
"""

from __future__ import annotations

import logging
import os

ENV = "VIDEOLMM_LOG_LEVEL"
_FORMAT = "%(asctime)s videolmm %(levelname)s [%(name)s] %(message)s"


def configure_from_env() -> None:
    """Attach one stderr handler to the ``videolmm`` logger at ``$VIDEOLMM_LOG_LEVEL`` (idempotent)."""
    level = os.environ.get(ENV)
    if not level:
        return
    root = logging.getLogger("videolmm")
    root.setLevel(level.upper())
    if not any(getattr(h, "_videolmm", False) for h in root.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(_FORMAT))
        handler._videolmm = True  # type: ignore[attr-defined]
        root.addHandler(handler)
