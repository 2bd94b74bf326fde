"""A third-party decoder built on the public base, registered by a plugin, used by FrameLoader."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from videolmm.errors import MediaError, MediaUnreadable
from videolmm.media.base import (
    OpenedVideo,
    OpenedVideoBase,
    VideoDecoder,
    describe_source,
    load_frames,
    module_importable,
)
from videolmm.media.loader import FrameLoader, MediaLimitExceeded, MediaLimits
from videolmm.media.pyav import PyAVDecoder
from videolmm.media.sampling import fps_sampler
from videolmm.plugin import hookimpl
from videolmm.plugin.manager import get_registry, new_plugin_manager
from videolmm.toy.synthetic import read_index, write_index_video
from videolmm.types import MediaSettings, SamplingSpec, VideoInfo, VideoSource


class PreloadedVideo(OpenedVideoBase):
    """Every frame decoded at open; the base does index checks, de-duplication, order and closing."""

    backend = "preload"

    def __init__(self, info: VideoInfo, frames: np.ndarray) -> None:
        super().__init__(info)
        self.frames: np.ndarray | None = frames
        self.sorted_reads: list[list[int]] = []

    def read_sorted(self, indices: list[int]) -> np.ndarray:
        assert self.frames is not None
        self.sorted_reads.append(indices)
        return self.frames[indices]

    def release(self) -> None:
        self.frames = None


class PreloadDecoder:
    """Decodes the whole clip with PyAV at open (a small-clip backend, as a plugin would ship it)."""

    name = "preload"

    def available(self) -> bool:
        return module_importable("av")

    def open(self, source: VideoSource) -> OpenedVideo:
        import av

        label = describe_source(source)
        try:
            with av.open(str(source)) as container:
                stream = container.streams.video[0]
                frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])
                fps = float(stream.average_rate)
        except (av.error.FFmpegError, OSError) as exc:
            raise MediaUnreadable(label, f"preload could not decode it ({exc})") from exc
        height, width = frames.shape[1:3]
        info = VideoInfo(source=label, num_frames=len(frames), fps=fps, width=width, height=height)
        return PreloadedVideo(info, frames)


class PreloadPlugin:
    @hookimpl
    def register_decoders(self, register: Callable[[str, Any], None]) -> None:
        register(PreloadDecoder.name, PreloadDecoder())


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 frames at 10 fps, 64x48."""
    return write_index_video(tmp_path_factory.mktemp("plugin-clip") / "clip.mp4", 30, fps=10, width=64, height=48)


@pytest.fixture
def registry() -> Iterator[Any]:
    pm = new_plugin_manager(load_entrypoints=False)
    pm.register(PreloadPlugin(), name="preload-plugin")
    try:
        yield get_registry(pm)
    finally:
        pm.unregister(name="preload-plugin")


def test_plugin_decoder_is_registered_next_to_the_builtins(registry: Any) -> None:
    decoder = registry.decoder("preload")
    assert isinstance(decoder, VideoDecoder) and registry.owners["decoder:preload"] == "preload-plugin"
    assert {"keyframe", "pyav", "frames", "images"} <= set(registry.decoders)


def test_frame_loader_reads_a_clip_with_the_plugin_decoder(registry: Any, clip: Path) -> None:
    media = MediaSettings(decoder="preload", sampler="fps", sampling=SamplingSpec(num_frames=5, force_sample=True))
    frames = FrameLoader(registry).load(clip, media)
    assert (frames.decoder, frames.sampler, frames.source) == ("preload", "fps", str(clip))
    assert [read_index(f) for f in frames.array] == list(frames.indices) == [0, 7, 14, 21, 29]
    reference = load_frames(clip, decoder=PyAVDecoder(), sampler=fps_sampler, spec=media.sampling)
    assert np.array_equal(frames.array, reference.array)  # the same pixels as the built-in pyav decoder
    assert (frames.fps, frames.duration, frames.num_source_frames) == (10.0, 3.0, 30)


def test_limits_apply_to_the_plugin_decoder(registry: Any, clip: Path) -> None:
    media = MediaSettings(decoder="preload", sampling=SamplingSpec(num_frames=4))
    with pytest.raises(MediaLimitExceeded, match=r"video lasts 3\.0 s; the limit is 2 s"):
        FrameLoader(registry, limits=MediaLimits(max_duration_s=2)).load(clip, media)


def test_the_public_base_checks_orders_and_closes(clip: Path) -> None:
    with PreloadDecoder().open(clip) as video:
        assert isinstance(video, OpenedVideo)
        assert [read_index(f) for f in video.read([7, 0, 7, 29])] == [7, 0, 7, 29]
        assert video.sorted_reads == [[0, 7, 29]]  # each distinct frame read once, sorted
        assert video.read([]).shape == (0, 48, 64, 3)
        with pytest.raises(MediaError, match="frame index 30 is out of range: the video has 30 frames"):
            video.read([30])
        with pytest.raises(MediaError, match="not an integer"):
            video.read([1.5])  # type: ignore[list-item]
    assert video.frames is None  # release() ran on exit
    with pytest.raises(MediaError, match=r"read\(\) after close\(\)"):
        video.read([0])


def test_the_public_base_checks_the_batch_a_subclass_returns(clip: Path) -> None:
    class Broken(PreloadedVideo):
        def read_sorted(self, indices: list[int]) -> np.ndarray:
            return np.zeros((len(indices), 48, 64), dtype=np.uint8)

    info = VideoInfo(source="broken", num_frames=3, fps=1.0, width=64, height=48)
    with pytest.raises(MediaUnreadable, match=r"preload returned uint8 \(2, 48, 64\), expected uint8 \(2, H, W, 3\)"):
        Broken(info, np.zeros((3, 48, 64, 3), np.uint8)).read([0, 2])
