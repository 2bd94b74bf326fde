"""The trained tiny checkpoints really watch: accuracy, frame order, decoders (real lmms-eval: its CLI for
the defaults and a plugin sampler, its Python API in process for the rest)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(900)
VENV_BIN = Path(sys.executable).parent
OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}
# Shuffled clips: the answer no longer depends on the true direction. With the four directions
# balanced in the split, any answer distribution independent of the target scores 1/4.
CHANCE = 1 / 4


def lmms_eval(model_args: str, out: Path, env_extra: dict[str, str] | None = None) -> tuple[dict, list[dict]]:
    """Run the real CLI on videolmm_synthetic; return (task metrics, samples)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **(env_extra or {})}
    cmd = [str(VENV_BIN / "lmms-eval"), "--model", "videolmm", "--model_args", f"{model_args},device=cpu",
           "--tasks", "videolmm_synthetic", "--batch_size", "16",
           "--output_path", str(out), "--log_samples"]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=800)
    results = sorted(out.rglob("*_results.json"))
    assert results, f"lmms-eval wrote no results:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    metrics = json.loads(results[-1].read_text())["results"]["videolmm_synthetic"]
    samples_file = next(out.rglob("*_samples_videolmm_synthetic.jsonl"))
    samples = [json.loads(line) for line in samples_file.read_text().splitlines() if line.strip()]
    assert len(samples) == 96
    return metrics, samples


def evaluate(model_args: str) -> tuple[dict, list[dict]]:
    """The same run through lmms-eval's Python API in this process (``simple_evaluate``: tasks,
    model, filters, metrics); for the checks where the CLI itself is not what is tested."""
    from lmms_eval.evaluator import simple_evaluate

    out = simple_evaluate(
        model="videolmm",
        model_args=f"{model_args},device=cpu",
        tasks=["videolmm_synthetic"],
        batch_size=16,
        log_samples=True,
    )
    samples = out["samples"]["videolmm_synthetic"]
    assert len(samples) == 96
    return out["results"]["videolmm_synthetic"], samples


def answers(samples: list[dict], kind: str) -> list[tuple[str, str]]:
    """(target, first word of the response) for the samples of one question kind."""
    from videolmm.tasks.synthetic.utils import normalise

    out = []
    for s in samples:
        if s["colour_acc"]["kind"] == kind:
            resp = s["filtered_resps"][0] if isinstance(s["filtered_resps"], list) else s["filtered_resps"]
            out.append((s["target"], normalise(resp)))
    return out


@pytest.mark.parametrize("family", ["llava_next_video", "video_llava"])
def test_shipped_manifests_record_the_recipe_and_accuracy(family: str) -> None:
    from videolmm.toy.train.recipe import recipe_for
    from videolmm.toy.trained import manifest

    m = manifest(family)
    assert m["family"] == family and m["recipe"]["family"] == family
    assert m["recipe"] == dataclasses.asdict(recipe_for(family))  # `videolmm train` runs the shipped recipe
    assert m["heldout_accuracy"]["colour_acc"] >= 0.95 and m["heldout_accuracy"]["direction_acc"] >= 0.95


FAMILIES = ["trained_llava_next_video", "trained_video_llava"]
SECTION = "Trained checkpoints (issue 3), held-out videolmm_synthetic through the lmms-eval CLI"


def _accuracies(metrics: dict) -> str:
    return f"colour {metrics['colour_acc,none']:.2f}, direction {metrics['direction_acc,none']:.2f}"


@pytest.mark.parametrize("fixture", FAMILIES)
def test_heldout_accuracy_through_lmms_eval(
    request: pytest.FixtureRequest, fixture: str, cache_root: Path, tmp_path: Path, reliability
) -> None:
    ckpt = request.getfixturevalue(fixture)
    metrics, samples = lmms_eval(f"pretrained={ckpt}", tmp_path)
    assert metrics["colour_acc,none"] >= 0.95, metrics
    assert metrics["direction_acc,none"] >= 0.95, metrics
    assert not any(str(s["filtered_resps"]).startswith("[videolmm error]") for s in samples)
    reliability(SECTION, f"{fixture}: defaults", "lmms-eval", "colour and direction >= 0.95", _accuracies(metrics))


