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


def test_version_is_the_one_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    import videolmm

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"videolmm {videolmm.__version__}"
    assert version("videolmm") == videolmm.__version__  # the installed metadata reads the same source


def _walk(parser: object, path: str = "videolmm") -> list[tuple[str, object]]:
    import argparse

    found = [(path, parser)]
    for action in parser._actions:  # type: ignore[attr-defined]
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found += _walk(child, f"{path} {name}")
    return found


def test_every_flag_of_every_command_is_described_and_lists_its_choices() -> None:
    import argparse

    from videolmm.cli import build_parser

    parsers = _walk(build_parser())
    assert {p for p, _ in parsers} >= {f"videolmm {c}" for c in ("tiny", "train", "inspect", "generate", "config")}
    undocumented = []
    for path, parser in parsers:
        text = parser.format_help()  # type: ignore[attr-defined]
        if path != "videolmm":
            assert "examples:" in text, f"{path} --help shows no example"
        for action in parser._actions:  # type: ignore[attr-defined]
            if isinstance(action, argparse._SubParsersAction) or action.help == argparse.SUPPRESS:
                continue
            if not action.help:
                undocumented.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
            for choice in action.choices or ():
                if not isinstance(action, argparse._SubParsersAction):
                    assert str(choice) in text, f"{path}: choice {choice!r} of {action.dest} not listed in --help"
    assert not undocumented, f"flags without help: {undocumented}"


def test_family_flags_list_the_registered_families(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["tiny", "--family", "nope", "--out", "x"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'nope'" in err and "llava_next_video" in err and "video_llava" in err


@pytest.mark.parametrize("name", ["tiny", "video"])
def test_config_writes_a_shipped_serve_config_that_validates(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str
) -> None:
    from videolmm.serve.config import ServeArgs, load_serve_config

    code, out, _ = run(capsys, "config", name)
    assert code == 0
    repo_copy = Path(__file__).resolve().parents[1] / "serve_configs" / f"{name}.yaml"
    assert out == repo_copy.read_text()  # the repo's serve_configs/ and the wheel's copy are one file
    target = tmp_path / "my.yaml"
    code, printed, _ = run(capsys, "config", name, "--out", str(target))
    assert code == 0 and printed.strip() == str(target) and target.read_text() == out
    assert isinstance(ServeArgs.model_validate(load_serve_config(target)), ServeArgs)


def test_inspect_contact_sheet_draws_each_sampled_frame(
    capsys: pytest.CaptureFixture[str], tiny_llava_next_video: Path, clips: dict[str, Path], tmp_path: Path
) -> None:
    from PIL import Image

    from videolmm.load import load_engine
    from videolmm.media.contact_sheet import TILE_WIDTH
    from videolmm.types import Request

    sheet_path = tmp_path / "sheets" / "frames.png"
    code, out, _ = run(capsys, "inspect", str(tiny_llava_next_video), "--video", str(clips["red_right"]),
                       "--frames", "6", "--contact-sheet", str(sheet_path), "--sheet-columns", "4")  # fmt: skip
    info = json.loads(out)
    assert code == 0 and info["contact_sheet"] == str(sheet_path)
    sheet = np.asarray(Image.open(sheet_path).convert("RGB"))
    engine = load_engine(str(tiny_llava_next_video), num_frames=6, load_model=False)
    frames = engine.decode(Request(question="q", videos=(str(clips["red_right"]),))).videos[0]
    assert list(frames.indices) == info["video"]["sampled_indices"]
    _, h, w, _ = frames.array.shape
    tile_h = round(h * TILE_WIDTH / w)
    assert sheet.shape[1] == 4 * (TILE_WIDTH + 4) + 4  # 4 columns, 2 rows for 6 frames
    assert sheet.shape[0] == 2 * (tile_h + 16 + 4) + 4
    for i in range(6):  # each tile is its frame, scaled: the mean colour matches
        row, col = divmod(i, 4)
        x, y = 4 + col * (TILE_WIDTH + 4), 4 + row * (tile_h + 16 + 4)
        tile = sheet[y : y + tile_h, x : x + TILE_WIDTH].astype(float)
        assert np.abs(tile.mean(axis=(0, 1)) - frames.array[i].astype(float).mean(axis=(0, 1))).max() < 3
        label = sheet[y + tile_h : y + tile_h + 16, x : x + TILE_WIDTH]
        assert (label > 200).any(), f"tile {i} has no label"
    assert not (sheet[4 + tile_h + 20 :, 4 + 2 * (TILE_WIDTH + 4) :] > 40).any()  # row 2 holds only 2 tiles


def test_inspect_contact_sheet_needs_a_video(capsys: pytest.CaptureFixture[str], tiny_llava_next_video: Path) -> None:
    code, _, err = run(capsys, "inspect", str(tiny_llava_next_video), "--contact-sheet", "x.png")
    assert code == 2 and "--contact-sheet" in err and "--video" in err


def test_convert_shows_a_progress_bar_over_the_tensors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from videolmm.toy.tiny_originals import build_original_llava_next_video

    orig = build_original_llava_next_video(tmp_path / "original")
    out = tmp_path / "converted"
    code, printed, err = run(capsys, "convert", "--source", "llava_next_video", "--input", str(orig.checkpoint),
                             "--output", str(out), "--no-hash")  # fmt: skip
    assert code == 0 and json.loads(printed)["output"] == str(out)
    mapped = json.loads(printed)["mapped"]
    bar = [line for line in err.replace("\r", "\n").splitlines() if line.startswith("convert:")]
    assert bar and f"{mapped}/{mapped}" in bar[-1] and "tensor" in bar[-1], err[-2000:]
    assert "[1/" in err  # the per-file lines are written above the bar
    code, _, err = run(capsys, "convert", "--source", "llava_next_video", "--input", str(orig.checkpoint),
                       "--output", str(tmp_path / "again"), "--no-hash", "--no-progress")  # fmt: skip
    assert code == 0 and "convert:" not in err and "[1/" in err


def test_train_shows_a_progress_bar_over_the_steps(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A scaled-down recipe (as tests/test_train_reproducible.py) through the command's own code path."""
    import io
    from dataclasses import replace

    import videolmm.toy.train.recipe as recipe_module
    from videolmm.toy.train.recipe import recipe_for

    small = replace(recipe_for("video_llava"), num_clips=6, steps=3, batch_size=4, warmup=1, heldout_clips=2)
    monkeypatch.setattr(recipe_module, "recipe_for", lambda family: small)
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    assert main(["train", "--family", "video_llava", "--out", str(tmp_path / "t")]) == 0
    bar = [line for line in stderr.getvalue().replace("\r", "\n").splitlines() if line.startswith("train video_llava")]
    assert bar and "3/3" in bar[-1] and "loss=" in bar[-1], stderr.getvalue()[-2000:]


def test_tiny_builds_the_34b_layout_and_other_families_refuse_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = run(capsys, "tiny", "--family", "llava_next_video", "--geometry", "published-34b",
                       "--out", str(tmp_path / "c34"))  # fmt: skip
    config = json.loads((Path(out.strip()) / "config.json").read_text())
    assert code == 0
    assert (config["video_token_index"], config["image_token_index"]) == (64000, 64001)
    assert config["text_config"]["max_position_embeddings"] == 4096
    assert json.loads((Path(out.strip()) / "videolmm_tiny.json").read_text())["geometry"] == "published-34b"
    with pytest.raises(ValueError, match="unknown geometry 'published-34b'"):
        main(["tiny", "--family", "video_llava", "--geometry", "published-34b", "--out", str(tmp_path / "vl")])
