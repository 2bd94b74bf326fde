"""The continuous scheduler: every request gets what it would get alone, however it joins and leaves.

Greedy parity is checked against the static path run one request at a time (``model.generate``
on a batch of one): identical tokens on the trained tiny checkpoints; on random tiny checkpoints
of every family the same text, and first-step logits within 1e-4 of the request alone.
"""

from __future__ import annotations

import gc
import threading
import time
import weakref
from pathlib import Path

import pytest

from videolmm.load import load_engine
from videolmm.models.continuous import RunningBatch, TextStream
from videolmm.models.scheduler import Scheduler
from videolmm.types import GenerationSettings, Request

QUESTIONS = (
    "What colour is the moving square?",
    "Which way does the square move? Answer in one word, please, and be brief about it.",
    "Colour?",
    "Describe the clip.",
)


def _requests(clips: dict[str, Path], max_tokens: tuple[int, ...], stop: tuple[str, ...] = ()) -> list[Request]:
    paths = list(clips.values())
    return [
        Request(
            question=QUESTIONS[i % len(QUESTIONS)],
            videos=(str(paths[i % len(paths)]),),
            generation=GenerationSettings(max_new_tokens=n, stop=stop if i % 2 else ()),
            request_id=f"r{i}",
        )
        for i, n in enumerate(max_tokens)
    ]


def _alone(engine, requests):  # noqa: ANN001, ANN202
    return [engine.generate_static([engine.decode(r)], batch_size=1)[0] for r in requests]


@pytest.fixture(scope="module")
def trained(trained_llava_next_video: Path):  # noqa: ANN201
    return load_engine(str(trained_llava_next_video), device="cpu", num_frames=8)


@pytest.mark.parametrize("batch_size", [1, 2, 3, 8])
def test_trained_checkpoint_identical_tokens_in_every_mix(trained, clips: dict[str, Path], batch_size: int) -> None:
    """Mixed max_tokens, prompt lengths and stop strings; requests join as others leave."""
    requests = _requests(clips, (3, 16, 1, 9, 24, 5, 12), stop=(".",))
    together = trained.generate(requests, batch_size=batch_size)
    alone = _alone(trained, requests)
    assert [r.text for r in together] == [r.text for r in alone]
    assert [r.usage for r in together] == [r.usage for r in alone]
    assert [r.finish_reason for r in together] == [r.finish_reason for r in alone]
    assert all(r.ok for r in together)


FAMILIES = ["tiny_llava_next_video", "tiny_video_llava", "tiny_llava_video_qwen2", "tiny_llava_hound"]


class _Recording(RunningBatch):
    """Keeps the logits of every token choice (first-step logits of a prefill)."""

    def __init__(self, engine) -> None:  # noqa: ANN001
        super().__init__(engine)
        self.logits: list = []

    def _pick(self, logits, rows):  # noqa: ANN001, ANN202
        self.logits.append(logits.detach().clone())
        return super()._pick(logits, rows)


@pytest.mark.parametrize("fixture", FAMILIES)
def test_every_family_matches_alone(request: pytest.FixtureRequest, clips: dict[str, Path], fixture: str) -> None:
    import torch

    engine = load_engine(str(request.getfixturevalue(fixture)), device="cpu", num_frames=4)
    requests = _requests(clips, (6, 2, 10, 4))
    together = engine.generate(requests, batch_size=3)
    alone = _alone(engine, requests)
    assert [r.text for r in together] == [r.text for r in alone]
    assert [r.usage for r in together] == [r.usage for r in alone]

    # first-step logits of a request prefilled together with others vs alone
    items = [engine.decode(r) for r in requests[:2]]
    together_batch, alone_batch = _Recording(engine), _Recording(engine)
    together_batch.admit(items)
    alone_batch.admit(items[1:])
    assert torch.allclose(together_batch.logits[0][1], alone_batch.logits[0][0], atol=1e-4)


