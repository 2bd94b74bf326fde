"""Still images: for image and mixed image+video prompts, and as the frames of a frames directory or list.

:data:`IMAGE_SUFFIXES` is the one list of still-image file suffixes: the ``frames`` decoder accepts
only these in a frames directory, and the lmms-eval model routes a visual path ending in one of
them to the image path. ``.gif`` is not among them: an animated GIF is a video, decoded by the
container decoders.

Every image is opened through :func:`open_image`: Pillow tries only :data:`IMAGE_FORMATS` (never
EPS, which reaches Ghostscript where it is installed, nor any other of Pillow's ~40 readers), and
a header declaring more pixels than Pillow's decompression-bomb limit is refused as
:class:`~videolmm.errors.MediaTooLarge` before any pixel is decoded.

Pillow is imported lazily, inside the functions that need it.
"""

from __future__ import annotations

import importlib
import io
import os
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from videolmm.errors import DecoderUnavailable, MediaNotFound, MediaTooLarge, MediaUnreadable

#: Suffixes of still-image files (lower case; compare with ``suffix.lower()``). A tuple, so that
#: ``name.lower().endswith(IMAGE_SUFFIXES)`` works too.
IMAGE_SUFFIXES = (".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")
#: What Pillow's readers raise for a corrupt file while decoding (a PNG chunk out of place is a
#: SyntaxError, a short IDAT an EOFError or zlib.error); each becomes MediaUnreadable.
_PILLOW_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError, struct.error, zlib.error)
#: The Pillow formats :func:`open_image` lets Pillow try (``Image.open(..., formats=...)``): the
#: suffixes above, plus GIF (an image URL may point at one; its first frame is the image).
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF")


@contextmanager
def open_image(source: Any, label: str, what: str = "") -> Iterator[Any]:
    """Open an image path, bytes or binary file with Pillow, limited to :data:`IMAGE_FORMATS`.

    Args:
        source: a path, ``bytes`` or a binary file object.
        label: the source's printable name for errors.
        what: prefix naming the item inside the source (e.g. ``"frame file x.png"``), or empty.

    Yields:
        The opened ``PIL.Image.Image`` (header read, pixels not yet decoded).

    Raises:
        MediaTooLarge: the header declares more pixels than Pillow's decompression-bomb limit.
        MediaUnreadable: not an image in one of :data:`IMAGE_FORMATS` (EPS and every other format
            included: Pillow never runs their readers).
    """
    image_mod = pil_image_module(label)
    prefix = f"{what} " if what else ""
    target = io.BytesIO(bytes(source)) if isinstance(source, (bytes, bytearray, memoryview)) else source
    try:
        image = image_mod.open(target, formats=IMAGE_FORMATS)
    except image_mod.DecompressionBombError as exc:
        raise MediaTooLarge(label, f"{prefix}declares too many pixels, refused before decoding ({exc})") from exc
    except _PILLOW_ERRORS as exc:  # UnidentifiedImageError is an OSError
        raise MediaUnreadable(
            label, f"{prefix}is not a readable image in an accepted format ({', '.join(IMAGE_FORMATS)}): {exc}"
        ) from exc
    with image:
        yield image


def image_rgb(image: Any, label: str, what: str = "") -> np.ndarray:
    """Decode an opened image to uint8 RGB ``(H, W, 3)``; decoding failures as MediaErrors.

    Raises:
        MediaTooLarge: Pillow's decompression-bomb check, when it fires while loading (a frame of
            an animated image larger than the header said).
        MediaUnreadable: anything Pillow's reader raises for a corrupt file (:data:`_PILLOW_ERRORS`).
    """
    image_mod = pil_image_module(label)
    prefix = f"{what} " if what else ""
    try:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except image_mod.DecompressionBombError as exc:
        raise MediaTooLarge(label, f"{prefix}declares too many pixels, refused ({exc})") from exc
    except _PILLOW_ERRORS as exc:
        raise MediaUnreadable(label, f"{prefix}is not a readable image ({type(exc).__name__}: {exc})") from exc


def load_image(source: Any) -> np.ndarray:
    """Return an RGB ``(H, W, 3)`` uint8 array from a path, bytes, PIL image or array.

    Raises:
        MediaNotFound: a path that does not exist.
        MediaUnreadable: the bytes or file are not a decodable image, or an array has the
            wrong shape or dtype.
    """
    from PIL import Image

    if isinstance(source, np.ndarray):
        if source.ndim != 3 or source.shape[-1] != 3 or source.dtype != np.uint8:
            raise MediaUnreadable("<array>", f"expected an (H, W, 3) uint8 image, got {source.dtype} {source.shape}")
        return source
    if isinstance(source, Image.Image):
        return np.asarray(source.convert("RGB"))
    if isinstance(source, (bytes, bytearray)):
        name, target = f"<bytes:{len(source)}>", bytes(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise MediaNotFound(path, "no such file")
        name, target = str(path), path
    with open_image(target, name) as img:
        return image_rgb(img, name)


def pil_image_module(label: str) -> Any:
    """``PIL.Image``, or DecoderUnavailable naming ``label`` with an install hint."""
    try:
        return importlib.import_module("PIL.Image")
    except ImportError as exc:
        raise DecoderUnavailable(label, f"Pillow is not importable ({exc}); pip install pillow") from exc


def load_image_file(path: Path, label: str, what: str) -> np.ndarray:
    """Decode one image file to uint8 RGB; errors name the source ``label`` and ``what`` (e.g. the frame file)."""
    if not path.exists():
        raise MediaNotFound(label, f"{what} {path} does not exist")
    with open_image(path, label, f"{what} {path}") as image:
        return image_rgb(image, label, f"{what} {path}")


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


__all__ = [
    "IMAGE_FORMATS",
    "IMAGE_SUFFIXES",
    "array_to_rgb",
    "image_rgb",
    "image_to_rgb",
    "load_image",
    "load_image_file",
    "open_image",
    "pil_image_module",
]
