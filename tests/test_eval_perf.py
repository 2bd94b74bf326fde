"""The eval fast path (batches decoded ahead in threads) answers exactly what the plain path
answers, and its timing counters (``VIDEOLMM_EVAL_STATS``) add up. No speed is asserted."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from lmms_eval.api.instance import GenerationResult, Instance

from videolmm.errors import ConfigError
from videolmm.eval.markers import ERROR_PREFIX
from videolmm.eval.model import STATS_ENV, LlavaNextVideo
from videolmm.toy.synthetic import COLOURS

GEN = {"max_new_tokens": 4, "temperature": 0, "do_sample": False, "until": ["\n", "."]}
QUESTIONS = ("What colour is the moving square? Answer with one word.", "Which way does the square move?")


@pytest.fixture(scope="module")
def docs(clips: dict[str, Path], broken_video: Path) -> list[dict[str, str]]:
    """Six questions over three clips, and one question about a broken file (fails alone)."""
    out = [{"video": str(path), "question": q} for path in clips.values() for q in QUESTIONS]
    out.insert(3, {"video": str(broken_video), "question": QUESTIONS[0]})
    return out


def instances(docs: list[dict[str, str]]) -> list[Instance]:
    def doc_to_visual(doc: dict[str, str]) -> list[str]:
        return [doc["video"]]

    return [
        Instance(
            "generate_until",
            (d["question"], dict(GEN), doc_to_visual, i, "perf", "test"),
            idx=0,
            metadata={"task": "perf", "doc_id": i, "repeats": 1},
        )  # fmt: skip
        for i, d in enumerate(docs)
    ]


def answers(lm: LlavaNextVideo, docs: list[dict[str, str]]) -> list[str]:
    lm.task_dict = {"perf": {"test": dict(enumerate(docs))}}
    out = lm.generate_until(instances(docs))
    assert all(isinstance(r, GenerationResult) for r in out)
    return [r.text for r in out]


@pytest.fixture(autouse=True)
def keep_torch_threads() -> Iterator[None]:
    """Our model sizes torch's threads process-wide: give the rest of the session its count back."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def model(ckpt: Path, **kwargs: object) -> LlavaNextVideo:
    return LlavaNextVideo(pretrained=str(ckpt), device="cpu", num_frames=4, **kwargs)


def test_prefetch_and_decode_threads_change_no_answer(
    trained_llava_next_video: Path, docs: list[dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stats_path = tmp_path / "stats.json"
    monkeypatch.setenv(STATS_ENV, str(stats_path))
    plain = answers(model(trained_llava_next_video, batch_size=3, prefetch=0, decode_workers=1), docs)
    fast_lm = model(trained_llava_next_video, batch_size=3, prefetch=2, decode_workers=2)
    fast = answers(fast_lm, docs)

    assert fast == plain
    assert plain[3].startswith(ERROR_PREFIX) and sum(a.startswith(ERROR_PREFIX) for a in plain) == 1
    assert {plain[0], plain[2]} <= set(COLOURS)  # the trained checkpoint names a colour

    # the two questions about each clip share one decode; the answers are the engine's on its own
    per_batch = [instances(docs)[i : i + 3] for i in range(0, len(docs), 3)]
    direct = [r for chunk in per_batch for r in fast_lm.engine.generate([fast_lm._to_request(x) for x in chunk], 3)]
    assert [ERROR_PREFIX + r.error if r.error else r.text for r in direct] == fast

    stats = json.loads(stats_path.read_text())
    assert stats == fast_lm.stats.to_dict()
    assert (stats["samples"], stats["decodes"], stats["batches"]) == (len(docs), 4, 3)
    assert (stats["batch_size"], stats["prefetch"], stats["decode_workers"]) == (3, 2, 2)
    assert stats["decode_s"] > 0 and stats["generate_s"] > 0
    assert 0 <= stats["wait_s"] <= stats["wall_s"] and stats["generate_s"] <= stats["wall_s"]
    assert stats["wait_share"] == pytest.approx(stats["wait_s"] / stats["wall_s"])


def test_stats_accumulate_over_calls_without_the_env(
    trained_llava_next_video: Path, docs: list[dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(STATS_ENV, raising=False)
    lm = model(trained_llava_next_video, batch_size=4)
    answers(lm, docs[:2])
    first = lm.stats
    answers(lm, docs[:5])
    assert (first.samples, first.decodes, first.batches) == (2, 1, 1)
    assert (lm.stats.samples, lm.stats.decodes, lm.stats.batches) == (7, 4, 3)
    assert lm.stats.wall_s > first.wall_s
    assert 0 <= lm.stats.wait_share <= 1


def test_torch_threads_share_the_cores_with_decoding(
    trained_llava_next_video: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("videolmm.eval.threads.usable_cores", lambda: 6)
    lm = model(trained_llava_next_video, decode_workers=2)
    assert lm.stats.torch_threads == 4 == torch.get_num_threads()
    model(trained_llava_next_video, decode_workers=8)
    assert torch.get_num_threads() == 1  # never below one
    model(trained_llava_next_video, torch_threads=3)
    assert torch.get_num_threads() == 3
    assert model(trained_llava_next_video, torch_threads="none").stats.torch_threads == 0
    assert torch.get_num_threads() == 3  # left alone
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert model(trained_llava_next_video).stats.torch_threads == 0  # the user's setting wins
    with pytest.raises(ConfigError, match="torch_threads='many'"):
        model(trained_llava_next_video, torch_threads="many")


def test_auto_threads_take_every_core_only_when_decoding_is_cheap() -> None:
    from videolmm.eval.threads import CHEAP_DECODE_SHARE, threads_for

    assert threads_for(None, 4, 1) == 3  # the first batch: nothing measured yet
    assert threads_for((0.01, 1.0), 4, 1) == 4  # decoding a small share of generating: every core
    assert threads_for((CHEAP_DECODE_SHARE * 1.0, 1.0), 4, 1) == 3  # at the bar: share with decoding
    assert threads_for((2.0, 1.0), 4, 1) == 3
    assert threads_for((2.0, 1.0), 2, 4) == 1  # never below one


def test_a_fixed_thread_count_is_kept_across_batches(
    trained_llava_next_video: Path, docs: list[dict[str, str]]
) -> None:
    lm = model(trained_llava_next_video, torch_threads=1, batch_size=2)
    lm.generate_until(instances(docs))
    assert torch.get_num_threads() == 1 and lm.stats.torch_threads == 1


def test_continuous_and_static_schedulers_give_the_same_answers(
    trained_llava_next_video: Path, docs: list[dict[str, str]]
) -> None:
    """lmms-eval's path on the continuous scheduler (the default) answers what the static one does,
    in the requests' order, the broken video failing alone on both."""
    continuous = model(trained_llava_next_video, batch_size=3)
    static = model(trained_llava_next_video, batch_size=3, scheduler="static")
    assert continuous.engine.continuous and not static.engine.continuous
    got = answers(continuous, docs)
    assert got == answers(static, docs)
    assert [a.startswith(ERROR_PREFIX) for a in got] == [i == 3 for i in range(len(docs))]
    assert continuous.stats.samples == len(docs) and continuous.stats.batches == 3  # prefetched batches of 3
