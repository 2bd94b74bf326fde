"""Paths that need a CUDA GPU (``gpu``) or the real checkpoints from the Hugging Face hub (``hub``).

Skipped by default (``pyproject.toml``'s ``addopts``); run on a GPU machine with hub access with
``pytest -m "gpu or hub" tests/test_real_checkpoints.py`` (unset ``HF_HUB_OFFLINE``). Each test
also skips itself when what it needs is absent, so a mis-selected run says why.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from videolmm.load import load_engine
from videolmm.models.families.base import LoadOptions
from videolmm.types import GenerationSettings, Request

torch = pytest.importorskip("torch")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
needs_hub = pytest.mark.skipif(os.environ.get("HF_HUB_OFFLINE") == "1", reason="needs Hugging Face hub access")

GREEDY = GenerationSettings(max_new_tokens=16)
QUESTIONS = ("What colour is the moving square?", "Which way does the square move?")


def _requests(clips: dict[str, Path]) -> list[Request]:
    return [Request(question=q, videos=(str(path),), generation=GREEDY) for path in clips.values() for q in QUESTIONS]


@pytest.mark.gpu
@needs_cuda
def test_tiny_checkpoint_on_cuda_answers_as_on_cpu(trained_llava_next_video: Path, clips: dict[str, Path]) -> None:
    """The GPU path (placement, batched left-padded generate) gives the CPU path's greedy answers."""
    requests = _requests(clips)
    cpu = load_engine(str(trained_llava_next_video), load=LoadOptions(device="cpu", dtype="float32"))
    gpu = load_engine(str(trained_llava_next_video), load=LoadOptions(device="cuda", dtype="float32"))
    assert str(gpu.model.device).startswith("cuda")
    on_cpu = [r.text for r in cpu.generate(requests, batch_size=len(requests))]
    on_gpu = [r.text for r in gpu.generate(requests, batch_size=len(requests))]
    assert on_gpu == on_cpu


@pytest.mark.gpu
@needs_cuda
def test_bfloat16_batched_generation_on_cuda(trained_llava_next_video: Path, clips: dict[str, Path]) -> None:
    engine = load_engine(str(trained_llava_next_video), load=LoadOptions(device="cuda", dtype="bfloat16"))
    assert engine.model.dtype == torch.bfloat16
    results = engine.generate(_requests(clips), batch_size=4)
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]


@pytest.mark.hub
@pytest.mark.gpu
@needs_hub
@needs_cuda
@pytest.mark.parametrize(
    ("repo", "frames", "per_frame"),
    [("llava-hf/LLaVA-NeXT-Video-7B-hf", 8, 144), ("LanguageBind/Video-LLaVA-7B-hf", 8, 257)],
)
def test_published_checkpoint_generates_with_the_seeds_token_count(
    repo: str, frames: int, per_frame: int, clips: dict[str, Path]
) -> None:
    """The real 7B checkpoints: the visual token count per frame the seed uses, and a real answer."""
    engine = load_engine(repo, num_frames=frames, load=LoadOptions(device="cuda", dtype="float16"))
    (result,) = engine.generate([Request(question=QUESTIONS[0], videos=(str(clips["red_right"]),), generation=GREEDY)])
    assert result.ok, result.error
    assert result.usage.visual_tokens == frames * per_frame
    assert result.text and result.text.strip()
