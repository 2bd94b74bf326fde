"""The eval model loads its engine in the background and decodes while it loads.

``VideoLMM.__init__`` starts the load on a thread; ``generate_until`` starts decoding first and
joins the load after. Checked here: decoding really runs before the load finishes (the load is
held until the pipeline has decoded a request, and ``EvalStats`` records it), the answers are the
plain path's, a failed load is a clear error naming the checkpoint at first use, options are still
checked at construction, the start-up measures (the heap frozen from before the load to the end of the
first call, the decoder warmed before the load starts), and the pipeline's own rules (order, shared
decodes, prefetch depth, preload bound, decode threads).
"""

from __future__ import annotations

import gc
import importlib.util
import logging
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from lmms_eval.api.instance import Instance

from videolmm.errors import ConfigError, RegistryError
from videolmm.eval import loading, startup
from videolmm.eval.loading import ModelLoadError
from videolmm.eval.model import LlavaNextVideo, VideoLMM
from videolmm.eval.prefetch import DecodePipeline, EarlyMedia, deeper, frames_bytes
from videolmm.eval.startup import FrozenHeap, tiny_clip, warm_decoder
from videolmm.load import host
from videolmm.media.loader import FrameLoader
from videolmm.models.engine import DecodedRequest
from videolmm.types import Frames, MediaSettings, Request, SamplingSpec

GEN = {"max_new_tokens": 4, "temperature": 0, "do_sample": False, "until": ["\n", "."]}
QUESTIONS = ("What colour is the moving square? Answer with one word.", "Which way does the square move?")


@pytest.fixture(autouse=True)
def keep_torch_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def docs(clips: dict[str, Path]) -> list[dict[str, str]]:
    return [{"video": str(path), "question": q} for path in clips.values() for q in QUESTIONS]


def instances(docs: list[dict[str, str]]) -> list[Instance]:
    def doc_to_visual(doc: dict[str, str]) -> list[str]:
        return [doc["video"]]

    return [
        Instance(
            "generate_until",
            (d["question"], dict(GEN), doc_to_visual, i, "pre", "test"),
            idx=0,
            metadata={"task": "pre", "doc_id": i, "repeats": 1},
        )  # fmt: skip
        for i, d in enumerate(docs)
    ]


def answers(lm: LlavaNextVideo, docs: list[dict[str, str]]) -> list[str]:
    lm.task_dict = {"pre": {"test": dict(enumerate(docs))}}
    return [r.text for r in lm.generate_until(instances(docs))]


def model(ckpt: Path, **kwargs: object) -> LlavaNextVideo:
    return LlavaNextVideo(pretrained=str(ckpt), device="cpu", num_frames=4, **kwargs)


