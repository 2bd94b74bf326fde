"""Deterministic synthetic videos for tests and demos, written with PyAV (no ffmpeg binary needed).

Two kinds of clips:

* **index-coded** (:func:`write_index_video`): every frame carries its own frame index as a 4×4
  block code (12 index bits + a 4-bit check, large black/white cells that survive lossy
  compression) next to a moving texture; :func:`read_index` reads the index back, so a test can
  check that a decoder returned exactly the frames it was asked for.
* **moving square** (:func:`write_moving_square_video`): a coloured square crossing a textured
  background in one of four directions, the toy task for "does the model look at the frames, and
  in order".

Encoders run single-threaded, and x264 without its macroblock tree, so that the decoded pixels are
the same on every run and machine count of cores (a test writes the same clip repeatedly).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Union

import numpy as np

#: Frame rates accepted by the writers: ``30``, ``29.97`` or ``Fraction(30000, 1001)``.
FrameRate = Union[int, float, Fraction]

#: Well separated, saturated colours for the moving square (names are the answers a model learns).
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 30, 30),
    "green": (30, 200, 40),
    "blue": (30, 60, 230),
    "yellow": (240, 220, 30),
    "magenta": (220, 40, 220),
    "cyan": (30, 215, 225),
}

#: Directions the square can move in (image coordinates: "down" means towards the bottom row).
DIRECTIONS: tuple[str, ...] = ("left", "right", "up", "down")

#: Supported video codecs. AV1 is there for "unsupported codec" tests: decord 0.6 bundles an FFmpeg
#: without an AV1 decoder.
CODECS: tuple[str, ...] = ("libx264", "mpeg4", "libaom-av1")

_GRID = 4  # the block code is a _GRID × _GRID square of cells
_INDEX_BITS = 12
_CHECK_BITS = _GRID * _GRID - _INDEX_BITS
#: Largest frame index the block code can carry.
MAX_INDEX = (1 << _INDEX_BITS) - 1
_CHECK_XOR = 0b1010  # makes all-black and all-white frames invalid codes
_MIN_CELL = 6
_AMBIGUOUS = (64.0, 192.0)  # a cell whose mean lies in this band is neither black nor white


def _as_fraction(fps: FrameRate) -> Fraction:
    """Turn a frame rate into an exact fraction (floats by their decimal spelling: 29.97 → 2997/100)."""
    rate = fps if isinstance(fps, Fraction) else Fraction(str(fps)) if isinstance(fps, float) else Fraction(fps)
    if rate <= 0:
        raise ValueError(f"fps must be positive, got {fps!r}")
    return rate


def _cell_size(width: int, height: int) -> int:
    """Side of one code cell for a frame of this size; leaves a texture strip beside the code."""
    cell = min(max(width, height) // (_GRID + 1), min(width, height) // _GRID)
    if cell < _MIN_CELL:
        raise ValueError(f"frame {width}x{height} is too small for the index code (cells of {cell} px)")
    return cell


def _checksum(index: int) -> int:
    """4-bit check of a 12-bit index: sum of its nibbles mod 16, xor a constant."""
    nibbles = (index & 0xF) + ((index >> 4) & 0xF) + ((index >> 8) & 0xF)
    return (nibbles % 16) ^ _CHECK_XOR


def _code_bits(index: int) -> list[int]:
    """The 16 cell values (MSB first: 12 index bits, then 4 check bits) for a frame index."""
    word = (index << _CHECK_BITS) | _checksum(index)
    total = _INDEX_BITS + _CHECK_BITS
    return [(word >> (total - 1 - k)) & 1 for k in range(total)]


def _texture(width: int, height: int, t: int) -> np.ndarray:
    """Smooth colour texture that moves with the frame number ``t``; uint8 (H, W, 3)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    red = 128 + 90 * np.sin(2 * np.pi * (x - 2 * t) / 17.0)
    green = 128 + 90 * np.sin(2 * np.pi * (y + t) / 13.0)
    blue = 128 + 60 * np.sin(2 * np.pi * (x + y + 3 * t) / 23.0)
    return np.clip(np.stack([red, green, blue], axis=-1).round(), 0, 255).astype(np.uint8)


