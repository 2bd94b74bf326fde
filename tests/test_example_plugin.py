"""The example third-party plugin (``examples/videolmm-example-plugin``), installed for real.

The package is built and installed with pip into a temporary ``--target`` folder (from a copy,
so the build leaves nothing in the source tree); every check then runs in a subprocess with
``PYTHONPATH`` pointing there, exactly as a user who ``pip install``-ed the plugin would run
``videolmm`` and ``lmms-eval``. Nothing in videolmm names the package: it is found through the
``videolmm`` entry-point group.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from importlib.metadata import distributions
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "videolmm-example-plugin"
BIN = Path(sys.executable).parent
DEMO_TASK = REPO / "videolmm" / "tasks" / "synthetic"
ERROR_PREFIX = "[videolmm error]"

PLUGIN = "example"
FAMILY = "llava_onevision_video"
SAMPLER = "segment_middle"
TEMPLATE = "onevision_chat"
FRAMES = 4
TOKENS_PER_FRAME = 4  # tiny SigLIP: 32 px / patch 8 = 4x4 grid, bilinear to ceil(4/2) = 2 per side


def video_chatgpt_indices(total: int, desired: int) -> list[int]:
    """Reference: Video-ChatGPT's ``get_seq_frames`` (with its ``min(N, F)``), written with numpy as there."""
    desired = min(total, desired)
    seg_size = float(total - 1) / desired
    return [(int(np.round(seg_size * i)) + int(np.round(seg_size * (i + 1)))) // 2 for i in range(desired)]


def _command(script: str, module: str) -> list[str]:
    """The venv's console script, or ``python -m module`` when the script is missing."""
    path = BIN / script
    return [str(path)] if path.exists() else [sys.executable, "-m", module]


def _run(
    cmd: Sequence[Any], env: dict[str, str], *, cwd: Path, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd``; fail the test with the output tails when it exits non-zero."""
    proc = subprocess.run(
        [str(c) for c in cmd], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, (
        f"{' '.join(map(str, cmd))} exited {proc.returncode}\n--- stdout ---\n{proc.stdout[-4000:]}"
        f"\n--- stderr ---\n{proc.stderr[-6000:]}"
    )
    return proc


# ---------------------------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("example-plugin")


@pytest.fixture(scope="module")
def site(workdir: Path) -> Path:
    """``pip install --no-deps --no-build-isolation --target <site>`` of a copy of the example."""
    src = workdir / "src"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__"))
    target = workdir / "site"
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-input"]
    cmd += ["--disable-pip-version-check", "--target", str(target), str(src)]
    _run(cmd, dict(os.environ, PIP_NO_INDEX="1"), cwd=workdir, timeout=300)
    return target


@pytest.fixture(scope="module")
def env(site: Path, workdir: Path) -> dict[str, str]:
    """The subprocess environment: the install on ``PYTHONPATH``, offline, no allow-list."""
    out = dict(os.environ)
    out.pop("VIDEOLMM_PLUGINS", None)
    out.pop("VIDEOLMM_EXAMPLE_TRACE", None)
    out["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    out.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        VIDEOLMM_CACHE=str(workdir / "cache"),
    )
    return out


@pytest.fixture(scope="module")
def checkpoint(env: dict[str, str], workdir: Path) -> Path:
    """The example family's tiny checkpoint, built through ``videolmm tiny`` (the family's ``build_tiny``)."""
    out = workdir / "tiny-onevision"
    proc = _run([*_command("videolmm", "videolmm.cli"), "tiny", "--family", FAMILY, "--out", out], env, cwd=workdir)
    assert Path(proc.stdout.strip().splitlines()[-1]) == out
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "llava_onevision"
    return out


@pytest.fixture(scope="module")
def video(workdir: Path) -> Path:
    from videolmm.toy.synthetic import write_moving_square_video

    return write_moving_square_video(
        workdir / "red_right.mp4", colour="red", direction="right", seed=1, num_frames=16, fps=8, size=64
    )


# ---------------------------------------------------------------------------------------------
# the installed package
# ---------------------------------------------------------------------------------------------


def test_installed_distribution_declares_the_entry_point(site: Path, env: dict[str, str], workdir: Path) -> None:
    dists = [d for d in distributions(path=[str(site)]) if d.metadata["Name"] == "videolmm-example-plugin"]
    assert len(dists) == 1
    eps = [(ep.name, ep.value) for ep in dists[0].entry_points if ep.group == "videolmm"]
    assert eps == [(PLUGIN, "videolmm_example.plugin")]

    # discovery imports the plugin module: that must not import torch, transformers or lmms-eval
    code = (
        "import sys, videolmm_example.plugin; "
        "print(sorted(m for m in ('torch', 'transformers', 'lmms_eval') if m in sys.modules))"
    )
    proc = _run([sys.executable, "-c", code], env, cwd=workdir)
    assert proc.stdout.strip() == "[]"


def test_plugins_command_lists_the_example_components(env: dict[str, str], workdir: Path) -> None:
    proc = _run([*_command("videolmm", "videolmm.cli"), "plugins"], env, cwd=workdir)
    listing = json.loads(proc.stdout)
    assert PLUGIN in listing["plugins"]
    assert listing["samplers"][SAMPLER] == PLUGIN
    assert listing["families"][FAMILY] == PLUGIN
    assert listing["templates"][TEMPLATE] == PLUGIN
    assert listing["families"]["llava_next_video"] == "videolmm.builtin"  # built-ins untouched
    assert listing["samplers"]["uniform"] == "videolmm.builtin"

    # the allow-list holds for a real installation: empty means no third-party plugin
    proc = _run([*_command("videolmm", "videolmm.cli"), "plugins"], dict(env, VIDEOLMM_PLUGINS=""), cwd=workdir)
    listing = json.loads(proc.stdout)
    assert listing["plugins"] == ["videolmm.builtin"]
    assert FAMILY not in listing["families"] and SAMPLER not in listing["samplers"]


# ---------------------------------------------------------------------------------------------
# videolmm CLI with the example's family and sampler
# ---------------------------------------------------------------------------------------------


def test_inspect_detects_the_family_and_samples_segment_middles(
    env: dict[str, str], workdir: Path, checkpoint: Path, video: Path
) -> None:
    cmd = [*_command("videolmm", "videolmm.cli"), "inspect", checkpoint, "--video", video]
    cmd += ["--sampler", SAMPLER, "--frames", str(FRAMES)]
    info = json.loads(_run(cmd, env, cwd=workdir).stdout)

    assert info["family"] == FAMILY  # auto-detected through the plugin's resolve_family
    assert info["model_class"] == "transformers.LlavaOnevisionForConditionalGeneration"
    assert info["template"] == TEMPLATE
    assert info["sampler"] == SAMPLER
    assert info["video"]["num_source_frames"] == 16
    expected = video_chatgpt_indices(16, FRAMES)
    assert expected == [2, 6, 9, 13]  # middles of the 4 segments of 0..15; uniform would be [0, 5, 10, 15]
    assert info["video"]["sampled_indices"] == expected
    assert info["video"]["timestamps"] == [round(i / 8, 3) for i in expected]
    assert info["visual_tokens_per_frame"] == TOKENS_PER_FRAME
    assert info["visual_tokens_total"] == TOKENS_PER_FRAME * FRAMES + 1  # one newline token per video
    assert info["prompt"] == "<|im_start|>user\n<video>\nDescribe the video.<|im_end|>\n<|im_start|>assistant\n"


def test_generate_goes_through_the_tracing_wrapper(
    env: dict[str, str], workdir: Path, checkpoint: Path, video: Path
) -> None:
    trace = workdir / "generate-trace.jsonl"
    trace.unlink(missing_ok=True)
    cmd = [*_command("videolmm", "videolmm.cli"), "generate", checkpoint, "--video", video, "--json"]
    cmd += ["--sampler", SAMPLER, "--frames", str(FRAMES), "--question", "What colour is the square?"]
    cmd += ["--max-new-tokens", "3"]
    result = json.loads(_run(cmd, dict(env, VIDEOLMM_EXAMPLE_TRACE=str(trace)), cwd=workdir).stdout)

    assert result["error"] is None
    assert result["frames"] == [[2, 6, 9, 13]]
    assert result["usage"]["visual_tokens"] == TOKENS_PER_FRAME * FRAMES + 1
    lines = [json.loads(line) for line in trace.read_text().splitlines()]
    assert len(lines) == 1
    assert {k: lines[0][k] for k in ("family", "sampler", "batch_size", "ok", "frames")} == {
        "family": FAMILY,
        "sampler": SAMPLER,
        "batch_size": 1,
        "ok": True,
        "frames": [[[2, 6, 9, 13]]],
    }
    assert lines[0]["seconds"] > 0


# ---------------------------------------------------------------------------------------------
# the real lmms-eval CLI
# ---------------------------------------------------------------------------------------------


def _responses(sample: dict[str, Any]) -> list[str]:
    """Flatten a logged sample's responses (``resps`` and/or ``filtered_resps``) to strings."""
    out: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)

    for key in ("resps", "filtered_resps"):
        walk(sample.get(key))
    return out


