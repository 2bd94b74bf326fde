"""The ``videolmm`` command line: tiny, inspect, generate, plugins (in process, plus the installed script)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from videolmm.cli import main

VENV_BIN = Path(sys.executable).parent


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_installed_script_lists_every_command() -> None:
    proc = subprocess.run([str(VENV_BIN / "videolmm"), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    for command in ("tiny", "train", "inspect", "generate", "plugins"):
        assert command in proc.stdout


def test_tiny_then_inspect_reports_the_effective_settings(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, clips: dict[str, Path]
) -> None:
    code, out, _ = run(capsys, "tiny", "--family", "llava_next_video", "--out", str(tmp_path / "ckpt"))
    assert code == 0 and Path(out.strip()).is_dir()
    video = clips["green_left_long"]  # 40 frames at 8 fps
    code, out, _ = run(capsys, "inspect", str(tmp_path / "ckpt"), "--video", str(video), "--frames", "8",
                       "--question", "Which way?")  # fmt: skip
    info = json.loads(out)
    assert code == 0
    assert (info["family"], info["decoder"], info["sampler"], info["template"]) == (
        "llava_next_video", "keyframe", "uniform", "vicuna_v1"
    )  # fmt: skip
    assert info["video"]["sampled_indices"] == np.linspace(0, 39, 8, dtype=int).tolist()
    assert info["video"]["num_source_frames"] == 40 and info["video"]["duration"] == pytest.approx(5.0)
    assert info["pooling"] == {"mode": "average", "stride": 2, "where": "before the projector", "grid_after_pool": 2}
    assert info["visual_tokens_per_frame"] == 4 and info["visual_tokens_total"] == 32
    assert info["scheduler"] == "continuous"
    assert info["prompt"].startswith("A chat between a curious user")
    assert info["prompt"].endswith("USER: <video>\nWhich way? ASSISTANT:")  # expanded to 32 tokens by the processor


def test_inspect_follows_overrides(capsys: pytest.CaptureFixture[str], tiny_llava_next_video: Path,
                                   clips: dict[str, Path]) -> None:  # fmt: skip
    code, out, _ = run(capsys, "inspect", str(tiny_llava_next_video), "--video", str(clips["red_right"]),
                       "--frames", "4", "--mm_spatial_pool_stride", "1", "--conv-mode", "mistral_instruct",
                       "--decoder", "pyav", "--reverse-frames")  # fmt: skip
    info = json.loads(out)
    assert code == 0
    assert info["visual_tokens_per_frame"] == 16 and info["visual_tokens_total"] == 64
    assert info["prompt"].startswith("<s>") is False and info["prompt"].startswith("[INST] ")
    assert info["decoder"] == "pyav"
    assert info["video"]["sampled_indices"] == np.linspace(0, 15, 4, dtype=int).tolist()[::-1]


def test_generate_answers_and_reports_errors(capsys: pytest.CaptureFixture[str], tiny_video_llava: Path,
                                             clips: dict[str, Path], broken_video: Path) -> None:  # fmt: skip
    code, out, _ = run(capsys, "generate", str(tiny_video_llava), "--video", str(clips["blue_up"]),
                       "--question", "Colour?", "--max-new-tokens", "3", "--json", "--device", "cpu")  # fmt: skip
    result = json.loads(out)
    assert code == 0 and result["error"] is None and isinstance(result["text"], str)
    assert result["usage"]["visual_tokens"] == 17 * 8
    code, _, err = run(capsys, "generate", str(tiny_video_llava), "--video", str(broken_video), "--question", "?",
                       "--device", "cpu")  # fmt: skip
    assert code == 1 and str(broken_video) in err


def test_unknown_names_exit_2_with_the_choices(
    capsys: pytest.CaptureFixture[str], tiny_llava_next_video: Path
) -> None:
    code, _, err = run(capsys, "inspect", str(tiny_llava_next_video), "--template", "nope")
    assert code == 2 and "unknown template 'nope'" in err and "vicuna_v1" in err
    code, _, err = run(capsys, "tiny", "--family", "nope", "--out", "x")
    assert code == 2 and "llava_next_video" in err


def test_plugins_lists_builtins(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "plugins")
    data = json.loads(out)
    assert code == 0
    assert data["families"]["llava_next_video"] == "videolmm.builtin"
    assert {"uniform", "fps", "hound"} <= set(data["samplers"])
    assert {"decord", "pyav", "frames"} <= set(data["decoders"])


def test_tiny_trained_materialises_the_shipped_checkpoint(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from videolmm.toy.trained import available

    if "llava_next_video" not in available():
        pytest.fail("the trained llava_next_video checkpoint is not shipped")
    code, out, _ = run(capsys, "tiny", "--family", "llava_next_video", "--trained", "--out", str(tmp_path / "t"))
    assert code == 0
    assert (Path(out.strip()) / "videolmm_trained.json").is_file()
    trained = json.loads((Path(out.strip()) / "videolmm_trained.json").read_text())
    # the checkpoint samples the frame count it was trained with (its videolmm.json defaults)
    assert json.loads((Path(out.strip()) / "videolmm.json").read_text())["num_frames"] == trained["recipe"]["frames"]
