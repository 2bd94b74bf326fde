"""Decode processes forked before the model load (videolmm/eval/forked.py).

Checked on real decodes (PyAV, synthetic clips) in real child processes: the frames are the in-process
decode's, a broken video fails its own request with its name, a child that dies or was retired hands
its requests back to the caller's thread, the children exit at close, and the eval model routes the
decodes started during its load to them with unchanged answers.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from videolmm.errors import ConfigError
from videolmm.eval import loading
from videolmm.eval.forked import ForkedDecoders, fork_available
from videolmm.eval.model import LlavaNextVideo
from videolmm.eval.prefetch import EarlyMedia
from videolmm.eval.startup import load_processes_for
from videolmm.models.engine import DecodedRequest
from videolmm.types import Request

pytestmark = pytest.mark.skipif(not fork_available(), reason="decode processes are forked (Linux)")

GEN = {"max_new_tokens": 4, "temperature": 0, "do_sample": False, "until": ["\n", "."]}


@pytest.fixture(scope="module")
def media(trained_llava_next_video: Path) -> EarlyMedia:
    return EarlyMedia(LlavaNextVideo.spec_from_model_args(str(trained_llava_next_video), device="cpu", num_frames=4))


def same_frames(a: DecodedRequest, b: DecodedRequest) -> bool:
    return len(a.videos) == len(b.videos) and all(
        np.array_equal(x.array, y.array) and x.indices == y.indices for x, y in zip(a.videos, b.videos, strict=True)
    )


def test_children_decode_what_this_process_decodes(media: EarlyMedia, clips: dict[str, Path], tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    forked = ForkedDecoders(media, processes=2, cores=3)
    try:
        assert forked.processes == 2 and all(c.process.pid != os.getpid() for c in forked._children)
        requests = [Request(question="q", videos=(str(path),)) for path in clips.values()]
        results: list[DecodedRequest | None] = [None] * len(requests)

        def run(i: int) -> None:
            results[i] = forked.decode(requests[i])

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(requests))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        for request, got in zip(requests, results, strict=True):
            assert got is not None and got.error is None and got.request == request
            assert same_frames(got, media.decode(request)) and got.videos[0].num_frames == 4
        for child in forked._children:  # Ctrl-C reaches the whole process group: the children carry on
            os.kill(child.process.pid, signal.SIGINT)
        bad = forked.decode(Request(question="q", videos=(str(broken),)))
        assert bad.error is not None and "broken.mp4" in bad.error and not bad.videos
        assert forked.served == len(requests) + 1 and forked.fallbacks == 0
    finally:
        forked.close(timeout=30)
    assert all(not c.process.is_alive() and c.process.exitcode == 0 for c in forked._children)


def test_the_childrens_frame_cache_counts_in_this_process(
    trained_llava_next_video: Path, clips: dict[str, Path], tmp_path: Path
) -> None:
    spec = LlavaNextVideo.spec_from_model_args(
        str(trained_llava_next_video), device="cpu", num_frames=4, frame_cache=str(tmp_path / "cache")
    )
    cached = EarlyMedia(spec)
    forked = ForkedDecoders(cached, processes=1, cores=2)
    request = Request(question="q", videos=(str(next(iter(clips.values()))),))
    try:
        first, second = forked.decode(request), forked.decode(request)  # written by the child, then read back
    finally:
        forked.close(timeout=30)
    stats = cached.frame_cache.stats
    assert (stats.misses, stats.writes, stats.hits) == (1, 1, 1) and forked.served == 2
    assert same_frames(first, second) and same_frames(first, cached.decode(request))


def test_a_dead_child_hands_its_requests_back(
    media: EarlyMedia, clips: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    forked = ForkedDecoders(media, processes=1, cores=2)
    request = Request(question="q", videos=(str(next(iter(clips.values()))),))
    try:
        child = forked._children[0]
        os.kill(child.process.pid, signal.SIGKILL)
        child.process.join(10)
        with caplog.at_level(logging.WARNING, logger="videolmm.eval.forked"):
            got = forked.decode(request)  # decoded here instead
        assert "a decode process stopped" in caplog.text
        assert got.error is None and same_frames(got, media.decode(request))
        assert (forked.served, forked.fallbacks) == (0, 1)
        again = forked.decode(request)  # the dead child is not asked again: no wait, decoded here
        assert again.error is None and forked.fallbacks == 2
    finally:
        forked.close(timeout=30)


def test_retiring_releases_waiters_and_stops_the_children(media: EarlyMedia, clips: dict[str, Path]) -> None:
    forked = ForkedDecoders(media, processes=1, cores=2)
    request = Request(question="q", videos=(str(next(iter(clips.values()))),))
    busy = forked._take()  # the only child, taken: the next request waits for it
    assert busy is not None
    waited: list[DecodedRequest] = []
    waiter = threading.Thread(target=lambda: waited.append(forked.decode(request)))
    waiter.start()
    waiter.join(0.5)
    assert waiter.is_alive() and not waited  # waiting for a child
    forked.retire()
    waiter.join(30)
    assert len(waited) == 1 and waited[0].error is None and forked.fallbacks == 1  # decoded in its own thread
    forked._give_back(busy)  # the busy child comes back after the retirement: stopped
    forked.close(timeout=30)
    assert forked.retired and all(not c.process.is_alive() and c.process.exitcode == 0 for c in forked._children)
    assert forked.decode(request).error is None and forked.fallbacks == 2


def test_the_process_count_setting() -> None:
    assert load_processes_for("auto", 2) == 1 and load_processes_for("AUTO", 16) == 4
    assert load_processes_for("auto", 1) == 0 and load_processes_for(0, 8) == 0 and load_processes_for("3", 2) == 3
    for bad in ("-1", "many", 1.5):
        with pytest.raises(ConfigError, match="load_processes=.*expected 'auto' or an integer >= 0"):
            load_processes_for(bad, 2)


def test_the_eval_model_decodes_in_its_processes_while_it_loads(
    trained_llava_next_video: Path, clips: dict[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The load is held until a child has answered a decode, so it finishes only if the decodes started
    during the load went to the children; the answers are those of a model without processes."""
    from lmms_eval.api.instance import Instance

    docs = [{"video": str(path), "question": "What colour is the moving square?"} for path in clips.values()]

    def answers(lm: LlavaNextVideo) -> list[str]:
        lm.task_dict = {"fk": {"test": dict(enumerate(docs))}}
        requests = [
            Instance(
                "generate_until",
                (d["question"], dict(GEN), lambda doc: [doc["video"]], i, "fk", "test"),
                idx=0,
                metadata={"task": "fk", "doc_id": i, "repeats": 1},
            )  # fmt: skip
            for i, d in enumerate(docs)
        ]
        return [r.text for r in lm.generate_until(requests)]

    def build(ckpt: Path, processes: int) -> LlavaNextVideo:
        return LlavaNextVideo(pretrained=str(ckpt), device="cpu", num_frames=4, batch_size=2, load_processes=processes)

    plain = answers(build(trained_llava_next_video, 0))
    gated = tmp_path / "gated"
    shutil.copytree(trained_llava_next_video, gated)
    real_load = loading.load_engine
    lm: Any = None
    held: list[bool] = []

    def load_engine(spec: Any, **kwargs: Any) -> Any:
        if spec.pretrained == str(gated):
            tick = threading.Event()
            for _ in range(12000):  # at most 120 s
                if lm is not None and lm._startup.forked.served >= 1:
                    break
                tick.wait(0.01)
            held.append(lm is not None and lm._startup.forked.served >= 1)
        return real_load(spec, **kwargs)

    monkeypatch.setattr(loading, "load_engine", load_engine)
    lm = build(gated, 1)
    forked = lm._startup.forked
    assert forked is not None and forked.processes == 1
    got = answers(lm)
    assert held == [True] and got == plain
    assert lm.stats.decoded_during_load >= 1 and forked.served >= 1
    assert forked.retired and all(not c.process.is_alive() for c in forked._children)  # stopped after the call
