"""FrameLoader: decoder + sampler + cache + limits; limits refuse before any pixel is decoded, on a hit too."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from videolmm.errors import MediaError, MediaTooLarge, RegistryError
from videolmm.media.base import load_frames
from videolmm.media.cache import FrameCache
from videolmm.media.frames import FramesDirDecoder, ImagesDecoder
from videolmm.media.keyframe import KeyframeDecoder
from videolmm.media.loader import FrameLoader, MediaLimitExceeded, MediaLimits
from videolmm.media.pyav import PyAVDecoder
from videolmm.media.sampling import BUILTIN_SAMPLERS, uniform_sampler
from videolmm.registry import Registry
from videolmm.toy.synthetic import index_frame, read_index, write_index_video
from videolmm.types import MediaSettings, SamplingSpec, VideoSource

MEDIA = MediaSettings(decoder="keyframe", sampler="uniform", sampling=SamplingSpec(num_frames=4))


class CountingDecoder:
    """Wraps a real decoder; counts opens, reads and closes (what a refusal must not do: read)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.opens = self.reads = self.closes = 0

    def available(self) -> bool:
        return bool(self.inner.available())

    def open(self, source: VideoSource) -> Any:
        self.opens += 1
        return _CountingVideo(self, self.inner.open(source))


class _CountingVideo:
    def __init__(self, owner: CountingDecoder, video: Any) -> None:
        self.owner, self.video, self.info = owner, video, video.info

    def read(self, indices: Sequence[int]) -> np.ndarray:
        self.owner.reads += 1
        return self.video.read(indices)

    def close(self) -> None:
        self.owner.closes += 1
        self.video.close()

    def __enter__(self) -> _CountingVideo:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def registry_with(*decoders: Any) -> Registry:
    return Registry(decoders={d.name: d for d in decoders}, samplers=dict(BUILTIN_SAMPLERS))


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 frames at 10 fps (4.0 s), 64x48."""
    return write_index_video(tmp_path_factory.mktemp("loader") / "clip.mp4", 40, fps=10, width=64, height=48)


@pytest.fixture
def counting() -> CountingDecoder:
    return CountingDecoder(KeyframeDecoder())


def test_same_frames_as_load_frames_and_registry_names_recorded(clip: Path, counting: CountingDecoder) -> None:
    frames = FrameLoader(registry_with(counting)).load(clip, MEDIA)
    direct = load_frames(clip, decoder=KeyframeDecoder(), sampler=uniform_sampler, spec=MEDIA.sampling)
    assert np.array_equal(frames.array, direct.array) and frames.indices == direct.indices == (0, 13, 26, 39)
    assert [read_index(f) for f in frames.array] == [0, 13, 26, 39]
    assert (frames.decoder, frames.sampler, frames.source) == ("keyframe", "uniform", str(clip))
    assert (counting.opens, counting.reads, counting.closes) == (1, 1, 1)


@pytest.mark.parametrize(
    ("limits", "needles"),
    [
        (MediaLimits(max_duration_s=2.0), ("video lasts 4.0 s", "the limit is 2 s")),
        (MediaLimits(max_frame_pixels=64 * 48 - 1), ("frames are 64x48 (3072 pixels)", "the limit is 3071 pixels")),
    ],
)
def test_limits_refuse_from_the_header_before_decoding(
    clip: Path, counting: CountingDecoder, limits: MediaLimits, needles: tuple[str, ...]
) -> None:
    with pytest.raises(MediaLimitExceeded) as err:
        FrameLoader(registry_with(counting), limits=limits).load(clip, MEDIA)
    assert isinstance(err.value, MediaTooLarge) and err.value.source == str(clip)
    message = str(err.value)
    assert message.startswith(f"{clip}: too large: ")
    for needle in needles:
        assert needle in message
    assert (counting.opens, counting.reads, counting.closes) == (0, 0, 0)  # refused from one header read


def test_limits_at_the_value_accept(clip: Path, counting: CountingDecoder) -> None:
    limits = MediaLimits(max_duration_s=4.0, max_frame_pixels=64 * 48)
    frames = FrameLoader(registry_with(counting), limits=limits).load(clip, MEDIA)
    assert frames.num_frames == 4 and counting.reads == 1


def test_refusal_names_the_value_and_the_limit() -> None:
    with pytest.raises(MediaLimitExceeded) as err:
        MediaLimits(max_duration_s=1.5).check("<bytes:9>", duration=3.25, width=2, height=2)
    assert (err.value.limit, err.value.value, err.value.maximum) == ("max_duration_s", 3.25, 1.5)
    assert str(err.value) == "<bytes:9>: too large: video lasts 3.2 s; the limit is 1.5 s"


@pytest.mark.parametrize("bad", [{"max_duration_s": 0}, {"max_duration_s": -1.0}, {"max_frame_pixels": 0}])
def test_limits_must_be_positive(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        MediaLimits(**bad)  # type: ignore[arg-type]


def test_cache_and_limits_compose(tmp_path: Path, clip: Path, counting: CountingDecoder) -> None:
    limits = MediaLimits(max_duration_s=10.0, max_frame_pixels=64 * 48)
    loader = FrameLoader(registry_with(counting), cache=FrameCache(tmp_path / "c"), limits=limits)
    first = loader.load(clip, MEDIA)
    second = loader.load(clip, MEDIA)
    uncached = FrameLoader(registry_with(KeyframeDecoder())).load(clip, MEDIA)
    assert (loader.cache.stats.misses, loader.cache.stats.hits, loader.cache.stats.writes) == (1, 1, 1)
    assert (counting.opens, counting.reads) == (1, 1)  # the hit decoded nothing
    for frames in (first, second):
        assert np.array_equal(frames.array, uncached.array)
        assert (frames.indices, frames.timestamps, frames.fps, frames.duration) == (
            uncached.indices,
            uncached.timestamps,
            uncached.fps,
            uncached.duration,
        )
        assert (frames.source, frames.decoder, frames.sampler) == (str(clip), "keyframe", "uniform")


@pytest.mark.parametrize(
    ("limits", "needle"),
    [(MediaLimits(max_duration_s=3.0), "video lasts 4.0 s"), (MediaLimits(max_frame_pixels=1000), "64x48")],
)
def test_a_cache_hit_is_checked_against_the_limits(
    tmp_path: Path, clip: Path, counting: CountingDecoder, limits: MediaLimits, needle: str
) -> None:
    FrameLoader(registry_with(KeyframeDecoder()), cache=FrameCache(tmp_path / "c")).load(clip, MEDIA)  # fill
    strict = FrameLoader(registry_with(counting), cache=FrameCache(tmp_path / "c"), limits=limits)
    with pytest.raises(MediaLimitExceeded, match=needle):
        strict.load(clip, MEDIA)
    assert strict.cache is not None and strict.cache.stats.hits == 1
    assert (counting.opens, counting.reads) == (0, 0)  # answered from the cache, and still refused


def test_frames_directory_and_image_list_use_their_decoders_and_frames_sampler(tmp_path: Path) -> None:
    from PIL import Image

    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(10):
        Image.fromarray(index_frame(i, 64, 48)).save(folder / f"{i:04d}.png")
    images = [index_frame(i, 64, 48) for i in range(10)]
    registry = registry_with(CountingDecoder(FramesDirDecoder()), CountingDecoder(ImagesDecoder()))
    media = MediaSettings(
        decoder="decord", sampler="fps", frames_sampler="uniform", sampling=SamplingSpec(num_frames=3)
    )
    for source, decoder in ((folder, "frames"), (images, "images")):
        frames = FrameLoader(registry).load(source, media)
        assert (frames.decoder, frames.sampler, frames.indices) == (decoder, "uniform", (0, 4, 9))
        assert [read_index(f) for f in frames.array] == [0, 4, 9]
    with pytest.raises(MediaLimitExceeded, match="frames are 64x48"):
        FrameLoader(registry, limits=MediaLimits(max_frame_pixels=100)).load(images, media)
    assert registry.decoders["images"].reads == 1  # the refusal read nothing


def test_unknown_names_and_media_errors_pass_through(tmp_path: Path, clip: Path) -> None:
    loader = FrameLoader(registry_with(PyAVDecoder()))
    with pytest.raises(RegistryError, match="unknown decoder 'keyframe'"):
        loader.load(clip, MEDIA)
    with pytest.raises(RegistryError, match="unknown sampler 'nope'"):
        loader.load(clip, MediaSettings(decoder="pyav", sampler="nope"))
    (tmp_path / "junk.mp4").write_bytes(b"not a video at all" * 10)
    with pytest.raises(MediaError) as err:
        loader.load(tmp_path / "junk.mp4", MediaSettings(decoder="pyav"))
    assert not isinstance(err.value, MediaLimitExceeded) and err.value.source == str(tmp_path / "junk.mp4")
