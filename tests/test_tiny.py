"""Tests for the offline tiny checkpoints (videolmm.toy.tiny)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from videolmm.toy import tiny

FAMILIES = ("llava_next_video", "video_llava")
BUILDERS = {
    "llava_next_video": tiny.build_tiny_llava_next_video,
    "video_llava": tiny.build_tiny_video_llava,
}
MODEL_CLASSES = {
    "llava_next_video": "LlavaNextVideoForConditionalGeneration",
    "video_llava": "VideoLlavaForConditionalGeneration",
}
PROCESSOR_CLASSES = {
    "llava_next_video": ("LlavaNextVideoProcessor", "LlavaNextImageProcessor", "LlavaNextVideoVideoProcessor"),
    "video_llava": ("VideoLlavaProcessor", "VideoLlavaImageProcessor", "VideoLlavaVideoProcessor"),
}
TOKENS_PER_FRAME = {
    ("llava_next_video", "tiny"): 4,
    ("llava_next_video", "published"): 144,
    ("video_llava", "tiny"): 17,
    ("video_llava", "published"): 257,
}
PROMPT = "USER: <video>\nWhat colour? ASSISTANT:"
LONG_PROMPT = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "USER: <video>\nWhich way does the red square move? ASSISTANT:"
)
NUM_FRAMES = 8


@pytest.fixture(scope="session", autouse=True)
def _offline() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        mp.setenv("TOKENIZERS_PARALLELISM", "false")
        yield


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    root = tmp_path_factory.mktemp("tiny")
    return {
        (family, geometry): BUILDERS[family](root / f"{family}-{geometry}", seed=0, geometry=geometry)
        for family in FAMILIES
        for geometry in tiny.GEOMETRIES
    }


@pytest.fixture(scope="session")
def loaded(checkpoints: dict[tuple[str, str], Path]) -> dict[tuple[str, str], tuple[Any, Any, Any]]:
    """(config, processor, model) reloaded from disk for every checkpoint."""
    import transformers
    from transformers import AutoConfig, AutoProcessor

    out = {}
    for key, path in checkpoints.items():
        config = AutoConfig.from_pretrained(path)
        processor = AutoProcessor.from_pretrained(path)
        model = getattr(transformers, MODEL_CLASSES[key[0]]).from_pretrained(path)
        model.eval()
        out[key] = (config, processor, model)
    return out


def _frames(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(NUM_FRAMES, 48, 64, 3), dtype=np.uint8)


def test_tokenizer_special_tokens_and_bos() -> None:
    tok = tiny.build_tokenizer()
    assert 300 <= len(tok) <= 512
    for i, t in enumerate(tiny.SPECIAL_TOKENS):
        assert tok.convert_tokens_to_ids(t) == i
    assert (tok.unk_token, tok.pad_token, tok.bos_token, tok.eos_token) == ("<unk>", "<pad>", "<s>", "</s>")
    assert tok.image_token == "<image>" and tok.video_token == "<video>"
    assert (tok.image_token_id, tok.video_token_id) == (4, 5)
    assert tok.padding_side == "left"
    assert {"<image>", "<video>"} <= set(tok.all_special_tokens)

    ids = tok("USER: <video>\n<image>x<video><video>What colour? ASSISTANT:").input_ids
    assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
    assert ids.count(5) == 3 and ids.count(4) == 1
    assert tok.convert_ids_to_tokens(ids[1:3]) == ["USER", ":"]
    assert tok.decode(ids, skip_special_tokens=False).startswith("<s>USER: <video>\n<image>x<video><video>")

    batch = tok(["a", "the red square moves left"], padding=True)
    assert batch.input_ids[0][0] == tok.pad_token_id and batch.attention_mask[0][0] == 0
    assert batch.input_ids[1][0] == tok.bos_token_id


def test_tokenizer_deterministic_and_chat_template() -> None:
    a, b = tiny.build_tokenizer(), tiny.build_tokenizer()
    assert a.backend_tokenizer.to_str() == b.backend_tokenizer.to_str()
    text = "A chat between a curious user and an artificial intelligence assistant. USER: <video>\nLeft? ASSISTANT:"
    assert a(text).input_ids == b(text).input_ids
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What colour?"}]}]
    assert a.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == PROMPT
    dialogue = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Colour?"},
        {"role": "assistant", "content": "Red."},
        {"role": "user", "content": "Way?"},
    ]
    rendered = a.apply_chat_template(dialogue, tokenize=False, add_generation_prompt=True)
    assert rendered == "Be brief. USER: Colour? ASSISTANT: Red.</s>USER: Way? ASSISTANT:"


def test_unknown_geometry(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="geometry"):
        tiny.build_tiny_video_llava(tmp_path, geometry="huge")


@pytest.mark.parametrize("geometry", tiny.GEOMETRIES)
@pytest.mark.parametrize("family", FAMILIES)
def test_layout_and_reload(
    family: str, geometry: str, checkpoints: dict[tuple[str, str], Path], loaded: dict[tuple[str, str], Any]
) -> None:
    path = checkpoints[family, geometry]
    assert json.loads((path / tiny.MANIFEST_NAME).read_text()) == {"family": family, "geometry": geometry, "seed": 0}
    for name in ("config.json", "model.safetensors", "processor_config.json", "tokenizer.json", "chat_template.jinja"):
        assert (path / name).is_file(), name
    size = sum(p.stat().st_size for p in path.iterdir())
    assert size < (2 if geometry == "tiny" else 4) * 1024 * 1024

    config, processor, model = loaded[family, geometry]
    assert config.model_type == family
    assert type(model).__name__ == MODEL_CLASSES[family]
    assert config.vision_feature_select_strategy == processor.vision_feature_select_strategy == "default"
    assert config.vision_feature_layer == -2
    assert processor.patch_size == config.vision_config.patch_size
    assert (type(processor).__name__, type(processor.image_processor).__name__) == PROCESSOR_CLASSES[family][:2]
    assert type(processor.video_processor).__name__ == PROCESSOR_CLASSES[family][2]
    tok = processor.tokenizer
    assert (config.image_token_index, config.video_token_index) == (tok.image_token_id, tok.video_token_id)
    assert config.text_config.vocab_size == len(tok)
    assert (config.text_config.pad_token_id, config.text_config.bos_token_id) == (tok.pad_token_id, tok.bos_token_id)
    assert config.text_config.eos_token_id == tok.eos_token_id
    assert config.text_config.max_position_embeddings >= 4096
    assert tok.padding_side == "left"
    assert processor.chat_template == tiny.CHAT_TEMPLATE
    image_size = config.vision_config.image_size
    for sub in (processor.image_processor, processor.video_processor):
        assert sub.size["shortest_edge"] == image_size
        assert (sub.crop_size["height"], sub.crop_size["width"]) == (image_size, image_size)
    if family == "llava_next_video":
        assert config.spatial_pool_mode == "average" and config.spatial_pool_stride == 2
        pinpoints = [list(p) for p in processor.image_processor.image_grid_pinpoints]
        assert pinpoints == [list(p) for p in config.image_grid_pinpoints]
        assert all(h % image_size == 0 and w % image_size == 0 for h, w in pinpoints)


@pytest.mark.parametrize("geometry", tiny.GEOMETRIES)
@pytest.mark.parametrize("family", FAMILIES)
def test_video_tokens_per_frame(family: str, geometry: str, loaded: dict[tuple[str, str], Any]) -> None:
    config, processor, _ = loaded[family, geometry]
    inputs = processor(text=PROMPT, videos=_frames(0), return_tensors="pt")
    n_video = int((inputs["input_ids"] == config.video_token_index).sum())
    assert n_video == TOKENS_PER_FRAME[family, geometry] * NUM_FRAMES
    assert tuple(inputs["pixel_values_videos"].shape[-2:]) == (config.vision_config.image_size,) * 2
    assert int(inputs["input_ids"][0, 0]) == processor.tokenizer.bos_token_id


@pytest.mark.parametrize("family", FAMILIES)
def test_generate_tiny(family: str, loaded: dict[tuple[str, str], Any]) -> None:
    import torch

    config, processor, model = loaded[family, "tiny"]
    inputs = processor(text=PROMPT, videos=_frames(0), return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
        again = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    prompt_len = inputs["input_ids"].shape[1]
    assert out.shape == (1, prompt_len + 3)
    assert torch.equal(out, again)
    assert torch.equal(out[:, :prompt_len], inputs["input_ids"])
    assert isinstance(processor.batch_decode(out[:, prompt_len:], skip_special_tokens=True)[0], str)

    batch = processor(text=[PROMPT, LONG_PROMPT], videos=[_frames(1), _frames(2)], padding=True, return_tensors="pt")
    mask = batch["attention_mask"]
    assert mask.shape[0] == 2 and int(mask[0].sum()) < int(mask[1].sum())
    assert int(mask[0, 0]) == 0 and int(mask[0, -1]) == 1 and bool(mask[1].all())  # left padding
    assert int(batch["input_ids"][0, 0]) == processor.tokenizer.pad_token_id
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=3, do_sample=False)
    assert out.shape == (2, batch["input_ids"].shape[1] + 3)


def test_image_input_llava_next_video(loaded: dict[tuple[str, str], Any]) -> None:
    """The anyres image path agrees with the model (needs num_additional_image_tokens=1 for CLIP)."""
    import torch

    config, processor, model = loaded["llava_next_video", "tiny"]
    image = _frames(3)[0]
    inputs = processor(text="USER: <image>\nWhat colour? ASSISTANT:", images=image, return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.shape == (1, inputs["input_ids"].shape[1], config.text_config.vocab_size)
    assert torch.isfinite(logits).all()


def test_weights_deterministic(tmp_path: Path, checkpoints: dict[tuple[str, str], Path]) -> None:
    from safetensors.torch import load_file

    for family in FAMILIES:
        first = load_file(checkpoints[family, "tiny"] / "model.safetensors")
        second = load_file(BUILDERS[family](tmp_path / f"{family}-again", seed=0) / "model.safetensors")
        other = load_file(BUILDERS[family](tmp_path / f"{family}-seed1", seed=1) / "model.safetensors")
        assert first.keys() == second.keys() == other.keys()
        assert all(first[k].dtype == second[k].dtype and (first[k] == second[k]).all() for k in first)
        assert any(not (first[k] == other[k]).all() for k in first if first[k].numel() > 1 and first[k].std() > 0)
        big = max(float(v.abs().max()) for k, v in first.items() if k.endswith("weight") and v.dim() == 2)
        assert big < 1.0  # small initialiser (std 0.02)
        tok_a = (checkpoints[family, "tiny"] / "tokenizer.json").read_text()
        assert tok_a == (tmp_path / f"{family}-again" / "tokenizer.json").read_text()
