"""The keyframe decoder: decord's frames exactly, decoding close to the bound, typed errors."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from videolmm.errors import MediaError, MediaNotFound, MediaUnreadable, NoFrames, NoVideoStream
from videolmm.media.base import load_frames
from videolmm.media.decord import DecordDecoder
from videolmm.media.keyframe import KeyframeDecoder
from videolmm.media.packets import decode_bound
from videolmm.media.pyav import PyAVDecoder
from videolmm.media.sampling import uniform_sampler
from videolmm.toy.synthetic import index_frame, read_index, write_audio_only, write_index_video
from videolmm.types import SamplingSpec

UNSORTED = [5, 0, 161, 5, 142, 3, 239, 239, 60, 59]


def _write_bframes(path: Path, num_frames: int, gop: int) -> Path:
    """An index-coded h264 clip with 3 B-frames between references (decode order ≠ presentation order)."""
    params = f"bframes=3:b-adapt=0:scenecut=0:keyint={gop}:min-keyint={gop}"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(
            "libx264", rate=30, options={"preset": "fast", "crf": "18", "threads": "1", "x264-params": params}
        )
        stream.width, stream.height, stream.pix_fmt = 128, 96, "yuv420p"
        stream.codec_context.thread_count = 1
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(index_frame(i), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 30)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


@pytest.fixture(scope="session")
def kf_media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small index-coded clips: B-frame long GOP (mp4 + mkv), short GOP, mpeg4, one frame, broken."""
    root = tmp_path_factory.mktemp("keyframe")
    files = {
        "bframes": _write_bframes(root / "bframes.mp4", 240, gop=60),
        "bframes_mkv": _write_bframes(root / "bframes.mkv", 240, gop=60),
        "short_gop": write_index_video(root / "short.mp4", 240, fps=30, gop=6),
        "mpeg4": write_index_video(root / "mpeg4.avi", 240, fps=25, codec="mpeg4", gop=30),
        "one": write_index_video(root / "one.mp4", 1, fps=30),
    }
    with av.open(str(files["bframes"])) as container:  # the fixture really has B-frames
        pts = [p.pts for p in container.demux(container.streams.video[0]) if p.size]
    assert pts != sorted(pts)
    files["garbage"] = root / "garbage.mp4"
    files["garbage"].write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    data = files["bframes"].read_bytes()
    files["truncated"] = root / "truncated.mp4"
    files["truncated"].write_bytes(data[: len(data) // 2])
    files["truncated_faststart"] = root / "truncated_faststart.mp4"
    with (
        av.open(str(files["bframes"])) as inp,
        av.open(str(root / "fast.mp4"), "w", options={"movflags": "faststart"}) as out,
    ):
        out_stream = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is not None:
                packet.stream = out_stream
                out.mux(packet)
    fast = (root / "fast.mp4").read_bytes()
    files["truncated_faststart"].write_bytes(fast[: len(fast) * 2 // 3])
    files["audio"] = write_audio_only(root / "tone.m4a")
    files["no_frames"] = root / "no_frames.avi"
    with av.open(str(files["no_frames"]), "w") as container:
        stream = container.add_stream("mpeg4", rate=30)
        stream.width, stream.height = 64, 48
        container.start_encoding()
    return files


@pytest.mark.parametrize("clip", ["bframes", "bframes_mkv", "short_gop", "mpeg4"])
def test_frames_are_identical_to_decord(kf_media: dict[str, Path], clip: str) -> None:
    path = kf_media[clip]
    with DecordDecoder().open(path) as ref, KeyframeDecoder().open(path) as video:
        assert video.info == ref.info
        n = ref.info.num_frames
        rng = np.random.default_rng(7)
        reads = [UNSORTED, [0], [n - 1], [n - 1, 0], list(np.linspace(0, n - 1, 16, dtype=int)), list(range(n))]
        reads.append(sorted(rng.choice(n, size=24, replace=False).tolist()))
        for indices in reads:
            got = video.read(indices)
            assert np.array_equal(got, ref.read(indices)), indices
            assert [read_index(f) for f in got] == [int(i) for i in indices]
        assert video.stats.seeks > 0 and video.stats.sequential_fallbacks == 0


def test_bytes_source_and_one_frame_video(kf_media: dict[str, Path]) -> None:
    data = kf_media["bframes"].read_bytes()
    with KeyframeDecoder().open(data) as video, PyAVDecoder().open(data) as ref:
        assert video.info == ref.info and video.info.source == f"<bytes:{len(data)}>"
        assert np.array_equal(video.read([200, 3, 200]), ref.read([200, 3, 200]))
    with KeyframeDecoder().open(kf_media["one"]) as video:
        assert video.info.num_frames == 1
        assert [read_index(f) for f in video.read([0, 0])] == [0, 0]
        assert video.read([]).shape == (0, 96, 128, 3)


@pytest.mark.parametrize("threads", ["NONE", "SLICE", "FRAME", "AUTO"])
def test_every_thread_mode_gives_the_same_frames(kf_media: dict[str, Path], threads: str) -> None:
    indices = list(np.linspace(0, 239, 8, dtype=int))
    with (
        PyAVDecoder().open(kf_media["bframes"]) as ref,
        KeyframeDecoder(thread_type=threads).open(kf_media["bframes"]) as video,
    ):
        assert np.array_equal(video.read(indices), ref.read(indices))


def test_frames_decoded_stay_within_the_bound(kf_media: dict[str, Path]) -> None:
    indices = list(np.linspace(0, 239, 8, dtype=int))  # 0, 34, 68, ..., 239 over GOPs of 60
    with KeyframeDecoder(skip_nonref=False).open(kf_media["bframes"]) as video:
        assert video.index.keyframes == (0, 60, 120, 180)
        bound = decode_bound(video.index.keyframes, indices)
        reference = video.read(indices)
        decoded = video.stats.frames_decoded
    # by hand: runs 0..34, 60..102 (68 and 102 share a GOP), 120..170, 180..239 (204 and 239)
    assert bound == 35 + 43 + 51 + 60
    # at most the bound: the decoder is drained once the wanted packets are in, so B-frames shown
    # before a wanted frame but coded after it are never decoded
    assert 0.9 * bound <= decoded <= bound
    assert decode_bound([0, 60, 120, 180], range(240)) == 240  # every frame wanted: the bound is all of them

    # dropping the unwanted non-reference B-frames decodes fewer frames than the bound, same pixels
    with KeyframeDecoder().open(kf_media["bframes"]) as video:
        assert np.array_equal(video.read(indices), reference)
        assert video.stats.frames_decoded < 0.8 * bound
        # every packet up to the last wanted one (decode order) still went through the decoder's parser
        assert 0.9 * bound <= video.stats.packets_sent <= bound
    with KeyframeDecoder().open(kf_media["mpeg4"]) as video:  # no B-frames: nothing to drop
        video.read(indices)
        assert (
            video.stats.frames_decoded
            == video.stats.packets_sent
            <= 1.3 * decode_bound(video.index.keyframes, indices)
        )


def test_decode_bound_counts_shared_runs_once() -> None:
    assert decode_bound([0, 10], [3]) == 4
    assert decode_bound([0, 10], [3, 5]) == 6  # 0..5
    assert decode_bound([0, 10], [12, 5, 5]) == 6 + 3  # 0..5, 10..12
    assert decode_bound([0, 10], []) == 0


def test_seek_cost_decides_between_seeking_and_decoding_through(kf_media: dict[str, Path]) -> None:
    indices = [1, 2, 61, 62, 130, 200]
    eager = KeyframeDecoder(seek_cost_frames=0, skip_nonref=False, workers=1)
    lazy = KeyframeDecoder(seek_cost_frames=1000, skip_nonref=False, workers=1)
    with eager.open(kf_media["bframes"]) as a, lazy.open(kf_media["bframes"]) as b:
        frames = a.read(indices)
        assert np.array_equal(frames, b.read(indices))
        assert [read_index(f) for f in a.read(indices)] == indices
        # a seek to each of the GOPs at 0, 60, 120, 180, decoding the bound (76 over two reads) less the
        # B-frames shown before a run's last frame but coded after it (at most 3 per run, 3 B-frames here)
        bound = decode_bound(a.index.keyframes, indices)
        assert a.stats.seeks == 8 and 2 * bound - 8 * 3 <= a.stats.frames_decoded <= 2 * bound == 76
        # one seek to the start, then decoding through up to frame 200
        assert b.stats.seeks == 1 and 201 - 3 <= b.stats.frames_decoded <= 201
    # with several workers every keyframe starts a run (GOPs in parallel), whatever the seek cost
    with KeyframeDecoder(seek_cost_frames=1000, workers=2, min_parallel_frames=0).open(kf_media["bframes"]) as c:
        assert [run[0][1] for run in c.plan(indices)] == [1, 61, 130, 200]
        assert np.array_equal(c.read(indices), frames) and c.stats.seeks == 4


def test_load_frames_with_the_keyframe_decoder(kf_media: dict[str, Path]) -> None:
    spec = SamplingSpec(num_frames=6)
    frames = load_frames(kf_media["short_gop"], decoder=KeyframeDecoder(), sampler=uniform_sampler, spec=spec)
    assert frames.decoder == "keyframe"
    assert [read_index(f) for f in frames.array] == list(frames.indices) == np.linspace(0, 239, 6, dtype=int).tolist()


def test_registered_as_a_builtin_decoder() -> None:
    from videolmm.plugin.manager import get_plugin_manager, get_registry

    registry = get_registry(get_plugin_manager())
    assert isinstance(registry.decoder("keyframe"), KeyframeDecoder)


def test_bad_inputs_are_typed_errors(kf_media: dict[str, Path]) -> None:
    decoder = KeyframeDecoder()
    with pytest.raises(MediaNotFound, match="no such file"):
        decoder.open(kf_media["bframes"].with_name("missing.mp4"))
    with pytest.raises(MediaUnreadable, match="not a readable media container"):
        decoder.open(kf_media["garbage"])
    with pytest.raises(MediaUnreadable, match="empty byte string"):
        decoder.open(b"")
    with pytest.raises(NoFrames, match="no frames"):
        decoder.open(kf_media["no_frames"])
    with pytest.raises(NoVideoStream, match="holds no video stream"):
        decoder.open(kf_media["audio"])
    with decoder.open(kf_media["bframes"]) as video:
        with pytest.raises(MediaError, match=r"frame index 240 is out of range"):
            video.read([240])
    with pytest.raises(MediaError, match="after close"):
        video.read([0])
    with pytest.raises(ValueError, match="thread_type"):
        KeyframeDecoder(thread_type="MANY")


def test_truncated_files_fail_with_typed_errors(kf_media: dict[str, Path]) -> None:
    with pytest.raises(MediaUnreadable) as err:  # the mp4 index (at the end) was cut off
        KeyframeDecoder().open(kf_media["truncated"])
    assert err.value.source == str(kf_media["truncated"])
    # index in front, frames cut off: the header promises 240 frames, the packets run out earlier
    with KeyframeDecoder().open(kf_media["truncated_faststart"]) as video:
        assert video.info.num_frames == 240 and not video.index.exact
        assert [read_index(f) for f in video.read([0, 10])] == [0, 10]
        with pytest.raises(MediaUnreadable, match=r"after \d+ (decodable )?frames.*frame 239"):
            video.read([239])


@pytest.mark.parametrize("clip", ["bframes", "mpeg4"])
def test_runs_decoded_in_parallel_give_the_same_frames_and_counts(kf_media: dict[str, Path], clip: str) -> None:
    indices = [3, 70, 71, 130, 200, 239]
    serial = KeyframeDecoder(workers=1, skip_nonref=False)
    parallel = KeyframeDecoder(workers=3, min_parallel_frames=0, skip_nonref=False)
    with (
        DecordDecoder().open(kf_media[clip]) as ref,
        serial.open(kf_media[clip]) as a,
        parallel.open(kf_media[clip]) as b,
    ):
        runs = b.plan(indices)
        assert len(runs) >= 3 and [t for run in runs for _, t in run] == indices
        for _ in range(2):  # the second read reuses the extra containers
            got = b.read(indices)
            assert np.array_equal(got, ref.read(indices)) and np.array_equal(got, a.read(indices))
        assert b.stats == a.stats and b.stats.seeks == 2 * len(runs)
        assert 2 * decode_bound(a.index.keyframes, indices) - 2 * 3 * len(runs) <= a.stats.frames_decoded
        assert a.stats.frames_decoded <= 2 * decode_bound(a.index.keyframes, indices)


def test_hostile_corpus_behaves_like_pyav(tmp_path: Path) -> None:
    """Each hostile input (tests/hostile_media.py) gets pyav's outcome: the same error type or the same pixels."""
    from hostile_media import build_corpus

    from videolmm.media.base import resolve_decoder_name

    cases = build_corpus(tmp_path / "media", outside=tmp_path / "outside")
    spec = SamplingSpec(num_frames=8)
    checked = 0
    for name, case in cases.items():
        if resolve_decoder_name(case.path, "container") != "container":
            continue  # frame directories go to the frames decoder
        outcomes = []
        for decoder in (KeyframeDecoder(), PyAVDecoder()):
            try:
                outcomes.append(load_frames(case.path, decoder=decoder, sampler=uniform_sampler, spec=spec))
            except MediaError as exc:
                assert exc.source == str(case.path), name
                outcomes.append(type(exc))
        mine, theirs = outcomes
        if isinstance(theirs, type):
            assert mine is theirs, name
        else:
            assert not isinstance(mine, type), f"{name}: {mine}"
            assert np.array_equal(mine.array, theirs.array) and mine.indices == theirs.indices, name
            assert (mine.fps, mine.num_source_frames) == (theirs.fps, theirs.num_source_frames), name
        checked += 1
    assert checked >= 10


_PEAK_CHILD = """
import json, sys
import numpy as np
from videolmm.media.keyframe import KeyframeDecoder

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024

with KeyframeDecoder().open(sys.argv[1]) as video:
    video.read([0])  # warm-up: codec and converter set up
    indices = np.linspace(0, video.info.num_frames - 1, 110, dtype=int).tolist()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak RSS to the current RSS
    base = status("VmRSS")
    frames = video.read(indices)
    print(json.dumps({"peak": status("VmHWM") - base, "nbytes": frames.nbytes, "shape": list(frames.shape)}))
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc peak-RSS reset")
def test_peak_memory_of_110_frames_at_384px_stays_near_the_frames(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    path = write_index_video(tmp_path / "clip384.mp4", 120, fps=30, width=384, height=384, gop=60)
    proc = subprocess.run([sys.executable, "-c", _PEAK_CHILD, str(path)], capture_output=True, text=True, check=True)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["shape"] == [110, 384, 384, 3] and out["nbytes"] == 110 * 384 * 384 * 3
    # the frames are written once into a preallocated array: no list of frames, no np.stack copy
    assert out["peak"] <= 1.5 * out["nbytes"], out