def test_decoding_runs_while_the_model_loads(
    trained_llava_next_video: Path, docs: list[dict[str, str]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The load is held until the second decode starts (one decode thread: the first has finished and
    been counted by then), so it can finish only if decoding started before the load did. Only this
    model's load is held (a copy of the checkpoint: loads other tests started may still be running)."""
    plain = answers(model(trained_llava_next_video, batch_size=2, prefetch=0, decode_workers=1), docs)
    gated = tmp_path / "gated"
    shutil.copytree(trained_llava_next_video, gated)

    second_decode = threading.Event()
    calls: list[int] = []
    real_decode, real_load = EarlyMedia.decode, loading.load_engine

    def decode(self: EarlyMedia, request: object) -> DecodedRequest:
        calls.append(1)
        if len(calls) == 2:
            second_decode.set()
        return real_decode(self, request)

    held: list[bool] = []
    frozen_during_load: list[bool] = []

    def load_engine(spec: Any, **kwargs: Any) -> Any:
        if spec.pretrained == str(gated):
            frozen_during_load.append(gc.get_freeze_count() > 0)
            held.append(second_decode.wait(timeout=120))
        return real_load(spec, **kwargs)

    monkeypatch.setattr(EarlyMedia, "decode", decode)
    monkeypatch.setattr(loading, "load_engine", load_engine)
    lm = model(gated, batch_size=2, prefetch=2, decode_workers=1, decode_burst=1, load_processes=0)  # decodes here
    assert lm._engine is None and not lm._load.done  # the constructor did not wait for the load
    frozen = lm._startup.frozen
    assert frozen is not None and frozen.held and lm.stats.warmup_s > 0  # both before the load started
    got = answers(lm, docs)

    assert held == [True], "the load finished without decoding having started: generate_until joined it first"
    assert frozen_during_load == [True]  # no full collection walked the imports' objects during the load
    assert not frozen.held  # released at the end of the first call
    assert got == plain  # three clips, two questions each: the same answers as the plain path
    stats = lm.stats
    assert stats.decoded_during_load >= 1 and stats.decodes == 3
    assert stats.load_wait_s > 0 and stats.load_s >= stats.load_wait_s
    assert 0 <= stats.first_wait_s <= stats.wait_s <= stats.wall_s
    assert stats.load_wait_s + stats.wait_s <= stats.wall_s
    assert stats.to_dict()["load_wait_share"] == pytest.approx(stats.load_wait_s / stats.wall_s)


def test_a_failed_load_names_the_checkpoint_at_first_use(trained_llava_next_video: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken-weights"
    shutil.copytree(trained_llava_next_video, broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    lm = model(broken)  # config and media settings are fine: the constructor returns
    with pytest.raises(ModelLoadError, match=f"{broken}: loading the model failed") as info:
        answers(lm, [{"video": "unused.mp4", "question": "q"}])
    assert info.value.__cause__ is not None  # the original error is kept, not swallowed
    with pytest.raises(ModelLoadError, match=str(broken)):  # every later use says so again
        _ = lm.model


def test_options_are_still_checked_at_construction(trained_llava_next_video: Path, tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="unknown decoder 'nope'"):
        model(trained_llava_next_video, decoder="nope")
    missing = tmp_path / "no-such-checkpoint"
    with pytest.raises(ConfigError, match="config.json"):  # the generic id reads the config to find the family
        VideoLMM(pretrained=str(missing), device="cpu")
    lm = model(missing, freeze_gc="no", warm_decoder="false")  # the family is fixed: nothing to read before the load
    assert lm._startup.frozen is None and lm.stats.warmup_s == 0.0
    with pytest.raises(ModelLoadError, match=f"{missing}: loading the model failed"):
        _ = lm.tokenizer
    with pytest.raises(ConfigError, match="freeze_gc='maybe': expected a boolean"):
        model(missing, freeze_gc="maybe")


# -- the start-up measures ---------------------------------------------------------------------


def test_the_heap_freeze_is_shared_released_once_and_never_someone_elses() -> None:
    gc.collect()  # models dropped by earlier tests release their hold when collected
    assert startup._holders == 0 and gc.get_freeze_count() == 0
    first, second = FrozenHeap(), FrozenHeap()
    assert first.frozen > 0 and second.frozen == 0 and gc.get_freeze_count() > 0  # (freed objects leave it)
    first.release()
    first.release()  # idempotent: the second holder still holds the freeze
    assert gc.get_freeze_count() > 0 and second.held
    second.release()
    assert gc.get_freeze_count() == 0 and not second.held
    gc.freeze()  # the process froze objects itself: left as it is
    try:
        third = FrozenHeap()
        before = gc.get_freeze_count()
        third.release()
        # not unfrozen (that would empty it); frozen objects freed meanwhile by other threads leave it
        assert third.frozen == 0 and 0 < gc.get_freeze_count() <= before
    finally:
        gc.unfreeze()
    gc.disable()  # the collector is off: nothing to freeze
    try:
        fourth = FrozenHeap()
        assert fourth.frozen == 0 and gc.get_freeze_count() == 0
        fourth.release()
    finally:
        gc.enable()


def test_a_dropped_model_releases_its_hold(trained_llava_next_video: Path) -> None:
    lm = model(trained_llava_next_video, warm_decoder=False)
    frozen = lm._startup.frozen
    assert frozen is not None and frozen.held
    lm._load.wait()
    del lm
    gc.collect()
    assert not frozen.held


def test_the_warm_up_decodes_a_clip_in_memory_with_the_models_settings(caplog: pytest.LogCaptureFixture) -> None:
    registry = host()[0]
    media = MediaSettings(decoder="keyframe", sampling=SamplingSpec(num_frames=4))
    frames = FrameLoader(registry).load(tiny_clip(), media)
    assert frames.num_frames == 4 and frames.array.shape == (4, 64, 64, 3)
    seconds = warm_decoder(registry, media)
    assert seconds is not None and seconds > 0
    assert warm_decoder(registry, MediaSettings(decoder="frames")) is None  # reads folders: nothing to warm
    if importlib.util.find_spec("torchcodec") is None:  # a decoder that cannot run here: said, not raised
        with caplog.at_level(logging.INFO, logger="videolmm.eval.startup"):
            assert warm_decoder(registry, MediaSettings(decoder="torchcodec")) is None
        assert "decoder 'torchcodec' not warmed up (DecoderUnavailable" in caplog.text


def test_early_media_is_the_engines_media(trained_llava_next_video: Path, clips: dict[str, Path]) -> None:
    lm = LlavaNextVideo(pretrained=str(trained_llava_next_video), device="cpu", max_frames_num=3)
    request = Request(question="q", videos=(str(clips["red_right"]),))
    early = lm._media.decode(request)
    assert lm._media.media == lm.engine.settings.media
    assert lm.engine.frame_cache is lm._media.frame_cache  # one frame cache per model
    late = lm.engine.decode(request)
    assert early.error is None and early.videos[0].num_frames == 3
    assert np.array_equal(early.videos[0].array, late.videos[0].array)
    assert early.videos[0].indices == late.videos[0].indices


# -- the pipeline's rules, with a decode function that records what it was asked ------------------


class Recorder:
    """Decodes request i into a 1-frame 8x8 video; records the order and the most decodes at once."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.order: list[str] = []
        self.running = self.peak = 0
        self.gate = gate
        self.lock = threading.Lock()

    def __call__(self, request: Request) -> DecodedRequest:
        with self.lock:
            self.order.append(request.question)
            self.running += 1
            self.peak = max(self.peak, self.running)
        if self.gate is not None:
            self.gate.wait(timeout=60)
        frames = Frames(np.zeros((1, 8, 8, 3), np.uint8), (0,), (0.0,), 1.0, 1.0, request.question, 1)
        with self.lock:
            self.running -= 1
        return DecodedRequest(request, (frames,), decode_seconds=0.001)


def requests(n: int, videos: list[str] | None = None) -> list[Request]:
    videos = videos or [f"v{i}.mp4" for i in range(n)]
    return [Request(question=f"q{i}", videos=(videos[i],)) for i in range(n)]


def key(request: Request) -> tuple:
    return (request.videos,)


def test_pipeline_order_sharing_and_release() -> None:
    shared = ["a.mp4", "a.mp4", "b.mp4", "a.mp4", "c.mp4"]
    decode = Recorder()
    reqs = requests(5, shared)
    with DecodePipeline(decode, reqs, batch_size=2, prefetch=1, workers=1, media_key=key, loading=False) as pipe:
        got = [[item.request.question for item in batch] for batch in pipe.batches()]
        assert got == [["q0", "q1"], ["q2", "q3"], ["q4"]]
        assert sorted(decode.order) == ["q0", "q2", "q4"] and pipe.decodes == 3  # a.mp4 decoded once
        assert not pipe._done and not pipe._shared and pipe._held == 0  # every frame released
    assert frames_bytes(decode(reqs[0])) == 8 * 8 * 3


def test_pipeline_depth_preload_and_burst() -> None:
    # generating (not loading): the batch asked for plus `prefetch` batches, no further
    gate = threading.Event()
    decode = Recorder(gate)
    with DecodePipeline(decode, requests(12), batch_size=2, prefetch=1, workers=2, burst=4, loading=False) as pipe:
        assert pipe._next == 2  # workers=2 at most in flight while the consumer is not waiting
        gate.set()
        batches = pipe.batches()
        next(batches)
        with pipe._cond:
            while pipe._inflight:
                pipe._cond.wait()
            assert pipe._next == 4  # batch 0 handed over, batch 1 prefetched: nothing beyond
        assert len(list(batches)) == 5
    assert decode.peak <= 4
    # loading: everything ahead while the frames fit the preload bound; `burst` threads at once
    gate = threading.Event()
    decode = Recorder(gate)
    with DecodePipeline(decode, requests(12), batch_size=2, prefetch=1, workers=1, burst=3, loading=True) as pipe:
        assert pipe._inflight == 3
        gate.set()
        with pipe._cond:
            while pipe._next < 12 or pipe._inflight:
                pipe._cond.wait(timeout=60)
        assert pipe.decoded_during_load == 12
        pipe.loaded()
        assert sum(len(b) for b in pipe.batches()) == 12 and pipe.wait_s == 0.0
    # a preload bound of 0 bytes: no further than `prefetch` (the frames of one request exceed it)
    with DecodePipeline(Recorder(), requests(12), batch_size=2, prefetch=1, workers=1, preload_bytes=0) as pipe:
        with pipe._cond:
            while pipe._inflight:
                pipe._cond.wait(timeout=60)
            assert pipe._next == 4


def test_depth_grows_only_where_it_helps() -> None:
    assert deeper(2, 2, decode_s=0.5, generate_s=2.0) == 3  # decoding keeps up: a wait was unevenness
    assert deeper(8, 2, decode_s=0.5, generate_s=2.0) == 8  # at most 4 x prefetch
    assert deeper(2, 2, decode_s=3.0, generate_s=2.0) == 2  # decoding is the bottleneck: depth cannot help
    assert deeper(0, 0, decode_s=0.0, generate_s=2.0) == 0  # prefetch=0 means no decoding ahead


def test_pipeline_load_decodes_take_their_own_route_one_lane_at_a_time() -> None:
    """While the model loads, ``load_workers`` decodes at once go through ``load_decode`` (the eval
    model's decode processes); after :meth:`loaded`, the threads' ``decode`` takes the rest."""
    gate = threading.Event()
    during, after = Recorder(gate), Recorder()
    reqs = requests(6)
    with DecodePipeline(
        after, reqs, batch_size=2, prefetch=2, workers=1, burst=2, load_decode=during, load_workers=1, loading=True
    ) as pipe:
        for _ in range(500):
            if during.order:
                break
            threading.Event().wait(0.01)
        assert during.order == ["q0"] and during.peak == 1 and not after.order  # one lane, in order
        pipe.loaded()
        gate.set()
        got = [item.request.question for batch in pipe.batches() for item in batch]
    assert got == [f"q{i}" for i in range(6)]
    assert during.order == ["q0"] and sorted(after.order) == [f"q{i}" for i in range(1, 6)]
    assert pipe.decoded_during_load == 0 and pipe.decodes == 6  # q0 ended after the load did
