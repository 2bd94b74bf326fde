"""Synthetic clips: the index code survives encoding, the moving square is where it should be."""

from __future__ import annotations

import itertools
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from videolmm.toy.synthetic import (
    COLOURS,
    DIRECTIONS,
    MAX_INDEX,
    index_frame,
    moving_square_frames,
    read_index,
    square_positions,
    write_audio_only,
    write_index_video,
    write_moving_square_video,
)


def _decode_all(path: Path) -> tuple[list[np.ndarray], list[bool], dict[str, object]]:
    """Every frame as RGB, the key-frame flags, and the stream's header facts (read while open)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        facts = {"frames": stream.frames, "rate": stream.average_rate, "codec": stream.codec_context.name}
        frames, keys = [], []
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))
            keys.append(bool(frame.key_frame))
    return frames, keys, facts


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("synthetic")


# ----- index code ---------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(128, 96), (64, 48), (96, 128), (64, 64), (320, 240)])
def test_index_code_round_trips_uncompressed(size: tuple[int, int]) -> None:
    width, height = size
    for index in [0, 1, 2, 7, 255, 256, 1000, 2047, MAX_INDEX]:
        frame = index_frame(index, width, height)
        assert frame.shape == (height, width, 3) and frame.dtype == np.uint8
        assert read_index(frame) == index


def test_index_code_rejects_frames_without_a_code() -> None:
    with pytest.raises(ValueError, match="check bits"):
        read_index(np.zeros((96, 128, 3), np.uint8))  # all cells black: check bits must not be 0000
    with pytest.raises(ValueError, match="check bits"):
        read_index(np.full((96, 128, 3), 255, np.uint8))
    with pytest.raises(ValueError, match="neither black nor white"):
        read_index(np.full((96, 128, 3), 128, np.uint8))
    with pytest.raises(ValueError, match="range"):
        index_frame(MAX_INDEX + 1)
    with pytest.raises(ValueError, match="too small"):
        index_frame(0, 16, 16)


def test_index_frames_differ_outside_the_code() -> None:
    # the texture moves, so consecutive frames differ even where the code does not
    a, b = index_frame(10), index_frame(11)
    assert not np.array_equal(a[:, 100:], b[:, 100:])


@pytest.mark.parametrize(
    ("codec", "fps", "gop", "num_frames"),
    [
        ("libx264", 30, None, 90),
        ("libx264", Fraction(30000, 1001), 5, 47),
        ("libx264", 24, 12, 40),
        ("mpeg4", 25, None, 60),
    ],
)
def test_index_video_every_frame_decodes_to_its_index(
    synth_dir: Path, codec: str, fps: int | Fraction, gop: int | None, num_frames: int
) -> None:
    path = write_index_video(
        synth_dir / f"idx_{codec}_{gop}_{num_frames}.mp4", num_frames, fps=fps, codec=codec, gop=gop
    )
    frames, keys, facts = _decode_all(path)
    assert [read_index(f) for f in frames] == list(range(num_frames))
    assert facts["frames"] == num_frames
    assert facts["rate"] == Fraction(fps)
    assert facts["codec"] == {"libx264": "h264", "mpeg4": "mpeg4"}[codec]
    if gop is not None:
        assert [i for i, k in enumerate(keys) if k] == list(range(0, num_frames, gop))


def test_index_video_decodes_identically_across_writes(synth_dir: Path) -> None:
    a = write_index_video(synth_dir / "same_a.mp4", 20, width=64, height=48)
    b = write_index_video(synth_dir / "same_b.mp4", 20, width=64, height=48)
    fa, _, _ = _decode_all(a)
    fb, _, _ = _decode_all(b)
    assert all(np.array_equal(x, y) for x, y in zip(fa, fb, strict=True))


def test_index_video_rejects_bad_arguments(synth_dir: Path) -> None:
    with pytest.raises(ValueError, match="codec"):
        write_index_video(synth_dir / "x.mp4", 3, codec="nope")
    with pytest.raises(ValueError, match="even"):
        write_index_video(synth_dir / "x.mp4", 3, width=65)
    with pytest.raises(ValueError, match="num_frames"):
        write_index_video(synth_dir / "x.mp4", 0)


# ----- moving square ------------------------------------------------------------------------------


def test_colours_and_directions() -> None:
    assert len(COLOURS) >= 6
    assert DIRECTIONS == ("left", "right", "up", "down")
    for (_, a), (_, b) in itertools.combinations(COLOURS.items(), 2):
        assert np.linalg.norm(np.subtract(a, b)) > 150


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_square_stays_inside_and_moves_the_right_way(direction: str) -> None:
    for seed, size, square in [(0, 64, None), (1, 64, 10), (7, 32, 8), (3, 96, None)]:
        side = square or size // 4
        pos = square_positions(direction=direction, seed=seed, num_frames=16, size=size, square=square)
        assert len(pos) == 16
        assert all(0 <= x <= size - side and 0 <= y <= size - side for x, y in pos)
        xs, ys = [p[0] for p in pos], [p[1] for p in pos]
        moving, still = (xs, ys) if direction in ("left", "right") else (ys, xs)
        assert len(set(still)) == 1
        step = np.diff(moving)
        assert (step >= 0).all() if direction in ("right", "down") else (step <= 0).all()
        assert abs(moving[-1] - moving[0]) >= (size - side) // 2


def test_start_position_depends_on_seed() -> None:
    starts = {square_positions(direction="right", seed=s)[0] for s in range(10)}
    assert len(starts) > 3


def test_square_frames_show_the_square_on_the_background() -> None:
    frames = list(moving_square_frames(colour="red", direction="down", seed=5, num_frames=4, size=64))
    pos = square_positions(direction="down", seed=5, num_frames=4, size=64)
    for frame, (x, y) in zip(frames, pos, strict=True):
        assert (frame[y : y + 16, x : x + 16] == COLOURS["red"]).all()
        mask = np.ones(frame.shape[:2], bool)
        mask[y : y + 16, x : x + 16] = False
        background = frame[mask].astype(int)
        assert (np.abs(background - background.mean(axis=1, keepdims=True)) < 30).all()  # low saturation
    other = next(moving_square_frames(colour="red", direction="down", seed=6, num_frames=4, size=64))
    assert not np.array_equal(frames[0], other)


@pytest.mark.parametrize(("colour", "direction"), [("red", "right"), ("cyan", "up"), ("yellow", "left")])
def test_square_video_decodes_to_the_colour_at_the_position(synth_dir: Path, colour: str, direction: str) -> None:
    path = write_moving_square_video(synth_dir / f"sq_{colour}.mp4", colour=colour, direction=direction, seed=11)
    frames, _, facts = _decode_all(path)
    assert len(frames) == 16 and facts["rate"] == 8 and frames[0].shape == (64, 64, 3)
    for frame, (x, y) in zip(frames, square_positions(direction=direction, seed=11), strict=True):
        centre = frame[y + 4 : y + 12, x + 4 : x + 12].reshape(-1, 3).mean(axis=0)
        assert np.abs(centre - COLOURS[colour]).max() < 20
    again, _, _ = _decode_all(
        write_moving_square_video(synth_dir / f"sq_{colour}_2.mp4", colour=colour, direction=direction, seed=11)
    )
    assert all(np.array_equal(a, b) for a, b in zip(frames, again, strict=True))


def test_repeated_writes_of_a_clip_are_identical(synth_dir: Path) -> None:
    """x264's macroblock tree once made one in ~3 writes differ: many writes, one outcome."""
    outcomes = {
        write_moving_square_video(synth_dir / f"rep_{i}.mp4", colour="red", direction="left", seed=0).read_bytes()
        for i in range(12)
    }
    assert len(outcomes) == 1


def test_square_video_rejects_bad_arguments(synth_dir: Path) -> None:
    with pytest.raises(ValueError, match="colour"):
        write_moving_square_video(synth_dir / "bad.mp4", colour="mauve", direction="up", seed=0)
    with pytest.raises(ValueError, match="direction"):
        write_moving_square_video(synth_dir / "bad.mp4", colour="red", direction="north", seed=0)
    with pytest.raises(ValueError, match="square"):
        write_moving_square_video(synth_dir / "bad.mp4", colour="red", direction="up", seed=0, square=64)


def test_audio_only_file_has_no_video_stream(synth_dir: Path) -> None:
    path = write_audio_only(synth_dir / "tone.m4a")
    with av.open(str(path)) as container:
        assert [s.type for s in container.streams] == ["audio"]
        assert container.streams.audio[0].codec_context.name == "aac"
