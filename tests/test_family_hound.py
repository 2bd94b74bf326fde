"""The llava_hound family: Video-LLaVA with the video CLS token dropped, LLaVA-Hound's frames and
prompt, on tiny checkpoints; and an lmms-eval run through the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from videolmm.load import load_engine
from videolmm.media.sampling import ffmpeg_fps_source_indices, uniform_indices
from videolmm.models.engine import Engine
from videolmm.models.families.base import LoadOptions
from videolmm.types import GenerationSettings, Request

VENV_BIN = Path(sys.executable).parent
CPU = LoadOptions(device="cpu")
GREEDY = GenerationSettings(max_new_tokens=4)
QUESTION = "Which way does the square move?"
V1_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)


@pytest.fixture(scope="module")
def hound_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from videolmm.toy.tiny_families import build_tiny_llava_hound

    return build_tiny_llava_hound(tmp_path_factory.mktemp("hound") / "tiny", seed=0)


@pytest.fixture(scope="module")
def hound(hound_tiny: Path) -> Engine:
    return load_engine(str(hound_tiny), load=CPU)


def ask(video: Path | str, **kw) -> Request:
    return Request(question=QUESTION, videos=(str(video),), generation=kw.pop("generation", GREEDY), **kw)


# ---------------------------------------------------------------- the model


@pytest.mark.parametrize("drop", [True, False])
def test_video_features_are_video_llavas_without_cls(hound: Engine, drop: bool) -> None:
    from transformers.models.video_llava.modeling_video_llava import VideoLlavaModel

    ours = hound.model.model
    stock = VideoLlavaModel(hound.config).eval()
    stock.load_state_dict(ours.state_dict())
    pixels = torch.randn(2, 3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    ours.config.video_drop_cls = drop
    try:
        with torch.no_grad():
            mine = ours.get_video_features(pixels, return_dict=True).pooler_output
            theirs = stock.get_video_features(pixels, return_dict=True).pooler_output
            as_tuple = ours.get_video_features(pixels, return_dict=False)
    finally:
        ours.config.video_drop_cls = True
    assert theirs.shape == (6, 17, 64)  # CLIP keeps the CLS token: 16 patches + 1
    torch.testing.assert_close(mine, theirs[:, 1:] if drop else theirs, rtol=0, atol=0)
    assert isinstance(as_tuple, tuple)


def test_image_features_are_video_llavas(hound: Engine) -> None:
    from transformers.models.video_llava.modeling_video_llava import VideoLlavaModel

    stock = VideoLlavaModel(hound.config).eval()
    stock.load_state_dict(hound.model.model.state_dict())
    pixels = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        mine = hound.model.model.get_image_features(pixels, return_dict=True).pooler_output
        theirs = stock.get_image_features(pixels, return_dict=True).pooler_output
    torch.testing.assert_close(mine, theirs, rtol=0, atol=0)
    assert mine.shape[1] == 16  # images drop CLS in both ("default" feature selection)


# ---------------------------------------------------------------- defaults, prompt, frames


def test_seed_defaults(hound: Engine) -> None:
    s = hound.settings
    assert (s.family, s.template) == ("llava_hound", "v1")
    assert (s.media.decoder, s.media.sampler) == ("keyframe", "hound")
    assert (s.media.sampling.num_frames, s.media.sampling.fps) == (8, 2.0)
    assert hound.template.system == V1_SYSTEM


def test_prompt_is_byte_exact(hound: Engine, clips: dict[str, Path]) -> None:
    result = hound.generate([ask(clips["red_right"])])[0]
    assert result.ok, result.error
    assert result.prompt == f"{V1_SYSTEM} USER: <video>\n{QUESTION} ASSISTANT:"
    assert result.usage.visual_tokens == 8 * 16


def test_frames_follow_ffmpeg_fps2_then_linspace8(hound: Engine, clips: dict[str, Path]) -> None:
    info = hound.describe(ask(clips["green_left_long"]))  # 40 frames at 8 fps: ffmpeg fps=2 keeps 10
    extracted = ffmpeg_fps_source_indices(40, 8, 2)
    assert extracted == [1, 5, 9, 13, 17, 21, 25, 29, 33, 37]
    assert info["video"]["sampled_indices"] == [extracted[k] for k in uniform_indices(10, 8)]
    assert info["video"]["sampled_indices"] == [1, 5, 9, 13, 21, 25, 29, 37]


def test_directory_of_extracted_frames(hound_tiny: Path, tmp_path: Path) -> None:
    """The seed's pre-extracted frames (``c01_%04d.jpeg``): linspace over the sorted files."""
    from PIL import Image

    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(13):
        Image.fromarray(np.full((48, 64, 3), 10 * i, dtype=np.uint8)).save(folder / f"c01_{i + 1:04d}.jpeg")
    engine = load_engine(str(hound_tiny), load=CPU)  # the family's defaults
    assert (engine.settings.media.sampler, engine.settings.media.frames_sampler) == ("hound", "uniform")
    result = engine.generate([ask(folder)])[0]
    assert result.ok, result.error
    assert result.frames == (tuple(int(i) for i in np.linspace(0, 12, 8, dtype=int)),)
    assert result.usage.visual_tokens == 8 * 16
    described = engine.describe(ask(folder))
    assert (described["video"]["source"], described["frames_sampler"]) == (str(folder), "uniform")
    explicit = load_engine(str(hound_tiny), sampler="uniform", load=CPU).generate([ask(folder)])[0]
    assert (explicit.text, explicit.frames) == (result.text, result.frames)
    # an explicit hound sampler applies to every source; on extracted frames it would apply fps=2 twice
    refused = load_engine(str(hound_tiny), sampler="hound", load=CPU).generate([ask(folder)])[0]
    assert not refused.ok and "sampler='uniform'" in refused.error and str(folder) in refused.error


