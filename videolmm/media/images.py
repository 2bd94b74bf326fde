"""Still images for image and mixed image+video prompts."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from videolmm.errors import MediaNotFound, MediaUnreadable


def load_image(source: Any) -> np.ndarray:
    """Return an RGB ``(H, W, 3)`` uint8 array from a path, bytes, PIL image or array.

    Raises:
        MediaNotFound: a path that does not exist.
        MediaUnreadable: the bytes or file are not a decodable image, or an array has the
            wrong shape or dtype.
    """
    from PIL import Image, UnidentifiedImageError

    if isinstance(source, np.ndarray):
        if source.ndim != 3 or source.shape[-1] != 3 or source.dtype != np.uint8:
            raise MediaUnreadable("<array>", f"expected an (H, W, 3) uint8 image, got {source.dtype} {source.shape}")
        return source
    if isinstance(source, Image.Image):
        return np.asarray(source.convert("RGB"))
    if isinstance(source, (bytes, bytearray)):
        name, opener = f"<bytes:{len(source)}>", (lambda: io.BytesIO(source))
    else:
        path = Path(source)
        if not path.is_file():
            raise MediaNotFound(path, "no such file")
        name, opener = str(path), (lambda: path.open("rb"))
    try:
        with opener() as fh, Image.open(fh) as img:
            return np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise MediaUnreadable(name, f"not a readable image ({exc})") from exc


__all__ = ["load_image"]
