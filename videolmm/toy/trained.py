"""Trained tiny checkpoints shipped as package data (``videolmm/toy/assets/trained/<family>``).

They were trained on synthetic clips by ``videolmm train`` (recipe and measured accuracy in
each folder's ``videolmm_trained.json``); CI never retrains. Retrain with
``videolmm train --family NAME --out DIR``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from videolmm.errors import ConfigError

ASSETS = Path(__file__).parent / "assets" / "trained"
MANIFEST_NAME = "videolmm_trained.json"


def available() -> list[str]:
    """Families with a shipped trained checkpoint."""
    return sorted(p.name for p in ASSETS.iterdir() if (p / MANIFEST_NAME).is_file()) if ASSETS.is_dir() else []


def trained_path(family: str) -> Path:
    """Folder of the shipped trained checkpoint of ``family``.

    Raises:
        ConfigError: none is shipped for that family (the message lists those that are).
    """
    path = ASSETS / family
    if not (path / MANIFEST_NAME).is_file():
        raise ConfigError(f"no trained tiny checkpoint for family {family!r}; available: {available() or 'none'}")
    return path


def manifest(family: str) -> dict[str, Any]:
    """The training manifest (recipe, seconds, held-out accuracy) of a shipped checkpoint."""
    return json.loads((trained_path(family) / MANIFEST_NAME).read_text())


def materialize_trained(family: str, out_dir: str | Path) -> Path:
    """Copy the shipped trained checkpoint of ``family`` to ``out_dir`` and return it."""
    out = Path(out_dir)
    shutil.copytree(trained_path(family), out, dirs_exist_ok=True)
    return out


__all__ = ["available", "manifest", "materialize_trained", "trained_path"]
