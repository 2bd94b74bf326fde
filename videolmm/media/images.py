"""Still images: for image and mixed image+video prompts, and as the frames of a frames directory or list.

:data:`IMAGE_SUFFIXES` is the one list of still-image file suffixes: the ``frames`` decoder accepts
only these in a frames directory, and the lmms-eval model routes a visual path ending in one of
them to the image path. ``.gif`` is not among them: an animated GIF is a video, decoded by the
container decoders.

Pillow is imported lazily, inside the functions that need it.
"""

from __future__ import annotations

import importlib
import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from videolmm.errors import DecoderUnavailable, MediaNotFound, MediaUnreadable

#: Suffixes of still-image files (lower case; compare with ``suffix.lower()``). A tuple, so that
#: ``name.lower().endswith(IMAGE_SUFFIXES)`` works too.
IMAGE_SUFFIXES = (".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")


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


def pil_image_module(label: str) -> Any:
    """``PIL.Image``, or DecoderUnavailable naming ``label`` with an install hint."""
    try:
        return importlib.import_module("PIL.Image")
    except ImportError as exc:
        raise DecoderUnavailable(label, f"Pillow is not importable ({exc}); pip install pillow") from exc


def load_image_file(path: Path, label: str, what: str) -> np.ndarray:
    """Decode one image file to uint8 RGB; errors name the source ``label`` and ``what`` (e.g. the frame file)."""
    image_mod = pil_image_module(label)
    if not path.exists():
        raise MediaNotFound(label, f"{what} {path} does not exist")
    try:
        with image_mod.open(path) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError) as exc:
        raise MediaUnreadable(label, f"{what} {path} is not a readable image ({exc})") from exc


def array_to_rgb(array: np.ndarray, label: str, what: str) -> np.ndarray:
    """An image array as uint8 ``(H, W, 3)``: grey is replicated, an alpha channel dropped."""
    if array.dtype != np.uint8:
        raise MediaUnreadable(label, f"{what} has dtype {array.dtype}; expected uint8")
    if array.ndim == 2:
        return np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim == 3 and array.shape[2] in (3, 4):
        return np.ascontiguousarray(array[:, :, :3])
    raise MediaUnreadable(label, f"{what} has shape {tuple(array.shape)}; expected (H, W, 3)")


def image_to_rgb(item: Any, label: str, what: str) -> np.ndarray:
    """Any supported image item (array, PIL image, path) as uint8 ``(H, W, 3)``."""
    if isinstance(item, np.ndarray):
        return array_to_rgb(item, label, what)
    if isinstance(item, (str, os.PathLike)):
        return load_image_file(Path(item), label, what)
    image_mod = pil_image_module(label)
    if isinstance(item, image_mod.Image):
        return np.asarray(item.convert("RGB"), dtype=np.uint8)
    raise MediaUnreadable(label, f"{what} is a {type(item).__name__}, not an image (array, PIL image or path)")


__all__ = ["IMAGE_SUFFIXES", "array_to_rgb", "image_to_rgb", "load_image", "load_image_file", "pil_image_module"]
