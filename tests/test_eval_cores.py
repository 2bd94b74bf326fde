"""Evaluation holds torch's cores from the keyframe decoder's reads while it generates (``hold_cores``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from test_eval_preload import instances

from videolmm.eval import model as eval_model
from videolmm.eval.model import LlavaNextVideo
from videolmm.media.cores import READS_IN_FLIGHT


@pytest.fixture(autouse=True)
def keep_torch_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _answers(lm: LlavaNextVideo, clips: dict[str, Path]) -> list[str]:
    docs = [{"video": str(path), "question": "What colour is the moving square?"} for path in clips.values()]
    lm.task_dict = {"pre": {"test": dict(enumerate(docs))}}
    return [r.text for r in lm.generate_until(instances(docs))]


def test_generation_holds_torchs_cores_from_the_reads_and_gives_them_back(
    trained_llava_next_video: Path, clips: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Right after torch's threads are sized for a batch, the reads see those cores held (none with
    ``hold_cores=false``); after the call nothing is held; the answers do not change."""
    seen: list[tuple[int, int]] = []  # (torch threads, cores held from the reads) per batch
    real = eval_model.generate_continuous

    def spy(engine: Any, batches: Any, record: Any, sums: Any, size_threads: Any, *args: Any) -> None:
        def sized(last: Any) -> None:
            size_threads(last)
            seen.append((torch.get_num_threads(), READS_IN_FLIGHT.reserved))

        real(engine, batches, record, sums, sized, *args)

    monkeypatch.setattr(eval_model, "generate_continuous", spy)
    answers = {}
    for hold in (True, False):
        seen.clear()
        kwargs = {"device": "cpu", "num_frames": 4, "batch_size": 2, "torch_threads": 1, "hold_cores": hold}
        lm = LlavaNextVideo(pretrained=str(trained_llava_next_video), **kwargs)
        answers[hold] = _answers(lm, clips)
        assert len(seen) == lm.stats.batches >= 2
        assert seen == [(1, 1 if hold else 0)] * len(seen)
        assert READS_IN_FLIGHT.reserved == 0
    assert answers[True] == answers[False]
