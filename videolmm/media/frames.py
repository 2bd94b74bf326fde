"""Decoders of already-extracted frames: ``frames`` (a directory of images) and ``images`` (a list).

LLaVA-Hound evaluates on frames extracted ahead of time; these decoders give them the same
:class:`~videolmm.media.base.OpenedVideo` interface as a container, every frame the size of the first.
Pillow is imported lazily.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from videolmm.errors import MediaNotFound, MediaUnreadable, NoFrames
from videolmm.media.base import OpenedVideo, OpenedVideoBase, describe_source, is_image_sequence, module_importable
from videolmm.media.images import IMAGE_SUFFIXES, image_to_rgb, load_image_file
from videolmm.types import VideoInfo, VideoSource


def _stack_same_size(images: list[np.ndarray], names: list[str], info: VideoInfo) -> np.ndarray:
    """Stack frames, insisting they all have the video's size."""
    for image, name in zip(images, names, strict=True):
        if image.shape[:2] != (info.height, info.width):
            raise MediaUnreadable(
                info.source,
                f"{name} is {image.shape[1]}x{image.shape[0]} but the first frame is {info.width}x{info.height}",
            )
    return np.stack(images)


class _FramesDirVideo(OpenedVideoBase):
    backend = "frames"

    def __init__(self, info: VideoInfo, files: list[Path]) -> None:
        super().__init__(info)
        self._files = files

    def read_sorted(self, indices: list[int]) -> np.ndarray:
        files = [self._files[i] for i in indices]
        images = [load_image_file(f, self.info.source, "frame file") for f in files]
        return _stack_same_size(images, [f"frame file {f}" for f in files], self.info)


class FramesDirDecoder:
    """A directory of frame images, sorted by file name (``sorted(os.listdir)``, like LLaVA-Hound).

    Hidden files (names starting with ``.``) and subdirectories are ignored; any other file must
    have an image suffix (:data:`IMAGE_SUFFIXES`).

    Args:
        fps: the rate the frames were extracted at (LLaVA-Hound extracts at 2).
    """

    name = "frames"

    def __init__(self, fps: float = 1.0) -> None:
        self.fps = fps

    def available(self) -> bool:
        """Whether Pillow imports."""
        return module_importable("PIL.Image")

    def open(self, source: VideoSource) -> OpenedVideo:
        """List and check the directory; reads the first frame's header for the size.

        Args:
            source: a directory path.

        Returns:
            The opened frame sequence.
        """
        label = describe_source(source)
        if not isinstance(source, (str, os.PathLike)):
            raise MediaUnreadable(label, "the frames decoder needs a directory path")
        folder = Path(source)
        if not folder.exists():
            raise MediaNotFound(label, "no such directory")
        if not folder.is_dir():
            raise MediaUnreadable(label, "not a directory of frames")
        files = [folder / n for n in sorted(os.listdir(folder)) if not n.startswith(".") and (folder / n).is_file()]
        for file in files:
            if file.suffix.lower() not in IMAGE_SUFFIXES:
                raise MediaUnreadable(
                    label, f"{file} is not an image file (expected {', '.join(sorted(IMAGE_SUFFIXES))})"
                )
        if not files:
            raise NoFrames(label, "the directory holds no frame images")
        first = load_image_file(files[0], label, "frame file")
        info = VideoInfo(
            source=label, num_frames=len(files), fps=self.fps, width=first.shape[1], height=first.shape[0]
        )
        return _FramesDirVideo(info, files)


class _ImagesVideo(OpenedVideoBase):
    backend = "images"

    def __init__(self, info: VideoInfo, items: Sequence[Any], first: np.ndarray) -> None:
        super().__init__(info)
        self._items = items
        self._first = first

    def read_sorted(self, indices: list[int]) -> np.ndarray:
        label = self.info.source
        images = [self._first if i == 0 else image_to_rgb(self._items[i], label, f"image {i}") for i in indices]
        return _stack_same_size(images, [f"image {i}" for i in indices], self.info)


class ImagesDecoder:
    """An in-memory sequence of images (arrays, PIL images or paths) treated as consecutive frames.

    Args:
        fps: the rate to report for the sequence.
    """

    name = "images"

    def __init__(self, fps: float = 1.0) -> None:
        self.fps = fps

    def available(self) -> bool:
        """Always True (Pillow is only needed for PIL images and paths)."""
        return True

    def open(self, source: VideoSource) -> OpenedVideo:
        """Check the sequence and convert its first image to learn the size.

        Args:
            source: a list/tuple of images or a ``(T, H, W, C)`` uint8 array.

        Returns:
            The opened frame sequence.
        """
        label = describe_source(source)
        if not is_image_sequence(source):
            raise MediaUnreadable(label, "the images decoder needs a list/tuple of images or a (T, H, W, 3) array")
        items: Sequence[Any] = source  # type: ignore[assignment]
        if len(items) == 0:
            raise NoFrames(label, "the image list is empty")
        first = image_to_rgb(items[0], label, "image 0")
        info = VideoInfo(
            source=label, num_frames=len(items), fps=self.fps, width=first.shape[1], height=first.shape[0]
        )
        return _ImagesVideo(info, items, first)


__all__ = ["FramesDirDecoder", "ImagesDecoder"]