def test_a_request_joining_mid_generation_gets_its_own_answer(trained, clips: dict[str, Path]) -> None:
    engine = trained
    requests = _requests(clips, (24, 8, 12))
    alone = _alone(engine, requests)
    batch = RunningBatch(engine)
    items = [engine.decode(r) for r in requests]
    rows = batch.admit(items[:1])
    for _ in range(5):
        batch.step()
    rows += batch.admit(items[1:])  # joins a cache 5 steps longer
    finished = []
    while len(batch):
        finished += batch.step()
    from videolmm.models.scheduler import finish

    results = {row.item.request.request_id: finish(engine, row) for row in rows}
    assert [results[r.request_id].text for r in requests] == [r.text for r in alone]


def test_a_failing_request_fails_alone(trained, clips: dict[str, Path], broken_video: Path) -> None:
    requests = _requests(clips, (8, 8, 8))
    bad = Request(question="<video>\n<video>\nTwo?", videos=(str(next(iter(clips.values()))),), request_id="bad")
    results = trained.generate([requests[0], bad, requests[1], Request(question="x", videos=(str(broken_video),))], 4)
    assert [r.ok for r in results] == [True, False, True, False]
    assert "PromptError" in results[1].error
    assert [results[0].text, results[2].text] == [r.text for r in _alone(trained, requests[:2])]


def test_scheduler_streams_deltas_that_add_up_to_the_answer(trained, clips: dict[str, Path]) -> None:
    requests = _requests(clips, (40, 6, 20, 30), stop=(".",))
    alone = _alone(trained, requests)
    scheduler = Scheduler(trained, max_batch_size=2)
    pieces: dict[str, list[str]] = {r.request_id: [] for r in requests}
    tickets = []
    for r in requests:
        tickets.append(scheduler.submit(trained.decode(r), pieces[r.request_id].append))
        time.sleep(0.01)  # arrivals while others run
    results = [t.result(timeout=120) for t in tickets]
    scheduler.close()
    assert [r.text for r in results] == [r.text for r in alone]
    assert ["".join(pieces[r.request_id]) for r in requests] == [r.text for r in alone]


def test_cancel_frees_the_slot_and_the_rest_goes_on(trained, clips: dict[str, Path]) -> None:
    requests = _requests(clips, (200, 10, 10))
    scheduler = Scheduler(trained, max_batch_size=1)
    submitted: list = []
    assigned = threading.Event()

    def cancel_at_first_text(_: str) -> None:  # on the scheduler's thread: the cancel lands before its next step
        assert assigned.wait(60)
        submitted[0].cancel()

    long = scheduler.submit(trained.decode(requests[0]), cancel_at_first_text)
    submitted.append(long)
    assigned.set()
    others = [scheduler.submit(trained.decode(r)) for r in requests[1:]]
    cancelled = long.result(timeout=60)
    assert not cancelled.ok and "RequestCancelled" in cancelled.error
    assert [t.result(timeout=60).text for t in others] == [r.text for r in _alone(trained, requests[1:])]
    scheduler.close()


def test_a_finished_request_frees_its_frames_without_the_cyclic_gc(trained, clips: dict[str, Path]) -> None:
    """In Serve the frames are views of Ray's object store: held until a GC pass, they filled the
    store and every new decode result waited seconds for spilling (issue 14's decode-heavy stall)."""
    scheduler = Scheduler(trained, max_batch_size=2)
    frames = []
    gc.disable()
    try:
        for r in _requests(clips, (3, 2, 3)):
            item = trained.decode(r)
            frames.append(weakref.ref(item.videos[0].array))
            ticket = scheduler.submit(item, [].append)
            del item
            assert ticket.result(timeout=60).ok
            del ticket
        # freed once the scheduler thread is back waiting for the next request (its loop locals are gone);
        # polled, with the cyclic GC still off, since that thread may be descheduled for a while
        deadline = time.monotonic() + 10
        while any(ref() is not None for ref in frames) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [ref() is None for ref in frames] == [True, True, True]
    finally:
        gc.enable()
        scheduler.close()


