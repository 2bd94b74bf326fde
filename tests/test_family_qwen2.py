"""The llava_video_qwen2 family: LLaVA-Video's video path, token math, prompt and sampler, on tiny
checkpoints; the published tokens per frame of every family through the ``videolmm`` CLI; and an
lmms-eval run through the real CLI."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from videolmm.errors import ConfigError
from videolmm.load import load_engine
from videolmm.models.engine import Engine
from videolmm.models.families.base import LoadOptions
from videolmm.models.families.llava_video_qwen2.configuration import frame_tokens, pooled_side, video_token_count
from videolmm.models.families.llava_video_qwen2.family import LLAVA_VIDEO_QWEN2, time_instruction
from videolmm.types import Frames, GenerationSettings, Request

VENV_BIN = Path(sys.executable).parent
CPU = LoadOptions(device="cpu")
GREEDY = GenerationSettings(max_new_tokens=4)
QUESTION = "What colour is the square?"


@pytest.fixture(scope="module")
def qwen2_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from videolmm.toy.tiny_families import build_tiny_llava_video_qwen2

    return build_tiny_llava_video_qwen2(tmp_path_factory.mktemp("qwen2") / "tiny", seed=0)


@pytest.fixture(scope="module")
def qwen2_engine(qwen2_tiny: Path) -> Engine:
    return load_engine(str(qwen2_tiny), load=CPU)


def ask(video: Path | str, **kw) -> Request:
    return Request(question=QUESTION, videos=(str(video),), generation=kw.pop("generation", GREEDY), **kw)


# ---------------------------------------------------------------- token math


@pytest.mark.parametrize(
    ("mode", "stride", "side"),
    [("bilinear", 2, 14), ("average", 2, 13), ("max", 2, 13), ("bilinear", 1, 27), ("bilinear", 3, 9)],
)
def test_pooled_side_follows_get_2dpool(mode: str, stride: int, side: int) -> None:
    assert pooled_side(27, stride, mode) == side
    x = torch.zeros(1, 1, 27, 27)
    if stride > 1 and mode == "bilinear":
        out = torch.nn.functional.interpolate(x, size=[math.ceil(27 / stride)] * 2, mode="bilinear")
    elif stride > 1:
        out = (torch.nn.functional.avg_pool2d if mode == "average" else torch.nn.functional.max_pool2d)(x, stride)
    else:
        out = x
    assert out.shape[-1] == side  # the formula is torch's own output size


@pytest.mark.parametrize(
    ("position", "per_frame", "per_video"),
    [("grid", 210, 0), ("frame", 197, 0), ("one_token", 196, 1), ("no_token", 196, 0)],
)
def test_video_token_count_per_newline_position(position: str, per_frame: int, per_video: int) -> None:
    assert frame_tokens(14, position) == per_frame
    assert video_token_count(64, 27, 2, "bilinear", position) == 64 * per_frame + per_video


def test_average_pooling_gives_182_per_frame() -> None:
    assert video_token_count(1, 27, 2, "average", "grid") == 13 * 13 + 13 == 182


@pytest.mark.parametrize(("mode", "stride"), [("conv", 2), ("bilinear", 0), ("average", 28)])
def test_bad_pooling_is_refused(mode: str, stride: int) -> None:
    with pytest.raises(ConfigError, match="spatial_pool"):
        pooled_side(27, stride, mode)


# ---------------------------------------------------------------- the model's video path


def _seed_video_features(model, pixels: torch.Tensor, grid: int, mode: str, stride: int, position: str):
    """LLaVA-NeXT's operations, as ``llava_arch.py`` writes them: tower → mm_projector →
    get_2dPool → add_token_per_grid / add_token_per_frame / one_token / no_token."""
    inner = model.model
    feats = inner.vision_tower(pixels.flatten(0, 1), output_hidden_states=True).hidden_states[-1]
    feats = inner.multi_modal_projector(feats)
    frames, _, dim = feats.shape
    if stride > 1:
        x = feats.view(frames, grid, grid, -1).permute(0, 3, 1, 2).contiguous()
        if mode == "average":
            x = torch.nn.functional.avg_pool2d(x, stride)
        elif mode == "max":
            x = torch.nn.functional.max_pool2d(x, stride)
        else:
            x = torch.nn.functional.interpolate(x, size=[math.ceil(grid / stride)] * 2, mode="bilinear")
        feats = x.permute(0, 2, 3, 1).view(frames, -1, dim)
    newline = inner.image_newline
    if position == "grid":
        side = int(math.sqrt(feats.shape[1]))
        f = feats.view(frames, 1, side, side, -1).permute(4, 0, 2, 1, 3).contiguous().flatten(1, 2).flatten(2, 3)
        f = torch.cat((f, newline[:, None, None].expand(*f.shape[:-1], 1)), dim=-1)
        return f.flatten(1, 2).transpose(0, 1)
    if position == "frame":
        f = feats.permute(2, 0, 1).contiguous()
        f = torch.cat((f, newline[:, None, None].expand(*f.shape[:-1], 1)), dim=-1)
        return f.permute(1, 2, 0).contiguous().flatten(0, 1)
    if position == "one_token":
        return torch.cat((feats.flatten(0, 1), newline[None]), dim=0)
    return feats.flatten(0, 1)


@pytest.fixture(scope="module")
def odd_grid_model():
    """An in-memory model with a 5×5 patch grid, where bilinear (3) and average (2) differ."""
    from videolmm.models.families.llava_video_qwen2.configuration import LlavaVideoQwen2Config
    from videolmm.models.families.llava_video_qwen2.modeling import LlavaVideoQwen2ForConditionalGeneration

    config = LlavaVideoQwen2Config(
        vision_config={"model_type": "siglip_vision_model", "hidden_size": 32, "intermediate_size": 64,
                       "num_hidden_layers": 2, "num_attention_heads": 4, "image_size": 40, "patch_size": 8,
                       "vision_use_head": False},
        text_config={"model_type": "qwen2", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1,
                     "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 32},
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
        image_token_index=30,
        video_token_index=31,
    )  # fmt: skip
    torch.manual_seed(0)
    return LlavaVideoQwen2ForConditionalGeneration(config).eval()


@pytest.mark.parametrize("mode", ["bilinear", "average", "max"])
@pytest.mark.parametrize("position", ["grid", "frame", "one_token", "no_token"])
def test_video_features_match_the_seed_operations(odd_grid_model, mode: str, position: str) -> None:
    cfg = odd_grid_model.config
    cfg.spatial_pool_mode, cfg.spatial_pool_stride, cfg.mm_newline_position = mode, 2, position
    pixels = torch.randn(2, 3, 3, 40, 40, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = odd_grid_model.model.get_video_features(pixels, return_dict=True).pooler_output
        for b in range(2):
            one = odd_grid_model.model.get_video_features(pixels[b : b + 1], return_dict=True).pooler_output[0]
            want = _seed_video_features(odd_grid_model, pixels[b : b + 1], 5, mode, 2, position)
            torch.testing.assert_close(one, want, rtol=0, atol=0)  # same operations, same numbers
            torch.testing.assert_close(ours[b], want)  # batching videos changes only float rounding
    side = 3 if mode == "bilinear" else 2
    assert (
        ours.shape[1]
        == video_token_count(3, 5, 2, mode, position)
        == 3 * frame_tokens(side, position) + (position == "one_token")
    )


def test_one_token_bilinear_equals_transformers_onevision(odd_grid_model) -> None:
    """With OneVision's settings the subclass reproduces transformers' own OneVision video path."""
    from transformers.models.llava_onevision.modeling_llava_onevision import LlavaOnevisionModel

    cfg = odd_grid_model.config
    cfg.spatial_pool_mode, cfg.spatial_pool_stride, cfg.mm_newline_position = "bilinear", 2, "one_token"
    stock = LlavaOnevisionModel(cfg).eval()
    stock.load_state_dict(odd_grid_model.model.state_dict())
    pixels = torch.randn(1, 4, 3, 40, 40, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ours = odd_grid_model.model.get_video_features(pixels, return_dict=True).pooler_output
        theirs = stock.get_video_features(pixels, return_dict=True).pooler_output
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_stride_one_skips_the_pool(odd_grid_model) -> None:
    cfg = odd_grid_model.config
    cfg.spatial_pool_mode, cfg.spatial_pool_stride, cfg.mm_newline_position = "bilinear", 1, "no_token"
    pixels = torch.randn(1, 2, 3, 40, 40)
    with torch.no_grad():
        out = odd_grid_model.model.get_video_features(pixels, return_dict=True).pooler_output
    assert out.shape[1] == 2 * 25


# ---------------------------------------------------------------- defaults, prompt, sampler


def test_seed_defaults(qwen2_engine: Engine) -> None:
    s = qwen2_engine.settings
    assert (s.family, s.template) == ("llava_video_qwen2", "qwen_1_5")
    assert (s.media.decoder, s.media.sampler) == ("keyframe", "fps")
    assert (s.media.sampling.num_frames, s.media.sampling.fps, s.media.sampling.force_sample) == (64, 1.0, True)
    assert s.family_options == {
        "spatial_pool_mode": "bilinear",
        "spatial_pool_stride": 2,
        "mm_newline_position": "grid",
        "add_time_instruction": True,
        "preset": "training",
    }
    assert qwen2_engine.template.system == "You are a helpful assistant."


def test_lmms_eval_readme_preset_is_the_documented_eval_command(qwen2_tiny: Path, clips: dict[str, Path]) -> None:
    """preset=lmms_eval_readme: average pooling, grid newlines, no time instruction, 64 linspace
    frames (LLaVA-NeXT docs/LLaVA_Video_1003.md with lmms-eval llava_vid of that date); the
    default stays the training-faithful one; explicit values still win; inspect shows both."""
    from videolmm.models.spec import EngineSpec

    spec = EngineSpec.from_options({"pretrained": str(qwen2_tiny), "preset": "lmms_eval_readme"})
    engine = load_engine(spec, load_model=False)
    info = engine.describe(ask(clips["red_right"]))
    assert info["family_options"] == {
        "spatial_pool_mode": "average",
        "spatial_pool_stride": 2,
        "mm_newline_position": "grid",
        "add_time_instruction": False,
        "preset": "lmms_eval_readme",
    }
    assert info["prompt"] == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<video>\n"
        "What colour is the square?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert info["video"]["sampled_indices"] == [int(i) for i in np.linspace(0, 15, 64, dtype=int)]
    assert info["visual_tokens_total"] == 64 * 6  # 4×4 patches → 2×2 average + 2 row newlines
    assert set(info["presets"]) == {"training", "lmms_eval_readme"}
    default = load_engine(str(qwen2_tiny), load=CPU, load_model=False).describe()
    assert default["family_options"]["preset"] == "training"
    assert default["family_options"]["spatial_pool_mode"] == "bilinear"
    mixed = load_engine(
        EngineSpec.from_options(
            {
                "pretrained": str(qwen2_tiny),
                "preset": "lmms_eval_readme",
                "mm_spatial_pool_mode": "max",
                "max_frames_num": 8,
            }
        ),
        load_model=False,
    )
    assert mixed.settings.family_options["spatial_pool_mode"] == "max"
    assert mixed.settings.media.sampling.num_frames == 8
    with pytest.raises(ConfigError, match="known presets: lmms_eval_readme, training"):
        load_engine(EngineSpec.from_options({"pretrained": str(qwen2_tiny), "preset": "paper"}), load_model=False)


def test_forced_sampling_picks_linspace_64(qwen2_engine: Engine, clips: dict[str, Path]) -> None:
    info = qwen2_engine.describe(ask(clips["green_left_long"]))
    assert info["video"]["sampled_indices"] == [int(i) for i in np.linspace(0, 39, 64, dtype=int)]
    assert info["visual_tokens_total"] == 64 * 6  # 4×4 patches → 2×2 bilinear + 2 row newlines


def test_prompt_is_byte_exact_with_the_time_instruction(qwen2_tiny: Path, clips: dict[str, Path]) -> None:
    engine = load_engine(str(qwen2_tiny), num_frames=4, load=CPU, load_model=False)
    prompt = engine.describe(ask(clips["red_right"]))["prompt"]  # 16 frames at 8 fps: 2.00 s
    assert prompt == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<video>\n"
        "The video lasts for 2.00 seconds, and 4 frames are uniformly sampled from it. These frames are located at "
        "0.00s,0.62s,1.25s,1.88s.Please answer the following questions related to this video.\n"
        "What colour is the square?<|im_end|>\n<|im_start|>assistant\n"
    )


def test_unforced_fps_branch_keeps_the_seed_frame_time(qwen2_tiny: Path, clips: dict[str, Path]) -> None:
    engine = load_engine(str(qwen2_tiny), force_sample=False, load=CPU, load_model=False)
    info = engine.describe(ask(clips["red_right"]))
    assert info["video"]["sampled_indices"] == [0, 8]  # step round(8 fps / 1) = 8
    assert "2 frames are uniformly sampled from it. These frames are located at 0.00s,1.00s.Please" in info["prompt"]


def test_time_instruction_can_be_turned_off(qwen2_engine: Engine) -> None:
    frames = Frames(
        array=np.zeros((2, 4, 4, 3), np.uint8), indices=(0, 30), timestamps=(0.0, 1.0), fps=30.0, duration=1.5,
        source="x", num_source_frames=45, frame_time="0.00s,1.00s",
    )  # fmt: skip
    text = time_instruction(frames)
    assert text == (
        "The video lasts for 1.50 seconds, and 2 frames are uniformly sampled from it. These frames are located at "
        "0.00s,1.00s.Please answer the following questions related to this video."
    )
    config = qwen2_engine.config
    assert LLAVA_VIDEO_QWEN2.content_extras(frames, config) == text
    engine = load_engine(
        qwen2_engine.settings.pretrained, family_options={"add_time_instruction": "false"}, load=CPU, load_model=False
    )
    assert engine.config.add_time_instruction is False
    assert LLAVA_VIDEO_QWEN2.content_extras(frames, engine.config) is None


def test_engine_honours_add_time_instruction_off(qwen2_tiny: Path, clips: dict[str, Path]) -> None:
    engine = load_engine(
        str(qwen2_tiny), num_frames=4, family_options={"add_time_instruction": False}, load=CPU, load_model=False
    )
    assert engine.describe(ask(clips["red_right"]))["prompt"] == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<video>\n"
        "What colour is the square?<|im_end|>\n<|im_start|>assistant\n"
    )


def test_unknown_option_values_are_refused(qwen2_tiny: Path) -> None:
    with pytest.raises(ConfigError, match="mm_newline_position"):
        load_engine(str(qwen2_tiny), family_options={"mm_newline_position": "row"}, load_model=False)
    with pytest.raises(ConfigError, match="spatial_pool_mode"):
        load_engine(str(qwen2_tiny), family_options={"spatial_pool_mode": "conv"}, load_model=False)
    with pytest.raises(ConfigError, match="known options"):
        load_engine(str(qwen2_tiny), family_options={"pool": 2}, load_model=False)


# ---------------------------------------------------------------- generation


@pytest.mark.parametrize(("position", "tokens"), [("grid", 6), ("frame", 5), ("one_token", 4), ("no_token", 4)])
def test_tiny_generates_with_every_newline_position(
    qwen2_tiny: Path, clips: dict[str, Path], position: str, tokens: int
) -> None:
    engine = load_engine(str(qwen2_tiny), num_frames=3, family_options={"mm_newline_position": position}, load=CPU)
    result = engine.generate([ask(clips["blue_up"])])[0]
    assert result.ok, result.error
    assert result.usage.visual_tokens == 3 * tokens + (position == "one_token")
    assert result.usage.completion_tokens > 0


def test_batched_equals_one_by_one_and_images_work(qwen2_engine: Engine, clips: dict[str, Path]) -> None:
    reqs = [ask(clips["red_right"]), ask(clips["green_left_long"])]
    assert [r.text for r in qwen2_engine.generate(reqs, batch_size=2)] == [
        qwen2_engine.generate([r])[0].text for r in reqs
    ]
    image = np.full((40, 56, 3), 120, dtype=np.uint8)
    result = qwen2_engine.generate([Request(question="What is it?", images=(image,), generation=GREEDY)])[0]
    assert result.ok, result.error
    assert result.usage.visual_tokens > 0


# ---------------------------------------------------------------- published geometry, through the CLI


PUBLISHED = {"llava_next_video": 144, "llava_video_qwen2": 210, "llava_hound": 256, "video_llava": 257}


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


@pytest.fixture(scope="module")
def inspected(tmp_path_factory: pytest.TempPathFactory, clips: dict[str, Path]) -> dict[str, dict]:
    """``videolmm inspect CKPT --video CLIP --frames 4`` on a published-geometry tiny checkpoint of
    every family (the four commands run concurrently); llava_video_qwen2's checkpoint is built
    with ``videolmm tiny --geometry published``, the others with their family's ``build_tiny``
    (what that command calls)."""
    from videolmm.plugin.manager import get_registry

    root = tmp_path_factory.mktemp("published")
    tiny_cmd = [str(VENV_BIN / "videolmm"), "tiny", "--family", "llava_video_qwen2", "--geometry", "published"]
    proc = subprocess.run([*tiny_cmd, "--out", str(root / "llava_video_qwen2")], env=_env(), capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    for family in PUBLISHED:
        if family != "llava_video_qwen2":
            get_registry().family(family).build_tiny(root / family, geometry="published")
    procs = {
        family: subprocess.Popen(
            [
                str(VENV_BIN / "videolmm"),
                "inspect",
                str(root / family),
                "--video",
                str(clips["red_right"]),
                "--frames",
                "4",
            ],
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for family in PUBLISHED
    }
    out = {}
    for family, handle in procs.items():
        stdout, stderr = handle.communicate(timeout=300)
        assert handle.returncode == 0, stderr[-3000:]
        out[family] = json.loads(stdout)
    return out


@pytest.mark.parametrize(("family", "per_frame"), list(PUBLISHED.items()))
def test_cli_inspect_reports_the_published_tokens_per_frame(inspected: dict, family: str, per_frame: int) -> None:
    info = inspected[family]
    assert info["family"] == family
    assert info["visual_tokens_per_frame"] == per_frame
    assert info["visual_tokens_total"] == per_frame * 4
    assert len(info["video"]["sampled_indices"]) == 4


def test_published_average_pooling_inspects_182(tmp_path: Path, clips: dict[str, Path]) -> None:
    from videolmm.toy.tiny_families import build_tiny_llava_video_qwen2

    ckpt = build_tiny_llava_video_qwen2(tmp_path / "ckpt", geometry="published")
    engine = load_engine(
        str(ckpt), num_frames=2, family_options={"spatial_pool_mode": "average"}, load=CPU, load_model=False
    )
    info = engine.describe(ask(clips["red_right"]))
    assert (info["visual_tokens_per_frame"], info["visual_tokens_total"]) == (182, 364)
    assert info["pooling"] == {"mode": "average", "stride": 2, "where": "after the projector", "grid_after_pool": 13}


# ---------------------------------------------------------------- lmms-eval


@pytest.mark.timeout(900)
def test_lmms_eval_cli_runs_llava_video_qwen2(qwen2_tiny: Path, cache_root: Path, tmp_path: Path) -> None:
    cmd = [
        str(VENV_BIN / "lmms-eval"), "--model", "llava_video_qwen2",
        "--model_args", f"pretrained={qwen2_tiny},device=cpu",
        "--tasks", "videolmm_demo", "--batch_size", "2", "--limit", "4",
        "--output_path", str(tmp_path), "--log_samples",
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=800)
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
        assert sample["token_counts"][0]["input_tokens"] > 64 * 6  # 64 frames × 6 visual tokens
