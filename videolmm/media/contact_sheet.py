"""A contact sheet: the sampled frames of one video in a grid, so a person sees what the model sees.

``videolmm inspect CKPT --video clip.mp4 --contact-sheet frames.png`` writes one. Each tile is a
sampled frame exactly as decoded (before the processor resizes it), scaled to a common tile width,
and labelled with its source frame index and timestamp.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from videolmm.types import Frames

#: Width of one tile in pixels; frames are scaled to it keeping their aspect ratio.
TILE_WIDTH = 192
_LABEL_HEIGHT = 16
_GAP = 4


def contact_sheet(frames: Frames, *, columns: int = 8, tile_width: int = TILE_WIDTH) -> np.ndarray:
    """Lay ``frames`` out in a grid, each tile labelled ``#index  t.ttts``.

    Args:
        frames: the sampled frames of one video (``array`` of shape ``(T, H, W, 3)``).
        columns: tiles per row (the last row may be shorter).
        tile_width: width of one tile in pixels.

    Returns:
        ``uint8`` RGB image of shape ``(rows · (h + label + gap) + gap, cols · (tile_width + gap) + gap, 3)``.
    """
    from PIL import Image, ImageDraw

    if columns < 1:
        raise ValueError(f"columns must be >= 1, got {columns}")
    count = len(frames.indices)
    if count == 0:
        raise ValueError(f"{frames.source}: no frames to draw")
    _, height, width, _ = frames.array.shape
    tile_height = max(1, round(height * tile_width / width))
    cols = min(columns, count)
    rows = -(-count // cols)
    cell_h = tile_height + _LABEL_HEIGHT + _GAP
    sheet = Image.new("RGB", (cols * (tile_width + _GAP) + _GAP, rows * cell_h + _GAP), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    for i, (index, seconds) in enumerate(zip(frames.indices, frames.timestamps, strict=True)):
        row, col = divmod(i, cols)
        x = _GAP + col * (tile_width + _GAP)
        y = _GAP + row * cell_h
        tile = Image.fromarray(np.ascontiguousarray(frames.array[i])).resize((tile_width, tile_height), Image.BILINEAR)
        sheet.paste(tile, (x, y))
        draw.text((x + 2, y + tile_height + 2), f"#{index}  {seconds:.2f}s", fill=(235, 235, 235))
    return np.asarray(sheet)


def write_contact_sheet(frames: Frames, path: str | Path, *, columns: int = 8) -> Path:
    """Write :func:`contact_sheet` of ``frames`` to ``path`` (PNG unless the suffix names another format)."""
    from PIL import Image

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(contact_sheet(frames, columns=columns)).save(out)
    return out


__all__ = ["TILE_WIDTH", "contact_sheet", "write_contact_sheet"]