@pytest.mark.timeout(600)
def test_lmms_eval_cli_runs_the_plugin_family_and_sampler(
    env: dict[str, str], workdir: Path, checkpoint: Path
) -> None:
    if not (DEMO_TASK / "videolmm_demo.yaml").is_file():
        pytest.fail(f"the task videolmm_demo is missing ({DEMO_TASK}); this test needs it")
    limit = 4
    out_dir = workdir / "lmms-eval-out"
    trace = workdir / "lmms-eval-trace.jsonl"
    trace.unlink(missing_ok=True)
    model_args = f"pretrained={checkpoint},sampler={SAMPLER},max_frames_num={FRAMES},device=cpu"
    cmd = [*_command("lmms-eval", "lmms_eval"), "--model", "videolmm", "--model_args", model_args]
    cmd += ["--tasks", "videolmm_demo", "--output_path", out_dir, "--log_samples", "--limit", str(limit)]
    proc = _run(cmd, dict(env, VIDEOLMM_EXAMPLE_TRACE=str(trace)), cwd=workdir, timeout=580)
    log = f"\n--- lmms-eval stdout ---\n{proc.stdout[-3000:]}\n--- stderr ---\n{proc.stderr[-5000:]}"

    # lmms-eval exits 0 even when a run fails: judge by the files it wrote
    results_files = sorted(out_dir.rglob("*_results.json"))
    samples_files = sorted(out_dir.rglob("*_samples_videolmm_demo.jsonl"))
    assert len(results_files) == 1 and len(samples_files) == 1, f"missing output files under {out_dir}{log}"
    results = json.loads(results_files[0].read_text())
    assert "exact_match,none" in results["results"]["videolmm_demo"], log
    assert results["n-samples"]["videolmm_demo"]["effective"] == limit

    samples = [json.loads(line) for line in samples_files[0].read_text().splitlines() if line.strip()]
    assert sorted(s["doc_id"] for s in samples) == list(range(limit))
    for sample in samples:
        responses = _responses(sample)
        assert responses, sample
        assert not any(r.startswith(ERROR_PREFIX) for r in responses), f"doc {sample['doc_id']}: {responses}{log}"

    # the plugin's tracing wrapper saw every batch, run by its family with its sampler
    docs = [json.loads(line) for line in (DEMO_TASK / "demo.jsonl").read_text().splitlines()][:limit]
    traces = [json.loads(line) for line in trace.read_text().splitlines()]
    assert sum(t["batch_size"] for t in traces) == limit, traces
    assert all(t["family"] == FAMILY and t["sampler"] == SAMPLER and t["ok"] for t in traces), traces
    seen = sorted(tuple(frames[0]) for t in traces for frames in t["frames"])
    want = sorted(tuple(video_chatgpt_indices(int(d.get("num_frames", 16)), FRAMES)) for d in docs)
    assert seen == want