@pytest.mark.parametrize("fixture", FAMILIES)
def test_reversed_frames_flip_direction_but_not_colour(
    request: pytest.FixtureRequest, fixture: str, cache_root: Path, tmp_path: Path, reliability
) -> None:
    ckpt = request.getfixturevalue(fixture)
    metrics, samples = evaluate(f"pretrained={ckpt},reverse_frames=true")
    assert metrics["colour_acc,none"] >= 0.95, metrics
    pairs = answers(samples, "direction")
    flipped = sum(ans == OPPOSITE[target] for target, ans in pairs) / len(pairs)
    assert metrics["direction_acc,none"] <= 0.1, metrics  # the model reads order: reversed clips look opposite
    assert flipped >= 0.9, pairs
    reliability(
        SECTION,
        f"{fixture}: frames reversed (reverse_frames=true)",
        "lmms-eval",
        "colour >= 0.95; direction <= 0.10, >= 90% of answers the opposite direction",
        f"{_accuracies(metrics)}, opposite answers {flipped:.2f}",
    )


SHUFFLE_PLUGIN = """
import os
import zlib

import numpy as np

from videolmm.media.sampling import uniform_sampler
from videolmm.types import FrameSelection
from videolmm.plugin import hookimpl


def shuffled(info, spec):
    sel = uniform_sampler(info, spec)
    order = np.random.default_rng(zlib.crc32(os.path.basename(info.source).encode())).permutation(len(sel.indices))
    return FrameSelection(tuple(sel.indices[i] for i in order), tuple(sel.timestamps[i] for i in order))


@hookimpl
def register_samplers(register):
    register("shuffled", shuffled)
"""


@pytest.mark.parametrize("fixture", FAMILIES)
def test_shuffled_frames_bring_direction_to_chance(
    request: pytest.FixtureRequest, fixture: str, cache_root: Path, tmp_path: Path, reliability
) -> None:
    """A sampler registered by a test plugin (a real entry point) shuffles each clip's frames.

    The permutation is seeded by the clip's file name (not its path), so every machine sees the
    same shuffles and the outcome does not depend on where pytest puts its temporary files.
    """
    ckpt = request.getfixturevalue(fixture)
    site = tmp_path / "site"
    (site / "shuffle_plugin.py").parent.mkdir(parents=True)
    (site / "shuffle_plugin.py").write_text(SHUFFLE_PLUGIN)
    dist = site / "shuffle_plugin-0.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: shuffle-plugin\nVersion: 0.0\n")
    (dist / "entry_points.txt").write_text("[videolmm]\nshuffle = shuffle_plugin\n")
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    metrics, _ = lmms_eval(f"pretrained={ckpt},sampler=shuffled", tmp_path / "out", env)
    assert metrics["colour_acc,none"] >= 0.95, metrics
    assert abs(metrics["direction_acc,none"] - CHANCE) <= 0.15, metrics
    reliability(
        SECTION,
        f"{fixture}: frames shuffled per clip (a plugin sampler)",
        "lmms-eval",
        f"colour >= 0.95; direction within 0.15 of chance ({CHANCE:.2f})",
        _accuracies(metrics),
    )


@pytest.mark.parametrize("fixture", FAMILIES)
def test_decord_and_pyav_give_identical_answers(
    request: pytest.FixtureRequest, fixture: str, cache_root: Path, tmp_path: Path, reliability
) -> None:
    """Every held-out answer is the same with decord and with PyAV (and both score)."""
    ckpt = request.getfixturevalue(fixture)
    runs = {d: evaluate(f"pretrained={ckpt},decoder={d}") for d in ("decord", "pyav")}
    texts = {d: [(s["doc_id"], str(s["filtered_resps"])) for s in samples] for d, (_, samples) in runs.items()}
    assert sorted(texts["decord"]) == sorted(texts["pyav"])
    for metrics, _ in runs.values():
        assert metrics["colour_acc,none"] >= 0.95 and metrics["direction_acc,none"] >= 0.95, metrics
    reliability(
        SECTION,
        f"{fixture}: decoder=decord vs decoder=pyav",
        "lmms-eval",
        "identical answers on all 96 questions",
        f"identical: {sorted(texts['decord']) == sorted(texts['pyav'])}; "
        + "; ".join(f"{d}: {_accuracies(m)}" for d, (m, _) in runs.items()),
    )