def index_frame(index: int, width: int = 128, height: int = 96) -> np.ndarray:
    """Render the RGB frame that carries ``index`` (what :func:`write_index_video` encodes).

    Args:
        index: frame index to encode, 0..:data:`MAX_INDEX`.
        width: frame width in pixels.
        height: frame height in pixels.

    Returns:
        uint8 array of shape ``(height, width, 3)``.
    """
    if not 0 <= index <= MAX_INDEX:
        raise ValueError(f"index {index} is outside the code's range 0..{MAX_INDEX}")
    cell = _cell_size(width, height)
    frame = _texture(width, height, index)
    for k, bit in enumerate(_code_bits(index)):
        row, col = divmod(k, _GRID)
        frame[row * cell : (row + 1) * cell, col * cell : (col + 1) * cell] = 255 if bit else 0
    return frame


def _cell_means(frame: np.ndarray, cell: int) -> list[float]:
    """Mean value of the central half of every code cell, row-major."""
    inset = cell // 4
    means = []
    for k in range(_GRID * _GRID):
        row, col = divmod(k, _GRID)
        top, left = row * cell + inset, col * cell + inset
        block = frame[top : top + cell - 2 * inset, left : left + cell - 2 * inset]
        means.append(float(block.mean()))
    return means


def read_index(frame: np.ndarray) -> int:
    """Read the frame index back from a decoded index-coded frame.

    Args:
        frame: uint8 array ``(H, W, 3)`` (or ``(H, W)``), at the size it was written.

    Returns:
        The frame index.

    Raises:
        ValueError: the frame does not carry a valid code (a cell is neither black nor white, or
            the check bits do not match).
    """
    arr = np.asarray(frame)
    if arr.ndim not in (2, 3):
        raise ValueError(f"expected an (H, W, 3) frame, got shape {arr.shape}")
    cell = _cell_size(arr.shape[1], arr.shape[0])
    means = _cell_means(arr, cell)
    unclear = [k for k, m in enumerate(means) if _AMBIGUOUS[0] < m < _AMBIGUOUS[1]]
    if unclear:
        raise ValueError(f"not an index-coded frame: cells {unclear} are neither black nor white")
    word = 0
    for m in means:
        word = (word << 1) | int(m > 127.5)
    index, check = word >> _CHECK_BITS, word & ((1 << _CHECK_BITS) - 1)
    if _checksum(index) != check:
        raise ValueError(f"not an index-coded frame: check bits {check:04b} do not match index {index}")
    return index


def _encoder_options(codec: str, crf: int) -> dict[str, str]:
    """Encoder options: deterministic (single thread, no macroblock tree) and high quality.

    x264's macroblock-tree rate control made the bytes, and the decoded pixels, of the same clip
    vary between identical calls in one process (3 outcomes in 30 writes of a 64-px clip, even
    single-threaded); with ``mbtree=0`` every write is the same.
    """
    if codec == "libx264":
        return {"crf": str(crf), "preset": "fast", "threads": "1", "x264-params": "mbtree=0"}
    if codec == "mpeg4":
        return {"threads": "1"}
    if codec == "libaom-av1":
        return {"crf": str(crf), "cpu-used": "8", "threads": "1"}
    raise ValueError(f"unsupported codec {codec!r}; choose one of {CODECS}")


