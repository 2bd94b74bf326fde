"""Materialise the synthetic clips that the demo and synthetic tasks reference by name.

A doc names its clip by its recipe (``colour``, ``direction``, ``seed``, ...); the clip is
written on first use into a cache folder (``$VIDEOLMM_CACHE/clips``, default
``~/.cache/videolmm/clips``) and reused after. Writes are atomic (temp file + rename) so that
several processes (``accelerate launch``) can materialise the same clip at once.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

CACHE_ENV = "VIDEOLMM_CACHE"


def cache_dir() -> Path:
    """The clip cache folder (created on demand)."""
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "videolmm")
    path = root / "clips"
    path.mkdir(parents=True, exist_ok=True)
    return path


def clip_name(doc: Mapping[str, Any]) -> str:
    """File name of a doc's clip, unique per recipe."""
    travel = f"_t{round(float(doc['travel']) * 100)}" if "travel" in doc else ""
    return (
        f"square_{doc['colour']}_{doc['direction']}_s{int(doc['seed'])}"
        f"_f{int(doc.get('num_frames', 16))}_{int(doc.get('size', 64))}px{travel}.mp4"
    )


def clip_path(doc: Mapping[str, Any]) -> str:
    """Path of the doc's clip, writing it first if it is not cached yet."""
    from videolmm.toy.synthetic import write_moving_square_video

    path = cache_dir() / clip_name(doc)
    if not path.exists():
        fd, tmp = tempfile.mkstemp(suffix=".mp4", dir=path.parent)
        os.close(fd)
        try:
            write_moving_square_video(
                tmp,
                colour=doc["colour"],
                direction=doc["direction"],
                seed=int(doc["seed"]),
                num_frames=int(doc.get("num_frames", 16)),
                fps=int(doc.get("fps", 8)),
                size=int(doc.get("size", 64)),
                travel=float(doc.get("travel", 0.6)),
            )
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return str(path)
