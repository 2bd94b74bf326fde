"""``videolmm train`` is deterministic: the same recipe and seed give the same weights, bit for bit
(what "retraining reproduces the shipped checkpoints" rests on), and a different seed does not.

A scaled-down recipe (a few clips and steps) keeps this to seconds; the shipped recipes differ only
in their counts (``videolmm.toy.train.recipe.recipe_for``)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from videolmm.toy.train.loop import train
from videolmm.toy.train.recipe import recipe_for

pytestmark = pytest.mark.timeout(600)


def _small(family: str, seed: int = 0):
    return dataclasses.replace(
        recipe_for(family), seed=seed, num_clips=6, steps=3, batch_size=4, warmup=1, heldout_clips=2
    )


def _weights(folder: Path) -> dict:
    tensors = {}
    for shard in sorted(folder.glob("*.safetensors")):
        tensors.update(load_file(str(shard)))
    return tensors


@pytest.mark.parametrize("family", ["llava_next_video", "video_llava"])
def test_same_recipe_same_weights(tmp_path: Path, family: str) -> None:
    first = train(_small(family), tmp_path / "a", log=lambda _: None)
    second = train(_small(family), tmp_path / "b", log=lambda _: None)
    other = train(_small(family, seed=1), tmp_path / "c", log=lambda _: None)
    a, b, c = (_weights(tmp_path / d) for d in "abc")
    assert a.keys() == b.keys() and a
    assert all((a[k] == b[k]).all() for k in a), "retraining with the same recipe changed the weights"
    assert any(not (a[k] == c[k]).all() for k in a), "the seed does not reach the weights"
    assert first["final_loss_ema"] == second["final_loss_ema"]
    assert (
        first["recipe"]
        == dataclasses.asdict(_small(family))
        == json.loads((tmp_path / "a" / "videolmm_trained.json").read_text())["recipe"]
    )
    assert other["recipe"]["seed"] == 1