def _encode(
    path: str | Path,
    frames: Iterable[np.ndarray],
    *,
    fps: FrameRate,
    width: int,
    height: int,
    codec: str,
    gop: int | None,
    crf: int,
) -> Path:
    """Encode RGB frames into a container chosen by the file suffix; returns the path."""
    import av  # lazy: keep imports of this module cheap

    if width % 2 or height % 2:
        raise ValueError(f"width and height must be even for yuv420p, got {width}x{height}")
    out = Path(path)
    rate = _as_fraction(fps)
    with av.open(str(out), mode="w") as container:
        stream = container.add_stream(codec, rate=rate, options=_encoder_options(codec, crf))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        ctx = stream.codec_context
        ctx.thread_count = 1
        if codec == "mpeg4":
            ctx.bit_rate = 8_000_000
        if gop is not None:
            if gop < 1:
                raise ValueError(f"gop must be >= 1, got {gop}")
            ctx.gop_size = gop
            if codec == "libx264":
                stream.options = {**stream.options, "sc_threshold": "0", "keyint_min": str(gop)}
        time_base = Fraction(rate.denominator, rate.numerator)
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts, frame.time_base = i, time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return out


def write_index_video(
    path: str | Path,
    num_frames: int,
    *,
    fps: FrameRate = 30,
    width: int = 128,
    height: int = 96,
    codec: str = "libx264",
    gop: int | None = None,
    crf: int = 18,
) -> Path:
    """Write a clip whose frame ``i`` shows the block code of ``i`` (read it with :func:`read_index`).

    Args:
        path: output file; the suffix picks the container (``.mp4``, ``.mkv``, ``.avi``, ...).
        num_frames: number of frames N (indices 0..N-1, at most ``MAX_INDEX + 1``).
        fps: frame rate, e.g. ``30``, ``25``, ``Fraction(30000, 1001)``.
        width: frame width (even).
        height: frame height (even).
        codec: ``"libx264"`` (with B-frames), ``"mpeg4"`` or ``"libaom-av1"``.
        gop: keyframe interval; None keeps the encoder default (x264: 250, i.e. one keyframe for
            short clips).
        crf: x264 constant rate factor (ignored by mpeg4, which runs at a high bit rate).

    Returns:
        The path written.
    """
    if not 1 <= num_frames <= MAX_INDEX + 1:
        raise ValueError(f"num_frames must be in 1..{MAX_INDEX + 1}, got {num_frames}")
    _cell_size(width, height)
    frames = (index_frame(i, width, height) for i in range(num_frames))
    return _encode(path, frames, fps=fps, width=width, height=height, codec=codec, gop=gop, crf=crf)


