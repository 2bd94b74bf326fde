"""Decoders: same frames from every backend, exact indices, typed errors naming the source and reason."""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from videolmm.errors import (
    DecoderUnavailable,
    MediaError,
    MediaNotFound,
    MediaUnreadable,
    NoFrames,
    NoVideoStream,
    UnsupportedCodec,
)
from videolmm.media.base import OpenedVideo, VideoDecoder, describe_source, load_frames, resolve_decoder_name
from videolmm.media.decord import DecordDecoder
from videolmm.media.frames import FramesDirDecoder, ImagesDecoder
from videolmm.media.images import IMAGE_SUFFIXES
from videolmm.media.loader import builtin_decoders
from videolmm.media.pyav import PyAVDecoder
from videolmm.media.sampling import fps_sampler, hound_sampler, uniform_sampler
from videolmm.media.torchcodec import TorchCodecDecoder
from videolmm.toy.synthetic import index_frame, read_index, write_audio_only, write_index_video
from videolmm.types import FrameSelection, SamplingSpec, VideoInfo

CONTAINER_DECODERS = [name for name in ("decord", "pyav", "torchcodec") if builtin_decoders()[name].available()]
# the two the seeds use, required here (decord ships x86-64 wheels only)
SEED_DECODERS = [name for name in ("decord", "pyav") if name in CONTAINER_DECODERS]
UNSORTED = [5, 0, 61, 5, 42, 3, 89, 89]


