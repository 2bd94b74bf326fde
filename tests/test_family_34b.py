"""LLaVA-NeXT-Video-34B at its seed defaults (issue #16 item 1): the 34B-geometry tiny checkpoint
(Yi token ids, ``max_position_embeddings=4096``, no RoPE scaling, 336/14 vision) runs 32 frames
(4,608 visual tokens) through the engine and lmms-eval's model class, as LLaVA-NeXT's video demo
runs the 34B: unscaled RoPE, 8,192 tokens. ``context_policy=llava_vid`` is the early lmms-eval
wrapper (linear factor 2), ``context_policy=config`` the hub config as it is (refuses)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from videolmm.errors import ConfigError
from videolmm.eval.markers import ERROR_PREFIX
from videolmm.load import load_engine
from videolmm.models.families.base import LoadOptions
from videolmm.models.families.llava_next_video.configuration import apply_context_policy, seed_scaling_factor
from videolmm.types import GenerationSettings, Request

CPU = LoadOptions(device="cpu")
QUESTION = "What colour is the square?"


@pytest.fixture
def ckpt_34b(tiny_llava_next_video_34b: Path) -> Path:
    return tiny_llava_next_video_34b  # built once per session (the serve tests serve it too)


@pytest.fixture(autouse=True)
def keep_torch_threads() -> Iterator[None]:
    """lmms-eval's model sizes torch's threads process-wide: give the rest of the session its count back."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_the_tiny_34b_has_the_published_layout(ckpt_34b: Path) -> None:
    config = json.loads((ckpt_34b / "config.json").read_text())
    text = config["text_config"]
    assert (config["video_token_index"], config["image_token_index"]) == (64000, 64001)
    assert (text["vocab_size"], text["max_position_embeddings"], text["eos_token_id"]) == (64064, 4096, 7)
    assert (text.get("rope_parameters") or {}).get("rope_type", "default") == "default"
    assert (config["vision_config"]["image_size"], config["vision_config"]["patch_size"]) == (336, 14)
    engine = load_engine(str(ckpt_34b), load=CPU, load_model=False)
    info = engine.describe()
    assert (info["template"], info["visual_tokens_per_frame"]) == ("mistral_direct", 144)
    assert engine.settings.media.sampling.num_frames == 32
    assert info["context"] == {
        "policy": "demo",
        "seed_scaling_factor": 2,  # ceil((32·144 + 1000) / 4096)
        "frames": 32,
        "hub_max_position_embeddings": 4096,
        "rope_factor": None,  # not Vicuna: the demo leaves RoPE unscaled
        "context_tokens": 8192,
    }
    assert engine.processor.tokenizer.model_max_length == 8192  # the demo's tokenizer_model_max_length
    ids = engine.processor.tokenizer.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>", "<video>", "<image>"])
    assert ids == [6, 7, 64000, 64001]


def test_32_frames_run_through_lmms_eval_at_the_seed_defaults(ckpt_34b: Path, clips: dict[str, Path]) -> None:
    """lmms-eval's model class (what ``--model llava_next_video --model_args pretrained=...`` builds)
    answers a 32-frame request: 4,608 visual tokens over a 4,096-position config."""
    from lmms_eval.api.instance import Instance

    from videolmm.eval.model import LlavaNextVideo

    lm = LlavaNextVideo(pretrained=str(ckpt_34b), device="cpu")
    doc = {"video": str(clips["red_right"]), "question": QUESTION}
    lm.task_dict = {"t34": {"test": {0: doc}}}
    gen = {"max_new_tokens": 2, "temperature": 0, "do_sample": False}
    inst = Instance("generate_until", (QUESTION, gen, lambda d: [d["video"]], 0, "t34", "test"), idx=0,
                    metadata={"task": "t34", "doc_id": 0, "repeats": 1})  # fmt: skip
    (out,) = lm.generate_until([inst])
    text = getattr(out, "text", out)
    assert not text.startswith(ERROR_PREFIX), text
    request = Request(question=QUESTION, videos=(doc["video"],), generation=GenerationSettings(max_new_tokens=2))
    info = lm.engine.describe(request)
    assert info["video"]["sampled_indices"] == [int(i) for i in torch.linspace(0, 15, 32).floor().tolist()]
    assert info["visual_tokens_total"] == 32 * 144
    assert info["prompt_tokens"] > 4096