def test_batched_generation_equals_one_by_one(hound: Engine, clips: dict[str, Path]) -> None:
    reqs = [ask(clips["red_right"]), ask(clips["blue_up"])]
    batched = hound.generate(reqs, batch_size=2)
    assert all(r.ok for r in batched)
    assert [r.text for r in batched] == [hound.generate([r])[0].text for r in reqs]


def test_published_geometry_gives_256(tmp_path: Path, clips: dict[str, Path]) -> None:
    from videolmm.plugin.manager import get_registry

    ckpt = get_registry().family("llava_hound").build_tiny(tmp_path / "ckpt", geometry="published")
    engine = load_engine(str(ckpt), load=CPU, load_model=False)
    info = engine.describe(ask(clips["red_right"]))
    assert (info["visual_tokens_per_frame"], info["video_cls_token"]) == (256, "dropped")
    assert info["visual_tokens_total"] == 256 * 8


# ---------------------------------------------------------------- lmms-eval


@pytest.mark.timeout(900)
def test_lmms_eval_cli_runs_llava_hound(hound_tiny: Path, cache_root: Path, tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    cmd = [
        str(VENV_BIN / "lmms-eval"), "--model", "llava_hound",
        "--model_args", f"pretrained={hound_tiny},device=cpu",
        "--tasks", "videolmm_demo", "--batch_size", "2", "--limit", "4",
        "--output_path", str(tmp_path), "--log_samples",
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=800)
    results_files = sorted(tmp_path.rglob("*_results.json"))
    assert results_files, f"no results file:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    results = json.loads(results_files[-1].read_text())
    assert "exact_match,none" in results["results"]["videolmm_demo"]
    samples = [json.loads(line) for f in tmp_path.rglob("*_samples_*.jsonl") for line in f.read_text().splitlines()]
    assert len(samples) == 4
    for sample in samples:
        resp = sample["filtered_resps"]
        response = resp[0] if isinstance(resp, list) else resp
        assert not str(response).startswith("[videolmm error]"), response
        assert sample["token_counts"][0]["input_tokens"] > 8 * 16  # 8 frames × 16 patches, no CLS
