"""The decoded-frame cache: hits and misses, what the key covers, the size bound, concurrent writers."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest

from videolmm.media.base import load_frames
from videolmm.media.cache import ENV_VAR, FrameCache, cache_key, source_identity
from videolmm.media.keyframe import KeyframeDecoder
from videolmm.media.pyav import PyAVDecoder
from videolmm.media.sampling import fps_sampler, uniform_sampler
from videolmm.toy.synthetic import read_index, write_index_video
from videolmm.types import SamplingSpec

SPEC = SamplingSpec(num_frames=4)


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fcache")
    return {
        "a": write_index_video(root / "a.mp4", 40, fps=10, width=64, height=48),
        "b": write_index_video(root / "b.mp4", 30, fps=10, width=64, height=48),
    }


def _load(cache: FrameCache, source: object, *, decoder: str = "keyframe", spec: SamplingSpec = SPEC, sampler=None):
    dec = KeyframeDecoder() if decoder == "keyframe" else PyAVDecoder()
    return cache.load_frames(
        source,  # type: ignore[arg-type]
        decoder_name=decoder,
        decoder=dec,
        sampler=sampler or uniform_sampler,
        spec=spec,
        sampler_name="uniform" if sampler is None else "fps",
    )


def test_second_load_is_a_hit_with_identical_frames(tmp_path: Path, videos: dict[str, Path]) -> None:
    cache = FrameCache(tmp_path / "c")
    first = _load(cache, videos["a"])
    assert (cache.stats.misses, cache.stats.hits, cache.stats.writes) == (1, 0, 1)
    second = _load(FrameCache(tmp_path / "c"), videos["a"])  # a fresh object: the disk answers
    again = FrameCache(tmp_path / "c")
    third = _load(again, videos["a"])
    assert (again.stats.hits, again.stats.misses) == (1, 0)
    direct = load_frames(videos["a"], decoder=KeyframeDecoder(), sampler=uniform_sampler, spec=SPEC)
    for frames in (first, second, third):
        assert np.array_equal(frames.array, direct.array)
        assert (frames.indices, frames.timestamps, frames.fps, frames.duration) == (
            direct.indices,
            direct.timestamps,
            direct.fps,
            direct.duration,
        )
        assert (frames.source, frames.num_source_frames, frames.decoder) == (str(videos["a"]), 40, "keyframe")
    assert [read_index(f) for f in third.array] == list(direct.indices)


def test_key_changes_with_file_decoder_and_sampler(tmp_path: Path, videos: dict[str, Path]) -> None:
    cache = FrameCache(tmp_path / "c")
    _load(cache, videos["a"])
    _load(cache, videos["b"])  # another file
    _load(cache, videos["a"], decoder="pyav")  # another decoder
    _load(cache, videos["a"], spec=SamplingSpec(num_frames=5))  # other sampling numbers
    _load(cache, videos["a"], spec=SamplingSpec(num_frames=4, reverse=True))
    frames = _load(cache, videos["a"], spec=SamplingSpec(num_frames=4, fps=1.0), sampler=fps_sampler)
    assert cache.stats.misses == 6 and cache.stats.hits == 0
    assert frames.sampler == "fps"
    _load(cache, videos["a"], spec=SamplingSpec(num_frames=4, reverse=True))
    assert cache.stats.hits == 1

    # rewriting the file changes its identity (size / mtime): a miss, and the new content is served
    path = tmp_path / "moving.mp4"
    write_index_video(path, 40, fps=10, width=64, height=48)
    before = source_identity(path)
    _load(cache, path)
    write_index_video(path, 20, fps=10, width=64, height=48)
    os.utime(path, ns=(before["mtime_ns"] + 10**9, before["mtime_ns"] + 10**9))  # type: ignore[index]
    assert source_identity(path) != before
    frames = _load(cache, path)
    assert frames.num_source_frames == 20 and cache.stats.hits == 1


def test_bytes_are_keyed_by_content_and_images_bypass(tmp_path: Path, videos: dict[str, Path]) -> None:
    cache = FrameCache(tmp_path / "c")
    data = videos["a"].read_bytes()
    _load(cache, data)
    _load(cache, bytes(data))
    assert (cache.stats.misses, cache.stats.hits) == (1, 1)
    ident = source_identity(data)
    assert ident is not None and ident["kind"] == "bytes"
    assert cache_key(ident, decoder="keyframe", sampler="uniform", spec=SPEC) != cache_key(
        source_identity(videos["a"]),  # type: ignore[arg-type]
        decoder="keyframe",
        sampler="uniform",
        spec=SPEC,
    )
    images = [np.zeros((8, 8, 3), np.uint8)] * 3
    assert source_identity(images) is None
    frames = cache.load_frames(
        images, decoder_name="images", decoder=_images(), sampler=uniform_sampler, spec=SPEC, sampler_name="uniform"
    )
    assert frames.num_frames == 4 and cache.stats.bypassed == 1


def _images():
    from videolmm.media.frames import ImagesDecoder

    return ImagesDecoder()


def test_size_bound_evicts_least_recently_used(tmp_path: Path, videos: dict[str, Path]) -> None:
    probe = FrameCache(tmp_path / "probe")
    _load(probe, videos["a"])
    entry_size = probe.total_bytes()
    cache = FrameCache(tmp_path / "c", max_bytes=int(entry_size * 2.5))  # room for two entries
    specs = [SamplingSpec(num_frames=4, fps=float(k)) for k in (1, 2, 3)]  # same size, different keys
    keys = []
    for k, spec in enumerate(specs[:2]):
        _load(cache, videos["a"], spec=spec)
        keys.append(cache_key(source_identity(videos["a"]), decoder="keyframe", sampler="uniform", spec=spec))  # type: ignore[arg-type]
        path = cache.path_for(keys[-1])
        os.utime(path, (1_000_000 + k, path.stat().st_mtime))  # deterministic access order
    _load(cache, videos["a"], spec=specs[0])  # a hit refreshes entry 0: entry 1 is now the oldest
    assert cache.stats.hits == 1
    _load(cache, videos["a"], spec=specs[2])
    assert cache.stats.evictions == 1
    assert cache.path_for(keys[0]).exists() and not cache.path_for(keys[1]).exists()
    assert cache.total_bytes() <= cache.max_bytes


def test_unreadable_entry_is_a_logged_miss(tmp_path: Path, videos: dict[str, Path]) -> None:
    cache = FrameCache(tmp_path / "c")
    _load(cache, videos["a"])
    key = cache_key(source_identity(videos["a"]), decoder="keyframe", sampler="uniform", spec=SPEC)  # type: ignore[arg-type]
    cache.path_for(key).write_bytes(b"not a zip")
    frames = _load(cache, videos["a"])
    assert cache.stats.errors == 1 and cache.stats.misses == 2
    assert [read_index(f) for f in frames.array] == list(frames.indices)
    assert _load(cache, videos["a"]).indices == frames.indices and cache.stats.hits == 1


def _writer(root: str, path: str, rounds: int, max_bytes: int, out: multiprocessing.Queue) -> None:
    cache = FrameCache(root, max_bytes=max_bytes)
    for r in range(rounds):
        for n in (2, 3, 4, 5):
            frames = _load(cache, Path(path), spec=SamplingSpec(num_frames=n, fps=float(r % 3)))
            assert frames.num_frames == n
    out.put((cache.stats.hits, cache.stats.misses, cache.stats.errors))


def test_concurrent_writers_leave_a_valid_cache(tmp_path: Path, videos: dict[str, Path]) -> None:
    root = tmp_path / "shared"
    probe = FrameCache(tmp_path / "probe")
    _load(probe, videos["a"], spec=SamplingSpec(num_frames=5))
    max_bytes = probe.total_bytes() * 6  # tighter than the 12 distinct entries: evictions race writes
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(str(root), str(videos["a"]), 3, max_bytes, queue)) for _ in range(4)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert all(errors == 0 for _, _, errors in results)
    assert sum(h + m for h, m, _ in results) == 4 * 3 * 4
    leftovers = [p.name for p in root.rglob("*") if p.is_file() and p.name.startswith(".tmp-")]
    assert leftovers == []
    cache = FrameCache(root, max_bytes=max_bytes)
    cache.evict()
    assert cache.total_bytes() <= max_bytes
    for entry in root.glob("*/*.npz"):  # every surviving entry is whole and readable
        frames = cache.get(entry.stem)
        assert frames is not None and [read_index(f) for f in frames.array] == list(frames.indices)
    assert cache.stats.errors == 0


def test_engine_second_run_decodes_nothing(
    tmp_path: Path, videos: dict[str, Path], tiny_llava_next_video: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from videolmm.load import load_engine

    monkeypatch.setenv(ENV_VAR, str(tmp_path / "engine-cache"))
    engine = load_engine(str(tiny_llava_next_video), load_model=False, num_frames=4, decoder="keyframe")
    assert engine.frame_cache is not None
    assert engine.describe()["frame_cache"] == str(tmp_path / "engine-cache")  # what `videolmm inspect` prints
    first = [engine.load_video(v) for v in videos.values()]
    assert (engine.frame_cache.stats.misses, engine.frame_cache.stats.hits) == (2, 0)
    again = load_engine(str(tiny_llava_next_video), load_model=False, num_frames=4, decoder="keyframe")
    second = [again.load_video(v) for v in videos.values()]
    assert again.frame_cache is not None
    assert (again.frame_cache.stats.misses, again.frame_cache.stats.hits) == (0, 2)
    for a, b in zip(first, second, strict=True):
        assert np.array_equal(a.array, b.array) and a.indices == b.indices
    monkeypatch.delenv(ENV_VAR)
    assert load_engine(str(tiny_llava_next_video), load_model=False).frame_cache is None


def test_lmms_eval_model_arg_enables_the_cache(
    tmp_path: Path, videos: dict[str, Path], tiny_llava_next_video: Path
) -> None:
    from videolmm.eval.model import LlavaNextVideo
    from videolmm.types import Request

    root = tmp_path / "eval-cache"
    runs = []
    for _ in range(2):  # two "eval runs": fresh model objects sharing the directory
        lm = LlavaNextVideo(pretrained=str(tiny_llava_next_video), device="cpu", num_frames=4, frame_cache=str(root))
        assert lm.engine.frame_cache is not None and lm.engine.frame_cache.root == root
        decoded = lm.engine.decode(Request(question="Which way?", videos=tuple(str(v) for v in videos.values())))
        assert decoded.error is None
        runs.append((lm.engine.frame_cache.stats, decoded.videos))
    (first, frames1), (second, frames2) = runs
    assert (first.misses, first.hits, second.misses, second.hits) == (2, 0, 0, 2)
    for a, b in zip(frames1, frames2, strict=True):
        assert np.array_equal(a.array, b.array)


def test_frames_directory_identity_follows_its_files(tmp_path: Path) -> None:
    from PIL import Image

    from videolmm.media.frames import FramesDirDecoder
    from videolmm.toy.synthetic import index_frame

    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(index_frame(i, 64, 48)).save(folder / f"{i:04d}.png")
    cache = FrameCache(tmp_path / "c")

    def load():
        return cache.load_frames(
            folder, decoder_name="frames", decoder=FramesDirDecoder(), sampler=uniform_sampler, spec=SPEC,
            sampler_name="uniform",
        )  # fmt: skip

    before = source_identity(folder)
    assert before is not None and before["kind"] == "dir" and len(before["entries"]) == 3
    load()
    load()
    Image.fromarray(index_frame(3, 64, 48)).save(folder / "0003.png")  # a new frame: a new key
    frames = load()
    assert (cache.stats.misses, cache.stats.hits) == (2, 1)
    assert frames.num_source_frames == 4 and [read_index(f) for f in frames.array] == list(frames.indices)