def test_context_policy_config_refuses_and_llava_vid_scales(ckpt_34b: Path, clips: dict[str, Path]) -> None:
    request = Request(
        question=QUESTION, videos=(str(clips["red_right"]),), generation=GenerationSettings(max_new_tokens=2)
    )
    strict = load_engine(str(ckpt_34b), load=CPU, family_options={"context_policy": "config"})
    (result,) = strict.generate([request])
    assert result.error and "ContextLengthExceeded" in result.error and "context of 4096 tokens" in result.error
    lmms = load_engine(str(ckpt_34b), load=CPU, load_model=False, family_options={"context_policy": "llava_vid"})
    info = lmms.describe()
    assert info["rope_scaling"]["rope_type"] == "linear" and info["rope_scaling"]["factor"] == 2.0
    assert info["context"]["context_tokens"] == 8192
    with pytest.raises(ConfigError, match="context_policy='paper'"):
        load_engine(str(ckpt_34b), load_model=False, family_options={"context_policy": "paper"})


def _config(model_type: str, vocab: int, positions: int, rope: dict | None = None) -> SimpleNamespace:
    text = SimpleNamespace(model_type=model_type, vocab_size=vocab, max_position_embeddings=positions)
    text.rope_parameters = dict(rope or {"rope_type": "default", "rope_theta": 10000.0})
    vision = SimpleNamespace(image_size=336, patch_size=14)
    return SimpleNamespace(text_config=text, vision_config=vision, spatial_pool_stride=2)


def test_demo_policy_per_text_model() -> None:
    """video_demo.py: Vicuna gets linear RoPE ``f`` (in place of a hub config's own scaling: the demo
    overwrites ``rope_scaling``, issue 16 item 8), other models none; every model may run 4096·f
    tokens; a longer config context is never lowered."""
    assert seed_scaling_factor(32, 24, 2) == 2 and seed_scaling_factor(64, 24, 2) == 3
    assert seed_scaling_factor(16, 24, 2) == 1  # 16 frames fit: nothing changes
    vicuna = _config("llama", 32064, 4096)
    assert apply_context_policy(vicuna, "demo", 32)["context_tokens"] == 8192
    assert vicuna.text_config.rope_parameters["factor"] == 2.0
    hub_7b = _config("llama", 32064, 4096, {"rope_type": "linear", "factor": 2.0})
    assert apply_context_policy(hub_7b, "demo", 64)["context_tokens"] == 12288  # 4096·3, the demo's factor
    assert hub_7b.text_config.rope_parameters["factor"] == 3.0
    mistral = _config("mistral", 32064, 32768)
    record = apply_context_policy(mistral, "demo", 32)
    assert (record["context_tokens"], record["rope_factor"]) == (32768, None)
    yi = _config("llama", 64064, 4096)
    record = apply_context_policy(yi, "llava_vid", 32)
    assert (record["context_tokens"], record["rope_factor"]) == (8192, 2.0)
    short = _config("llama", 64064, 4096)
    assert apply_context_policy(short, "demo", 16)["context_tokens"] == 4096


def test_7b_dpo_hub_factor_2_5_runs_as_the_demo_factor() -> None:
    """Issue 16 item 8: llava-hf/LLaVA-NeXT-Video-7B-DPO-hf carries linear factor 2.5; the authors'
    demo and eval scripts (video_inference e789bd4: playground/demo/video_demo.py,
    llava/eval/model_video_*.py) overwrite rope_scaling with ceil((F·144+1000)/4096): 2 at 32 frames.
    Below 2 they leave the config alone (2.5 at 16 frames); context_policy=config keeps 2.5."""
    for frames, factor in ((32, 2.0), (16, 2.5)):
        dpo = _config("llama", 32064, 4096, {"rope_type": "linear", "factor": 2.5})
        assert apply_context_policy(dpo, "demo", frames)["rope_factor"] == factor
    kept = _config("llama", 32064, 4096, {"rope_type": "linear", "factor": 2.5})
    assert apply_context_policy(kept, "config", 32)["rope_factor"] == 2.5


@pytest.mark.slow
def test_32_frames_through_lmms_evals_evaluator(ckpt_34b: Path, cache_root: Path) -> None:
    """The whole lmms-eval path (``simple_evaluate``: task, model, filters, metrics) on two docs of
    the demo task at the seed's 32 frames (slow: about a minute on two CPU cores)."""
    from lmms_eval.evaluator import simple_evaluate

    out = simple_evaluate(
        model="llava_next_video",
        model_args=f"pretrained={ckpt_34b},device=cpu",
        tasks=["videolmm_demo"],
        batch_size=1,
        log_samples=True,
        limit=2,
    )
    samples = out["samples"]["videolmm_demo"]
    assert len(samples) == 2
    for sample in samples:
        text = sample["filtered_resps"][0] if isinstance(sample["filtered_resps"], list) else sample["filtered_resps"]
        assert not str(text).startswith(ERROR_PREFIX), text
