"""A corpus of hostile media, built by the tests (issue 8): broken, lying and escaping inputs.

:func:`build_corpus` writes every case into a directory, deterministically and small (64-px
clips, a few frames), and returns ``{case name: HostileCase}``. The cases are real files, not
mocks: truncations cut at byte offsets found by parsing the MP4 box tree, header lies are
written by patching the fields FFmpeg reads (``mvhd``/``mdhd`` durations, ``stts`` deltas, the
``tkhd`` display matrix, the JPEG frame headers and ``stsd`` sizes), corruption overwrites bytes
inside ``mdat``.

Outcome classes (``HostileCase.outcome``):

* ``"error"``: every path refuses it with a typed error naming the input and the reason;
* ``"partial"``: the core decodes it with a documented caveat (see ``docs/hostile-inputs.md``);
* ``"escape"``: a symlink out of the media root: decoded by the core (which has no root), refused
  by the served API.
"""

from __future__ import annotations

import shutil
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

#: Container boxes whose payload is a list of boxes (the ones on the way to ``stsd``/``stts``).
_CONTAINERS = frozenset({b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts"})
#: Every case :func:`build_corpus` writes, in its order (the core, lmms-eval and API tests share it).
CASES = [
    "zero_byte", "truncated_mid_moov", "truncated_mid_mdat", "truncated_mid_mdat_indexed", "random_bytes",
    "png_named_mp4", "audio_only", "one_frame", "absurd_resolution", "huge_resolution", "variable_frame_rate",
    "rotated", "hours_claimed", "zero_fps", "corrupt_packets", "frames_dir_non_image", "frames_dir_fake_png",
    "symlink_outside", "hls_playlist", "concat_script", "sdp_description", "image2_pattern", "decode_bomb",
    "png_bomb", "eps_named_png",
]  # fmt: skip
#: Declared size of the ``absurd_resolution`` case: 4.2 gigapixels a frame, beyond FFmpeg's own limit.
ABSURD_SIDE = 65000
#: Declared size of the ``huge_resolution`` case: FFmpeg accepts it (768 MB per RGB frame); the core must not.
HUGE_SIDE = 16000
#: The ``decode_bomb`` case: one keyframe, then tiny P frames, declared at a huge rate.
BOMB_FRAMES, BOMB_FPS = 2000, 10000
#: The ``png_bomb`` case's declared size (Pillow's decompression-bomb error starts at ~179 Mpx).
PNG_BOMB_SIZE = (20000, 10000)
#: An SDP description: FFmpeg's sdp demuxer would bind the UDP port and wait for RTP packets.
SDP_TEXT = (
    "v=0\no=- 0 0 IN IP4 127.0.0.1\ns=videolmm\nc=IN IP4 127.0.0.1\nt=0 0\n"
    "m=video 5004 RTP/AVP 96\na=rtpmap:96 H264/90000\n"
)


@dataclass(frozen=True)
class HostileCase:
    """One corpus entry.

    Attributes:
        name: the case name (also the file's stem).
        path: the file, directory or symlink.
        description: what is hostile about it.
        outcome: ``"error"``, ``"partial"`` or ``"escape"`` (see the module docstring).
        reasons: phrases of which the error message must contain one (decoders word some failures
            differently); for a partial result, the caveat in words.
    """

    name: str
    path: Path
    description: str
    outcome: str
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Box:
    """An MP4 box: ``start`` is its first byte (the size field), ``end`` one past its last byte."""

    kind: bytes
    start: int
    header: int
    end: int

    @property
    def payload(self) -> int:
        """Offset of the first byte after the header."""
        return self.start + self.header


def iter_boxes(data: bytes, start: int = 0, end: int | None = None) -> Iterator[Box]:
    """The boxes between ``start`` and ``end``, descending into container boxes (depth first)."""
    end = len(data) if end is None else end
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", data[pos + 8 : pos + 16])[0], 16
        elif size == 0:
            size = end - pos
        if size < header:
            raise ValueError(f"bad box size {size} at {pos}")
        box = Box(kind, pos, header, min(pos + size, end))
        yield box
        if kind in _CONTAINERS:
            yield from iter_boxes(data, box.payload, box.end)
        pos += size


def find_boxes(data: bytes, kind: bytes) -> list[Box]:
    """Every box of one type, in file order."""
    return [b for b in iter_boxes(data) if b.kind == kind]


def _one(data: bytes, kind: bytes) -> Box:
    boxes = find_boxes(data, kind)
    if len(boxes) != 1:
        raise ValueError(f"expected one {kind!r} box, found {len(boxes)}")
    return boxes[0]


# ----- writers --------------------------------------------------------------------------------


def _frames(num: int, width: int, height: int, seed: int) -> list[np.ndarray]:
    from videolmm.toy.synthetic import moving_square_frames

    size = max(width, height)
    frames = moving_square_frames(colour="red", direction="right", seed=seed, num_frames=num, size=size)
    return [np.ascontiguousarray(f[:height, :width]) for f in frames]


def write_clip(
    path: Path,
    *,
    num_frames: int = 16,
    width: int = 64,
    height: int = 64,
    codec: str = "libx264",
    pts: list[int] | None = None,
    time_base: Fraction = Fraction(1, 8),
    faststart: bool = False,
    seed: int = 7,
) -> Path:
    """Encode a moving-square clip, optionally with explicit ``pts`` (in ``time_base`` units)."""
    import av

    options = {"movflags": "faststart"} if faststart else {}
    rate = Fraction(1, 1) / time_base if pts is None else Fraction(8)
    with av.open(str(path), mode="w", options=options) as container:
        stream = container.add_stream(codec, rate=rate, options={"threads": "1"} if codec != "mjpeg" else {})
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        stream.codec_context.thread_count = 1
        stream.codec_context.time_base = time_base
        for i, rgb in enumerate(_frames(num_frames, width, height, seed)):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = (i if pts is None else pts[i]), time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def write_decode_bomb(path: Path, *, num_frames: int = BOMB_FRAMES, fps: int = BOMB_FPS, side: int = 32) -> Path:
    """One keyframe followed by ``num_frames - 1`` P-skip frames of a still picture, declared at ``fps``.

    Small on disk (~13 bytes a frame) but every frame up to a wanted one must be decoded: the
    decode bomb of issue 15.
    """
    import av

    params = f"keyint={num_frames + 1}:min-keyint={num_frames + 1}:scenecut=0:bframes=0"
    with av.open(str(path), mode="w") as container:
        options = {"preset": "ultrafast", "tune": "zerolatency", "x264-params": params, "threads": "1"}
        stream = container.add_stream("libx264", rate=fps, options=options)
        stream.width = stream.height = side
        stream.pix_fmt = "yuv420p"
        frame = av.VideoFrame.from_ndarray(_frames(1, side, side, 21)[0], format="rgb24")
        for i in range(num_frames):
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def write_png_bomb(path: Path, size: tuple[int, int] = PNG_BOMB_SIZE) -> Path:
    """A 16x16 PNG whose IHDR (CRC fixed) declares ``size``: Pillow refuses it as a decompression bomb."""
    import io
    import zlib

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(_frames(1, 16, 16, 22)[0]).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    ihdr = data.index(b"IHDR")
    struct.pack_into(">II", data, ihdr + 4, *size)
    struct.pack_into(">I", data, ihdr + 17, zlib.crc32(bytes(data[ihdr : ihdr + 17])))
    path.write_bytes(bytes(data))
    return path


def write_audio(path: Path) -> Path:
    """One second of an AAC tone in an MP4 container: no video stream."""
    from videolmm.toy.synthetic import write_audio_only

    tmp = write_audio_only(path.with_suffix(".m4a"))
    tmp.rename(path)
    return path


def _patch(data: bytearray, offset: int, fmt: str, *values: int) -> None:
    struct.pack_into(fmt, data, offset, *values)


def _full_box_version(data: bytes | bytearray, box: Box) -> int:
    return data[box.payload]


def _set_durations(data: bytearray, seconds: int) -> None:
    """Rewrite ``mvhd``, ``tkhd`` and ``mdhd`` durations to ``seconds`` (in each box's own timescale)."""
    mvhd = _one(bytes(data), b"mvhd")
    if _full_box_version(data, mvhd) != 0:
        raise ValueError("expected a version-0 mvhd")
    (movie_scale,) = struct.unpack_from(">I", data, mvhd.payload + 12)
    _patch(data, mvhd.payload + 16, ">I", seconds * movie_scale)
    for tkhd in find_boxes(bytes(data), b"tkhd"):
        _patch(data, tkhd.payload + 20, ">I", seconds * movie_scale)
    for mdhd in find_boxes(bytes(data), b"mdhd"):
        (scale,) = struct.unpack_from(">I", data, mdhd.payload + 12)
        _patch(data, mdhd.payload + 16, ">I", seconds * scale)
    for elst in find_boxes(bytes(data), b"elst"):  # the edit list would otherwise keep the real length
        if _full_box_version(data, elst) == 0:
            (count,) = struct.unpack_from(">I", data, elst.payload + 4)
            for k in range(count):
                _patch(data, elst.payload + 8 + 12 * k, ">I", seconds * movie_scale)


def _set_stts_deltas(data: bytearray, delta: int) -> None:
    """Every ``stts`` entry's sample delta := ``delta`` (0: all frames at the same instant)."""
    for stts in find_boxes(bytes(data), b"stts"):
        (count,) = struct.unpack_from(">I", data, stts.payload + 4)
        for k in range(count):
            _patch(data, stts.payload + 8 + 8 * k + 4, ">I", delta)


def _rotate_display_matrix(data: bytearray, degrees: int) -> None:
    """Write a rotation into the video ``tkhd`` display matrix (what FFmpeg exposes as side data)."""
    one, minus_one = 0x00010000, 0xFFFF0000
    matrices = {
        90: (0, one, 0, minus_one, 0, 0),
        180: (minus_one, 0, 0, 0, minus_one, 0),
        270: (0, minus_one, 0, one, 0, 0),
    }
    a, b, u, c, d, v = matrices[degrees]
    for tkhd in find_boxes(bytes(data), b"tkhd"):
        version = _full_box_version(data, tkhd)
        matrix = tkhd.payload + (40 if version == 0 else 52)
        _patch(data, matrix, ">9I", a, b, u, c, d, v, 0, 0, 0x40000000)


def _patch_jpeg_sizes(data: bytearray, width: int, height: int) -> int:
    """Every JPEG SOF0/SOF1 header inside ``mdat`` and the ``stsd`` entry declare ``width×height``."""
    mdat = _one(bytes(data), b"mdat")
    patched, pos = 0, mdat.payload
    while True:
        pos = data.find(b"\xff\xc0", pos, mdat.end)
        if pos < 0:
            break
        _patch(data, pos + 5, ">HH", height, width)  # FFC0, length(2), precision(1), height, width
        patched += 1
        pos += 2
    stsd = _one(bytes(data), b"stsd")
    entry = stsd.payload + 8  # version/flags, entry count
    _patch(data, entry + 8 + 24, ">HH", width, height)  # size+type, 6 reserved + dref(2), 16 pre-defined
    for tkhd in find_boxes(bytes(data), b"tkhd"):
        size = tkhd.payload + (76 if _full_box_version(data, tkhd) == 0 else 88)
        _patch(data, size, ">II", width << 16, height << 16)
    return patched


# ----- the corpus -----------------------------------------------------------------------------


def build_corpus(root: Path, outside: Path | None = None) -> dict[str, HostileCase]:
    """Write every hostile case under ``root`` (created if needed).

    Args:
        root: the corpus directory (the media root in the served-API test).
        outside: a directory outside ``root`` for the escape symlink's target (default: a sibling
            ``<root>-outside``).

    Returns:
        ``{name: HostileCase}`` in a fixed order.
    """
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    outside = outside or root.with_name(root.name + "-outside")
    outside.mkdir(parents=True, exist_ok=True)
    cases: list[HostileCase] = []

    def add(name: str, path: Path, description: str, outcome: str, *reasons: str) -> None:
        cases.append(HostileCase(name, path, description, outcome, reasons))

    scratch = root / ".build"  # hidden: holds the clean sources the patched files are made from
    scratch.mkdir(exist_ok=True)
    plain = write_clip(scratch / "plain.mp4")
    fast = write_clip(scratch / "fast.mp4", faststart=True)
    plain_bytes, fast_bytes = plain.read_bytes(), fast.read_bytes()

    (root / "zero_byte.mp4").write_bytes(b"")
    add("zero_byte", root / "zero_byte.mp4", "an empty file named .mp4", "error", "empty file")

    moov = _one(fast_bytes, b"moov")
    if moov.start > _one(fast_bytes, b"mdat").start:
        raise AssertionError("faststart did not move moov to the front")
    stbl = _one(fast_bytes, b"stbl")
    cut = (stbl.payload + stbl.end) // 2  # inside the sample table, inside moov
    (root / "truncated_mid_moov.mp4").write_bytes(fast_bytes[:cut])
    add(
        "truncated_mid_moov",
        root / "truncated_mid_moov.mp4",
        f"faststart mp4 cut at byte {cut}, inside moov's sample table ({moov.start}..{moov.end})",
        "error",
        "could be decoded while probing",
    )

    mdat = _one(plain_bytes, b"mdat")
    cut = (mdat.payload + mdat.end) // 2
    (root / "truncated_mid_mdat.mp4").write_bytes(plain_bytes[:cut])
    add(
        "truncated_mid_mdat",
        root / "truncated_mid_mdat.mp4",
        f"mp4 (moov at the end) cut at byte {cut}, inside mdat ({mdat.start}..{mdat.end}): the index is lost",
        "error",
        "not a readable media container",
    )

    mdat_fast = _one(fast_bytes, b"mdat")
    cut = (mdat_fast.payload + mdat_fast.end) // 2
    (root / "truncated_mid_mdat_indexed.mp4").write_bytes(fast_bytes[:cut])
    add(
        "truncated_mid_mdat_indexed",
        root / "truncated_mid_mdat_indexed.mp4",
        f"faststart mp4 cut at byte {cut}, inside mdat: the index promises 16 frames, half are there",
        "error",
        "could be decoded while probing",
        "truncated",
    )

    (root / "random_bytes.mp4").write_bytes(np.random.default_rng(8).integers(0, 256, 4096, np.uint8).tobytes())
    add("random_bytes", root / "random_bytes.mp4", "4 KiB of random bytes named .mp4", "error", "not a readable")

    png = scratch / "still.png"
    Image.fromarray(_frames(1, 64, 64, 9)[0]).save(png)
    shutil.copy(png, root / "png_named_mp4.mp4")
    add("png_named_mp4", root / "png_named_mp4.mp4", "a PNG image named .mp4", "error", "still image")

    add("audio_only", write_audio(root / "audio_only.mp4"), "an AAC tone in an mp4, no video", "error", "no video")

    add(
        "one_frame",
        write_clip(root / "one_frame.mp4", num_frames=1),
        "a video of a single frame",
        "partial",
        "the only frame, repeated",
    )

    mjpeg = write_clip(scratch / "mjpeg.mp4", num_frames=4, codec="mjpeg").read_bytes()
    for name, side, reason in (
        ("absurd_resolution", ABSURD_SIDE, "declares no frame size"),
        ("huge_resolution", HUGE_SIDE, "pixels per frame"),
    ):
        jpeg = bytearray(mjpeg)
        if _patch_jpeg_sizes(jpeg, side, side) != 4:
            raise AssertionError("expected one JPEG header per frame")
        (root / f"{name}.mp4").write_bytes(bytes(jpeg))
        gigabytes = side * side * 3 / 1e9
        add(name, root / f"{name}.mp4", f"MJPEG frames declaring {side}x{side} ({gigabytes:.1f} GB per RGB frame)",
            "error", reason)  # fmt: skip

    gaps = [0, 1, 2, 10, 11, 30, 31, 32, 60, 61, 90, 91, 92, 93, 140, 141]  # ms: bursts and pauses
    add(
        "variable_frame_rate",
        write_clip(root / "variable_frame_rate.mp4", pts=[g * 10 for g in gaps], time_base=Fraction(1, 1000)),
        "16 frames at irregular times (gaps of 10 to 500 ms)",
        "partial",
        "frames by position; fps is the average rate, timestamps i/fps ignore the real gaps",
    )

    rotated = bytearray(write_clip(scratch / "wide.mp4", width=64, height=32).read_bytes())
    _rotate_display_matrix(rotated, 90)
    (root / "rotated.mp4").write_bytes(bytes(rotated))
    add(
        "rotated",
        root / "rotated.mp4",
        "a 64x32 clip whose tkhd display matrix rotates it by 90 degrees",
        "partial",
        "frames turned upright by the display matrix (as decord does)",
    )

    hours = bytearray(write_clip(scratch / "hours.mp4", num_frames=8, codec="mpeg4").read_bytes())
    (scale,) = struct.unpack_from(">I", hours, _one(bytes(hours), b"mdhd").payload + 12)
    _set_stts_deltas(hours, 3 * 3600 * scale // 8)  # 8 frames, 22.5 minutes apart
    _set_durations(hours, 3 * 3600)
    (root / "hours_claimed.mp4").write_bytes(bytes(hours))
    add(
        "hours_claimed",
        root / "hours_claimed.mp4",
        "8 frames whose timestamps (stts) and durations span 3 hours",
        "partial",
        "3 hours at 1/1350 fps",
    )

    zero = bytearray(write_clip(scratch / "zero.mp4", num_frames=8, codec="mpeg4").read_bytes())
    _set_stts_deltas(zero, 0)
    _set_durations(zero, 0)
    (root / "zero_fps.mp4").write_bytes(bytes(zero))
    add(
        "zero_fps",
        root / "zero_fps.mp4",
        "mpeg4 clip with stts deltas and durations zeroed: FFmpeg derives no frame rate (0 fps)",
        "error",
        "no decodable frames",
        "frame rate",
        "decord failed",
    )

    corrupt = bytearray(write_clip(scratch / "gop.mp4", num_frames=16).read_bytes())
    mdat_c = _one(bytes(corrupt), b"mdat")
    lo = mdat_c.payload + (mdat_c.end - mdat_c.payload) // 3
    noise = np.random.default_rng(11).integers(0, 256, (mdat_c.end - mdat_c.payload) // 3, np.uint8).tobytes()
    corrupt[lo : lo + len(noise)] = noise
    (root / "corrupt_packets.mp4").write_bytes(bytes(corrupt))
    add(
        "corrupt_packets",
        root / "corrupt_packets.mp4",
        f"the middle third of mdat ({len(noise)} bytes) overwritten with random bytes",
        "error",
        "decoding failed",
        "decord failed to decode",
    )

    frames_dir = root / "frames_with_text"
    frames_dir.mkdir(exist_ok=True)
    for i, frame in enumerate(_frames(4, 64, 64, 12)):
        Image.fromarray(frame).save(frames_dir / f"{i:04d}.png")
    (frames_dir / "readme.txt").write_text("not a frame")
    add("frames_dir_non_image", frames_dir, "a frames directory holding readme.txt", "error", "not an image file")

    fake_dir = root / "frames_with_fake_png"
    fake_dir.mkdir(exist_ok=True)
    for i, frame in enumerate(_frames(4, 64, 64, 13)):
        Image.fromarray(frame).save(fake_dir / f"{i:04d}.png")
    (fake_dir / "0003.png").write_bytes(b"definitely not a png")
    add(
        "frames_dir_fake_png",
        fake_dir,
        "a frames directory whose last .png holds text",
        "error",
        "not a readable image",
    )

    target = write_clip(outside / "outside.mp4", seed=14)
    link = root / "symlink_outside.mp4"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target)
    add(
        "symlink_outside",
        link,
        f"a symlink to {target.name} outside the media root",
        "escape",
        "decoded from the link target",
    )
    add_ffmpeg_cases(root, add)
    shutil.rmtree(scratch)
    return {c.name: c for c in cases}


def add_ffmpeg_cases(root: Path, add) -> None:
    """Issue 15's cases: FFmpeg demuxers that must never run on untrusted input, a decode bomb,
    a Pillow decompression bomb and an EPS file (Ghostscript) named .png."""
    from PIL import Image

    bait = write_clip(root / "bait.mp4", seed=15)  # what the playlist and the script point at
    (root / "hls_playlist.mp4").write_text(
        f"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\n{bait.name}\n#EXT-X-ENDLIST\n"
    )
    add("hls_playlist", root / "hls_playlist.mp4", f"an HLS playlist naming {bait.name}, sent as .mp4", "error",
        "HLS playlist")  # fmt: skip
    (root / "concat_script.mp4").write_text(f"ffconcat version 1.0\nfile {bait.name}\nfile ../outside/outside.mp4\n")
    add("concat_script", root / "concat_script.mp4", "an ffconcat script with relative paths (one leaving the root)",
        "error", "concat script")  # fmt: skip
    (root / "sdp_description.mp4").write_text(SDP_TEXT)
    add("sdp_description", root / "sdp_description.mp4", "an SDP description (RTP on UDP port 5004)", "error", "SDP")
    pattern = root / "image2_pattern%03d.png"
    pattern.write_text("not an image: FFmpeg's image2 demuxer would read image2_pattern001.png, 002, ...")
    for i in range(1, 4):
        Image.fromarray(_frames(1, 64, 64, 30 + i)[0]).save(root / f"image2_pattern{i:03d}.png")
    add("image2_pattern", pattern, "a file named image2_pattern%03d.png beside image2_pattern001..003.png", "error",
        "not one of the accepted container formats", "not a readable image")  # fmt: skip
    add("decode_bomb", write_decode_bomb(root / "decode_bomb.mp4"),
        f"one keyframe and {BOMB_FRAMES - 1} P-skip frames of 32x32 declared at {BOMB_FPS} fps", "partial",
        f"decoded: the core has no limits unless given; {BOMB_FRAMES} frames at {BOMB_FPS} fps")  # fmt: skip
    width, height = PNG_BOMB_SIZE
    add("png_bomb", write_png_bomb(root / "png_bomb.png"), f"a 16x16 PNG whose header declares {width}x{height}",
        "error", "still image", "declares too many pixels")  # fmt: skip
    (root / "eps_named_png.png").write_text("%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 16 16\nshowpage\n%%EOF\n")
    add("eps_named_png", root / "eps_named_png.png", "an EPS document named .png (Pillow would run Ghostscript)",
        "error", "PostScript", "not a readable image in an accepted format")  # fmt: skip


__all__ = [
    "ABSURD_SIDE",
    "BOMB_FPS",
    "BOMB_FRAMES",
    "PNG_BOMB_SIZE",
    "SDP_TEXT",
    "CASES",
    "HUGE_SIDE",
    "Box",
    "HostileCase",
    "build_corpus",
    "find_boxes",
    "iter_boxes",
    "write_clip",
    "write_decode_bomb",
    "write_png_bomb",
]