def test_text_stream_holds_back_a_possible_stop_string() -> None:
    class Tok:
        def decode(self, ids, skip_special_tokens=True):  # noqa: ANN001, ANN202
            return "".join(chr(i) for i in ids)

    stream = TextStream(Tok(), stop=("END",))
    shown = []
    for text in ("ab", "ab E", "ab EN", "ab ENx"):  # "EN" may start END: held until it does not
        shown.append(stream.update([ord(c) for c in text]))
    assert shown == ["ab", "", "", " ENx"]
    stream = TextStream(Tok(), stop=("END",))
    assert stream.update([ord(c) for c in "hi EN"]) == "hi"
    assert stream.update([ord(c) for c in "hi END more"]) == ""
    assert stream.stopped and stream.finish("hi") == ""


def test_a_long_answer_does_not_hold_the_others(tiny_llava_next_video: Path, clips: dict[str, Path]) -> None:
    """Two slots, one long request: the three short ones pass through the other slot meanwhile."""
    from videolmm.models.scheduler import generate_continuous

    engine = load_engine(str(tiny_llava_next_video), device="cpu", num_frames=4)
    requests = _requests(clips, (48, 3, 3, 3))
    order: list[int] = []
    results = generate_continuous(
        engine, [engine.decode(r) for r in requests], max_batch_size=2, on_result=lambda i, _: order.append(i)
    )
    assert results[0].usage.completion_tokens == 48  # the random tiny model never says EOS this early
    assert order == [1, 2, 3, 0]
    assert [r.text for r in results] == [r.text for r in _alone(engine, requests)]


def test_broken_callbacks_and_a_cancelled_future_fail_only_their_own_request(trained, clips: dict[str, Path]) -> None:
    """A stream consumer that raises fails its own request; a metrics callback that raises stops
    nothing; a caller cancelling the future (asyncio.wrap_future) cancels the request."""

    def boom(*_: object) -> None:
        raise RuntimeError("consumer went away")

    requests = _requests(clips, (30, 8, 8))
    scheduler = Scheduler(trained, max_batch_size=3, on_step=boom)
    broken = scheduler.submit(trained.decode(requests[0]), boom)
    cancelled = scheduler.submit(trained.decode(requests[0]))
    cancelled.future.cancel()
    fine = scheduler.submit(trained.decode(requests[1]))
    later = scheduler.submit(trained.decode(requests[2]))
    failed = broken.result(timeout=60)
    assert not failed.ok and "stream consumer failed" in failed.error
    assert [fine.result(timeout=60).text, later.result(timeout=60).text] == [
        r.text for r in _alone(trained, requests[1:])
    ]
    assert cancelled.future.cancelled()
    scheduler.close()


def test_newcomers_wait_for_min_join_free_slots_and_answers_do_not_change(trained, clips: dict[str, Path]) -> None:
    """Evaluation's admission (join once half the slots are free): prefills are grouped, answers equal."""
    import videolmm.models.scheduler as scheduler_module

    requests = _requests(clips, (3, 16, 1, 9, 24, 5, 12, 2), stop=(".",))
    sizes: list[int] = []
    real_admit = scheduler_module.admit

    def counting_admit(batch, items, sinks):  # noqa: ANN001, ANN202
        sizes.append(len(items))
        return real_admit(batch, items, sinks)

    scheduler_module.admit = counting_admit
    try:
        together = scheduler_module.generate_continuous(
            trained, [trained.decode(r) for r in requests], max_batch_size=4, min_join=2
        )
    finally:
        scheduler_module.admit = real_admit
    assert [r.text for r in together] == [r.text for r in _alone(trained, requests)]
    assert sizes[0] == 4 and sum(sizes) == len(requests)
    assert all(n >= 2 for n in sizes[:-1])  # never one newcomer alone while others run (the last may be)