def _remux_faststart(src: Path, dst: Path) -> Path:
    """Copy an mp4 with its index (moov) in front, so a truncated copy still opens."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", options={"movflags": "faststart"}) as out:
        in_stream = inp.streams.video[0]
        out_stream = out.add_stream_from_template(in_stream)
        for packet in inp.demux(in_stream):
            if packet.dts is None:
                continue
            packet.stream = out_stream
            out.mux(packet)
    return dst


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Index-coded clips and broken inputs, written once."""
    root = tmp_path_factory.mktemp("media")
    files = {
        "h264_long_gop": write_index_video(root / "long.mp4", 90, fps=30),
        "h264_short_gop": write_index_video(root / "short.mp4", 90, fps=30, gop=4),
        "mpeg4": write_index_video(root / "mpeg4.mp4", 90, fps=25, codec="mpeg4"),
        "mkv": write_index_video(root / "clip.mkv", 90, fps=24, width=64, height=48),
        "av1": write_index_video(root / "av1.mp4", 6, fps=30, width=64, height=48, codec="libaom-av1"),
        "audio": write_audio_only(root / "tone.m4a"),
    }
    files["empty"] = root / "empty.mp4"
    files["empty"].write_bytes(b"")
    files["garbage"] = root / "garbage.mp4"
    files["garbage"].write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    whole = files["h264_long_gop"].read_bytes()
    files["truncated"] = root / "truncated.mp4"  # index at the end: cut off
    files["truncated"].write_bytes(whole[: len(whole) // 2])
    fast = _remux_faststart(files["h264_long_gop"], root / "faststart.mp4")
    data = fast.read_bytes()
    files["truncated_faststart"] = root / "truncated_faststart.mp4"  # index intact, frames cut off
    files["truncated_faststart"].write_bytes(data[: len(data) * 2 // 3])
    png = root / "picture.png"
    Image.fromarray(index_frame(3)).save(png)
    files["png_as_mp4"] = root / "picture.mp4"
    files["png_as_mp4"].write_bytes(png.read_bytes())
    files["no_frames"] = root / "no_frames.avi"
    with av.open(str(files["no_frames"]), "w") as container:  # a video stream without a single packet
        stream = container.add_stream("mpeg4", rate=30)
        stream.width, stream.height = 64, 48
        container.start_encoding()
    files["missing"] = root / "missing.mp4"
    return files


@pytest.fixture(scope="session")
def frames_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 PNG frames 0000..0011 written in shuffled order (sorting must restore it), plus a dotfile."""
    folder = tmp_path_factory.mktemp("frames") / "video1"
    folder.mkdir()
    for i in np.random.default_rng(1).permutation(12):
        Image.fromarray(index_frame(int(i), 64, 48)).save(folder / f"c01_{i + 1:04d}.png")
    (folder / ".DS_Store").write_bytes(b"\x00junk")
    return folder


# ----- decoders agree ------------------------------------------------------------------------------


@pytest.mark.parametrize("clip", ["h264_long_gop", "h264_short_gop", "mpeg4"])
@pytest.mark.parametrize("as_bytes", [False, True], ids=["path", "bytes"])
def test_container_decoders_return_bit_identical_frames(media: dict[str, Path], clip: str, as_bytes: bool) -> None:
    source = media[clip].read_bytes() if as_bytes else media[clip]
    results = {}
    for name in CONTAINER_DECODERS:
        with builtin_decoders()[name].open(source) as video:
            results[name] = (video.info, video.read(UNSORTED))
    for info, array in results.values():
        assert info.num_frames == 90 and info.width == 128 and info.height == 96
        assert info.source == describe_source(source)
        assert array.shape == (len(UNSORTED), 96, 128, 3) and array.dtype == np.uint8
        assert [read_index(f) for f in array] == UNSORTED
    (first_info, first), *others = results.values()
    for info, array in others:
        assert info.fps == first_info.fps
        assert np.array_equal(array, first)


@pytest.mark.parametrize("name", SEED_DECODERS)
def test_frame_count_and_rate(media: dict[str, Path], name: str) -> None:
    expected = {"h264_long_gop": (90, 30.0), "mpeg4": (90, 25.0), "mkv": (90, 24.0)}
    for clip, (count, fps) in expected.items():
        with builtin_decoders()[name].open(media[clip]) as video:
            assert (video.info.num_frames, video.info.fps) == (count, fps), clip
            assert read_index(video.read([count - 1])[0]) == count - 1


def test_pyav_counts_frames_like_decord_without_a_header_count(media: dict[str, Path]) -> None:
    with av.open(str(media["mkv"])) as container:
        assert container.streams.video[0].frames == 0  # Matroska has no frame count: packets are counted
    counts = set()
    for name in SEED_DECODERS:
        with builtin_decoders()[name].open(media["mkv"]) as video:
            counts.add(video.info.num_frames)
    assert counts == {90}


@pytest.mark.parametrize("name", CONTAINER_DECODERS)
def test_read_keeps_order_and_duplicates_and_empty(media: dict[str, Path], name: str) -> None:
    with builtin_decoders()[name].open(media["h264_short_gop"]) as video:
        assert [read_index(f) for f in video.read([89, 0, 89, 44])] == [89, 0, 89, 44]
        assert [read_index(f) for f in video.read(np.array([2, 1]))] == [2, 1]  # numpy ints, second read
        assert video.read([]).shape == (0, 96, 128, 3)


@pytest.mark.parametrize("name", CONTAINER_DECODERS)
def test_out_of_range_index_is_a_clear_error(media: dict[str, Path], name: str) -> None:
    path = media["h264_long_gop"]
    with builtin_decoders()[name].open(path) as video:
        with pytest.raises(MediaError, match=r"frame index 90 is out of range.*90 frames \(valid 0\.\.89\)") as err:
            video.read([0, 90])
        assert err.value.source == str(path)
        with pytest.raises(MediaError, match="out of range"):
            video.read([-1])
    with pytest.raises(MediaError, match="after close"):
        video.read([0])


def test_load_frames_rejects_a_sampler_that_leaves_the_video(media: dict[str, Path]) -> None:
    def broken(info: VideoInfo, spec: SamplingSpec) -> FrameSelection:
        return FrameSelection(indices=(0, info.num_frames), timestamps=(0.0, 1.0))

    with pytest.raises(MediaError, match=r"sampler 'broken' chose frame 90 but the video has 90 frames"):
        load_frames(
            media["h264_long_gop"], decoder=PyAVDecoder(), sampler=broken, spec=SamplingSpec(), sampler_name="broken"
        )


@pytest.mark.parametrize("name", SEED_DECODERS)
def test_load_frames_fills_in_provenance(media: dict[str, Path], name: str) -> None:
    spec = SamplingSpec(num_frames=4, force_sample=True)
    frames = load_frames(
        media["mpeg4"], decoder=builtin_decoders()[name], sampler=fps_sampler, spec=spec, sampler_name="fps"
    )
    assert frames.indices == (0, 29, 59, 89)
    assert [read_index(f) for f in frames.array] == [0, 29, 59, 89]
    assert frames.decoder == name and frames.sampler == "fps"
    assert frames.fps == 25.0 and frames.duration == pytest.approx(3.6) and frames.num_source_frames == 90
    assert frames.frame_time == "0.00s,1.16s,2.36s,3.56s"
    assert frames.source == str(media["mpeg4"])


# ----- frames directory and image lists ------------------------------------------------------------


def test_frames_dir_is_read_in_file_name_order(frames_dir: Path) -> None:
    decoder = FramesDirDecoder(fps=2.0)
    with decoder.open(frames_dir) as video:
        assert video.info == VideoInfo(source=str(frames_dir), num_frames=12, fps=2.0, width=64, height=48)
        assert [read_index(f) for f in video.read(range(12))] == list(range(12))
        assert [read_index(f) for f in video.read([11, 0, 11])] == [11, 0, 11]
    frames = load_frames(frames_dir, decoder=decoder, sampler=uniform_sampler, spec=SamplingSpec(num_frames=8))
    assert [read_index(f) for f in frames.array] == np.linspace(0, 11, 8, dtype=int).tolist()
    assert frames.decoder == "frames"


def test_frames_dir_default_fps_and_hound_sampling(frames_dir: Path) -> None:
    assert FramesDirDecoder().open(frames_dir).info.fps == 1.0
    frames = load_frames(
        frames_dir, decoder=FramesDirDecoder(), sampler=uniform_sampler, spec=SamplingSpec(num_frames=3)
    )
    assert frames.indices == (0, 5, 11)
    assert (
        load_frames(frames_dir, decoder=FramesDirDecoder(), sampler=hound_sampler, spec=SamplingSpec()).num_frames == 8
    )


def test_frames_dir_with_a_non_image_file_names_it(tmp_path: Path) -> None:
    for i in range(3):
        Image.fromarray(index_frame(i, 64, 48)).save(tmp_path / f"{i:04d}.jpg")
    (tmp_path / "notes.txt").write_text("not a frame")
    with pytest.raises(MediaUnreadable, match=r"notes\.txt is not an image file") as err:
        FramesDirDecoder().open(tmp_path)
    assert err.value.source == str(tmp_path)


def test_one_image_suffix_list_and_a_gif_is_a_video(tmp_path: Path) -> None:
    assert ".gif" not in IMAGE_SUFFIXES and {".png", ".jpg", ".jpeg"} <= set(IMAGE_SUFFIXES)
    assert "frame.PNG".lower().endswith(IMAGE_SUFFIXES) and not "clip.gif".endswith(IMAGE_SUFFIXES)
    Image.fromarray(index_frame(0, 64, 48)).save(tmp_path / "0001.png")
    Image.fromarray(index_frame(1, 64, 48)).save(tmp_path / "0002.gif")
    with pytest.raises(MediaUnreadable, match=r"0002\.gif is not an image file"):
        FramesDirDecoder().open(tmp_path)


def test_frames_dir_with_a_corrupt_image_names_it(tmp_path: Path) -> None:
    Image.fromarray(index_frame(0, 64, 48)).save(tmp_path / "0001.png")
    (tmp_path / "0002.png").write_bytes(b"definitely not a png")
    with FramesDirDecoder().open(tmp_path) as video:
        assert read_index(video.read([0])[0]) == 0
        with pytest.raises(MediaUnreadable, match=r"0002\.png is not a readable image"):
            video.read([1])


def test_frames_dir_errors(tmp_path: Path) -> None:
    with pytest.raises(NoFrames, match="no frame images"):
        FramesDirDecoder().open(tmp_path)
    with pytest.raises(MediaNotFound, match="no such directory"):
        FramesDirDecoder().open(tmp_path / "nope")
    Image.fromarray(index_frame(0, 64, 48)).save(tmp_path / "0001.png")
    Image.fromarray(index_frame(1, 128, 96)).save(tmp_path / "0002.png")
    with pytest.raises(MediaUnreadable, match=r"0002\.png is 128x96 but the first frame is 64x48"):
        FramesDirDecoder().open(tmp_path).read([0, 1])


def test_images_list_of_arrays_pil_images_and_paths(tmp_path: Path) -> None:
    path = tmp_path / "two.png"
    Image.fromarray(index_frame(2, 64, 48)).save(path)
    images = [index_frame(0, 64, 48), Image.fromarray(index_frame(1, 64, 48)), path, str(path)]
    with ImagesDecoder().open(images) as video:
        assert video.info == VideoInfo(source="<images:4>", num_frames=4, fps=1.0, width=64, height=48)
        assert [read_index(f) for f in video.read([3, 0, 1, 2])] == [2, 0, 1, 2]
    stacked = np.stack([index_frame(i, 64, 48) for i in range(5)])
    frames = load_frames(
        stacked, decoder=ImagesDecoder(fps=5.0), sampler=uniform_sampler, spec=SamplingSpec(num_frames=3)
    )
    assert [read_index(f) for f in frames.array] == [0, 2, 4]
    assert frames.source == "<images:5>" and frames.fps == 5.0


def test_images_list_errors(tmp_path: Path) -> None:
    with pytest.raises(NoFrames, match="empty"):
        ImagesDecoder().open([])
    with pytest.raises(MediaUnreadable, match="image 0 has dtype float32"):
        ImagesDecoder().open([np.zeros((4, 4, 3), np.float32)])
    with pytest.raises(MediaUnreadable, match="image 1 is a int, not an image"):
        ImagesDecoder().open([np.zeros((4, 4, 3), np.uint8), 7]).read([1])
    with pytest.raises(MediaNotFound, match="gone.png does not exist"):
        ImagesDecoder().open([tmp_path / "gone.png"])
    with pytest.raises(MediaUnreadable, match="image 1 is 8x8 but the first frame is 4x4"):
        ImagesDecoder().open([np.zeros((4, 4, 3), np.uint8), np.zeros((8, 8, 3), np.uint8)]).read([0, 1])


def test_sources_and_decoder_resolution(frames_dir: Path, media: dict[str, Path]) -> None:
    assert describe_source(media["mpeg4"]) == str(media["mpeg4"])
    assert describe_source(str(media["mpeg4"])) == str(media["mpeg4"])
    assert describe_source(b"x" * 1234) == "<bytes:1234>"
    assert describe_source([np.zeros((2, 2, 3), np.uint8)] * 8) == "<images:8>"
    assert resolve_decoder_name(frames_dir, "decord") == "frames"
    assert resolve_decoder_name(str(frames_dir), "pyav") == "frames"
    assert resolve_decoder_name([np.zeros((2, 2, 3), np.uint8)], "decord") == "images"
    assert resolve_decoder_name((str(media["mpeg4"]),), "decord") == "images"
    assert resolve_decoder_name(media["mpeg4"], "pyav") == "pyav"
    assert resolve_decoder_name(b"\x00\x01", "decord") == "decord"


def test_builtin_decoders() -> None:
    decoders = builtin_decoders()
    assert list(decoders) == ["decord", "pyav", "torchcodec", "frames", "images", "ffmpeg_cli"]
    for name, decoder in decoders.items():
        assert isinstance(decoder, VideoDecoder) and decoder.name == name
    assert isinstance(decoders["pyav"], PyAVDecoder) and decoders["pyav"].available()
    assert isinstance(decoders["decord"], DecordDecoder)
    assert decoders["images"].available() and decoders["frames"].available()


def test_opened_video_protocol(media: dict[str, Path]) -> None:
    with PyAVDecoder().open(media["mpeg4"]) as video:
        assert isinstance(video, OpenedVideo)


# ----- errors --------------------------------------------------------------------------------------

ERROR_CASES = [
    ("missing", MediaNotFound, "no such file"),
    ("empty", MediaUnreadable, "empty file"),
    ("garbage", MediaUnreadable, "not a readable media container"),
    ("truncated", MediaUnreadable, "not a readable media container"),
    ("audio", NoVideoStream, "holds no video stream (streams: audio/aac)"),
    ("png_as_mp4", NoVideoStream, "still image"),
    ("no_frames", NoFrames, "has no frames"),
]


@pytest.mark.parametrize(("case", "error", "reason"), ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
@pytest.mark.parametrize("name", SEED_DECODERS)
def test_broken_inputs_raise_typed_errors(
    media: dict[str, Path], name: str, case: str, error: type[MediaError], reason: str
) -> None:
    path = media[case]
    with pytest.raises(error) as err:
        with builtin_decoders()[name].open(path) as video:
            video.read(range(video.info.num_frames))
    assert err.value.source == str(path)
    assert str(path) in str(err.value) and reason in str(err.value)
    assert err.value.kind in str(err.value)


@pytest.mark.parametrize("name", SEED_DECODERS)
def test_broken_bytes_raise_typed_errors(media: dict[str, Path], name: str) -> None:
    decoder = builtin_decoders()[name]
    with pytest.raises(MediaUnreadable, match=r"<bytes:4096>: unreadable: not a readable media container"):
        decoder.open(media["garbage"].read_bytes())
    with pytest.raises(MediaUnreadable, match="<bytes:0>: unreadable: empty byte string"):
        decoder.open(b"")
    with pytest.raises(NoVideoStream, match="<bytes:"):
        decoder.open(media["audio"].read_bytes())


@pytest.mark.parametrize("name", SEED_DECODERS)
def test_truncated_frames_with_an_intact_index(media: dict[str, Path], name: str) -> None:
    path = media["truncated_faststart"]
    with pytest.raises(MediaUnreadable, match="truncated_faststart.mp4: unreadable: ") as err:
        with builtin_decoders()[name].open(path) as video:
            video.read(range(video.info.num_frames))
    assert err.value.reason


def test_pyav_reads_what_survives_of_a_truncated_file(media: dict[str, Path]) -> None:
    with PyAVDecoder().open(media["truncated_faststart"]) as video:
        assert video.info.num_frames == 90  # what the index claims
        assert [read_index(f) for f in video.read([0, 10])] == [0, 10]
        with pytest.raises(MediaUnreadable, match="frame 89"):
            video.read([89])


def test_directory_given_to_a_container_decoder(frames_dir: Path) -> None:
    with pytest.raises(MediaUnreadable, match="is a directory"):
        PyAVDecoder().open(frames_dir)


@pytest.mark.skipif("decord" not in CONTAINER_DECODERS, reason="decord not installed")
def test_codec_decord_cannot_decode_is_unsupported_codec(media: dict[str, Path]) -> None:
    with pytest.raises(UnsupportedCodec, match="cannot decode av1") as err:
        DecordDecoder().open(media["av1"])
    assert err.value.source == str(media["av1"])
    with PyAVDecoder().open(media["av1"]) as video:  # PyAV's FFmpeg 7 has dav1d
        assert [read_index(f) for f in video.read([5, 0])] == [5, 0]


def test_torchcodec_missing_gives_an_install_hint(media: dict[str, Path]) -> None:
    if TorchCodecDecoder().available():
        pytest.skip("torchcodec is installed")
    with pytest.raises(DecoderUnavailable, match="pip install torchcodec") as err:
        TorchCodecDecoder().open(media["mpeg4"])
    assert err.value.source == str(media["mpeg4"])


# ----- torchcodec (only where installed) -------------------------------------------------------------


def test_torchcodec_matches_pyav(media: dict[str, Path]) -> None:
    pytest.importorskip("torchcodec")
    for clip in ("h264_long_gop", "h264_short_gop", "mpeg4", "mkv"):
        for source in (media[clip], media[clip].read_bytes()):
            with TorchCodecDecoder().open(source) as video, PyAVDecoder().open(source) as reference:
                assert video.info == reference.info
                assert np.array_equal(video.read(UNSORTED), reference.read(UNSORTED))


def test_torchcodec_errors(media: dict[str, Path]) -> None:
    pytest.importorskip("torchcodec")
    for case, error, _ in ERROR_CASES:
        with pytest.raises(error):
            with TorchCodecDecoder().open(media[case]) as video:
                video.read(range(video.info.num_frames))


def test_no_decoder_module_is_imported_at_import_time() -> None:
    import subprocess
    import sys

    code = (
        "import sys, videolmm.media.loader, videolmm.media.keyframe, videolmm.media.cache, videolmm.toy.synthetic; "
        "print(sorted(m for m in ('av', 'decord', 'torchcodec') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ)
    assert out.stdout.strip() == "[]"