def _background(size: int, seed: int) -> np.ndarray:
    """Low-contrast, low-saturation texture (uint8, size × size × 3) determined by ``seed``."""
    from PIL import Image  # lazy

    rng = np.random.default_rng(seed)
    grid = max(2, size // 8)
    grey = rng.integers(70, 170, size=(grid, grid, 1))
    tint = rng.integers(-12, 13, size=(grid, grid, 3))
    coarse = np.clip(grey + tint, 0, 255).astype(np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((size, size), Image.Resampling.BILINEAR))


def square_positions(
    *,
    direction: str,
    seed: int,
    num_frames: int = 16,
    size: int = 64,
    square: int | None = None,
    travel: float = 0.6,
) -> list[tuple[int, int]]:
    """Top-left ``(x, y)`` of the square in each frame of :func:`write_moving_square_video`.

    Args:
        direction: one of :data:`DIRECTIONS`.
        seed: jitters the start position (and picks the background texture in the writer).
        num_frames: number of frames.
        size: frame side in pixels.
        square: square side in pixels (default ``size // 4``).
        travel: fraction of the free span the square covers (the start is jittered within the rest).

    Returns:
        One ``(x, y)`` per frame; the square always lies fully inside the frame.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}; choose one of {DIRECTIONS}")
    side = square if square is not None else size // 4
    if not 1 <= side < size:
        raise ValueError(f"square side must be in 1..{size - 1}, got {side}")
    rng = np.random.default_rng([seed, 1])  # independent of the background's stream
    span = size - side  # the largest top-left coordinate that keeps the square inside
    if not 0.0 < travel <= 1.0:
        raise ValueError(f"travel must be a fraction of the free span in (0, 1], got {travel}")
    distance = int(span * travel)
    start = int(rng.integers(0, span - distance + 1))
    across = int(rng.integers(0, span + 1))
    steps = max(num_frames - 1, 1)
    positions = []
    for t in range(num_frames):
        along = start + round(distance * t / steps)
        if direction in ("left", "up"):
            along = span - along
        positions.append((along, across) if direction in ("left", "right") else (across, along))
    return positions


def _colour_rgb(colour: str | tuple[int, int, int]) -> tuple[int, int, int]:
    """An RGB triple from a :data:`COLOURS` name or a triple."""
    if isinstance(colour, str):
        if colour not in COLOURS:
            raise ValueError(f"unknown colour {colour!r}; choose one of {sorted(COLOURS)}")
        return COLOURS[colour]
    rgb = tuple(int(c) for c in colour)
    if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
        raise ValueError(f"colour must be a name or an RGB triple of 0..255, got {colour!r}")
    return rgb  # type: ignore[return-value]


def moving_square_frames(
    *,
    colour: str | tuple[int, int, int],
    direction: str,
    seed: int,
    num_frames: int = 16,
    size: int = 64,
    square: int | None = None,
    travel: float = 0.6,
) -> Iterator[np.ndarray]:
    """The RGB frames :func:`write_moving_square_video` encodes (uint8, size × size × 3 each)."""
    rgb = np.array(_colour_rgb(colour), dtype=np.uint8)
    side = square if square is not None else size // 4
    background = _background(size, seed)
    positions = square_positions(
        direction=direction, seed=seed, num_frames=num_frames, size=size, square=side, travel=travel
    )
    for x, y in positions:
        frame = background.copy()
        frame[y : y + side, x : x + side] = rgb
        yield frame


def write_moving_square_video(
    path: str | Path,
    *,
    colour: str | tuple[int, int, int],
    direction: str,
    seed: int,
    num_frames: int = 16,
    fps: FrameRate = 8,
    size: int = 64,
    square: int | None = None,
    codec: str = "libx264",
    travel: float = 0.6,
) -> Path:
    """Write a clip of a coloured square moving across a textured background.

    Args:
        path: output file (suffix picks the container).
        colour: a :data:`COLOURS` name (or an RGB triple).
        direction: one of :data:`DIRECTIONS`; the square travels ``travel`` of the free span that way.
        seed: picks the background texture and jitters the start position.
        num_frames: number of frames.
        fps: frame rate.
        size: frame side in pixels (even).
        square: square side in pixels (default ``size // 4``).
        codec: ``"libx264"`` or ``"mpeg4"``.
        travel: fraction of the free span covered (default 3/5).

    Returns:
        The path written. Decoded pixels are identical across runs for the same arguments.
    """
    frames = moving_square_frames(
        colour=colour, direction=direction, seed=seed, num_frames=num_frames, size=size, square=square, travel=travel
    )
    return _encode(path, frames, fps=fps, width=size, height=size, codec=codec, gop=None, crf=18)


def write_audio_only(path: str | Path, *, seconds: float = 1.0, sample_rate: int = 16000) -> Path:
    """Write a container (``.m4a`` / ``.mp4``) holding only an AAC sine tone: no video stream.

    Args:
        path: output file.
        seconds: duration of the tone.
        sample_rate: audio sample rate in Hz.

    Returns:
        The path written.
    """
    import av  # lazy

    out = Path(path)
    total = int(round(seconds * sample_rate))
    tone = (0.2 * np.sin(2 * np.pi * 440.0 * np.arange(total) / sample_rate)).astype(np.float32)
    with av.open(str(out), mode="w") as container:
        stream = container.add_stream("aac", rate=sample_rate, layout="mono")
        chunk = 1024
        for start in range(0, total, chunk):
            samples = tone[start : start + chunk].reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = sample_rate, start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return out


__all__ = [
    "CODECS",
    "COLOURS",
    "DIRECTIONS",
    "MAX_INDEX",
    "index_frame",
    "moving_square_frames",
    "read_index",
    "square_positions",
    "write_audio_only",
    "write_index_video",
    "write_moving_square_video",
]
