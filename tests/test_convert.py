"""``videolmm convert`` on tiny checkpoints written in each original key layout: every source
tensor consumed, every target parameter filled with the right values, refusals that list the
problems, streaming shards, the manifest, RoPE scaling, chat templates, and generation through
the engine."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from videolmm.convert.base import ConvertOptions
from videolmm.convert.manifest import MANIFEST_NAME, read_manifest
from videolmm.convert.plan import ConversionRefused
from videolmm.convert.run import convert_checkpoint
from videolmm.convert.shards import SAFETENSORS_INDEX, ShardWriter, sha256_file
from videolmm.errors import ConfigError
from videolmm.load import load_engine
from videolmm.models.families.base import LoadOptions
from videolmm.toy import tiny_originals as originals
from videolmm.types import GenerationSettings, Request

VENV_BIN = Path(sys.executable).parent
CPU = LoadOptions(device="cpu")

#: case → (builder, builder kwargs, --source, family, template, tokens per 32-px frame)
CASES = {
    "next_video_vicuna": (
        originals.build_original_llava_next_video, {}, "lmms-lab/LLaVA-NeXT-Video-7B", "llava_next_video",
        "vicuna_v1", 4,
    ),
    "next_video_mistral_bin": (
        originals.build_original_llava_next_video, {"variant": "mistral-7b", "fmt": "bin"},
        "lmms-lab/LLaVA-NeXT-Video-7B-32K", "llava_next_video", "mistral_direct", 4,  # LLaVA-NeXT#54
    ),
    "next_video_yi": (
        originals.build_original_llava_next_video, {"variant": "yi-34b"},
        "lmms-lab/LLaVA-NeXT-Video-34B-DPO", "llava_next_video", "mistral_direct", 4,
    ),
    "video_qwen2": (
        originals.build_original_llava_video_qwen2, {}, "lmms-lab/LLaVA-Video-7B-Qwen2", "llava_video_qwen2",
        "qwen_1_5", 6,
    ),
    "hound": (
        originals.build_original_llava_hound, {"towers_in_checkpoint": True}, "ShareGPTVideo/LLaVA-Hound-DPO",
        "llava_hound", "v1", 16,
    ),
}  # fmt: skip


def quiet(_: str) -> None:
    """Progress sink for in-process conversions."""


def options(orig: originals.OriginalCheckpoint, out: Path, **kw) -> ConvertOptions:
    return ConvertOptions(
        input=orig.checkpoint,
        output=out,
        video_tower=orig.towers.get("video"),
        image_tower=orig.towers.get("image"),
        **kw,
    )


@pytest.fixture(scope="module", params=list(CASES))
def converted(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    builder, kwargs, source, *_ = CASES[request.param]
    root = tmp_path_factory.mktemp(request.param)
    orig = builder(root / "original", **kwargs)
    out = root / "converted"
    manifest = convert_checkpoint(source, options(orig, out, max_shard_size="300KB"), progress=quiet)
    return request.param, orig, out, manifest


def expected_target(name: str) -> str | None:
    """Where an original tensor belongs in transformers 5's layout (None: not carried over),
    written from the original code's module names, independently of the converter's rules."""
    group, key = name.split(":", 1)
    if key.endswith((".inv_freq", ".position_ids")):
        return None
    if group != "checkpoint":  # LanguageBind tower directories
        return f"model.{group}.{key.removeprefix('vision_model.')}" if key.startswith("vision_model.") else None
    if key.startswith(("model.video_tower.", "model.image_tower.")):
        return None  # LLaVA-Hound reloads its towers from LanguageBind
    key = key.replace("model.vision_tower.vision_tower.vision_model.", "model.vision_tower.")
    key = key.replace("model.mm_projector.0.", "model.multi_modal_projector.linear_1.")
    key = key.replace("model.mm_projector.2.", "model.multi_modal_projector.linear_2.")
    if key.startswith(("model.embed_tokens", "model.layers.", "model.norm")):
        key = "model.language_model." + key.removeprefix("model.")
    return key


def output_tensors(out: Path) -> dict[str, torch.Tensor]:
    files = sorted(out.glob("*.safetensors"))
    tensors: dict[str, torch.Tensor] = {}
    for f in files:
        tensors.update(load_file(str(f)))
    return tensors


# ---------------------------------------------------------------- every key, every parameter


def test_every_source_tensor_is_consumed_and_every_parameter_filled(converted) -> None:
    case, orig, out, manifest = converted
    got = output_tensors(out)
    expected = {name: expected_target(name) for name in orig.tensors}
    carried = {t: name for name, t in expected.items() if t is not None}
    assert set(got) == set(carried), set(got) ^ set(carried)
    assert manifest.mapped == len(got) == manifest.target_parameters  # nothing tied in these models
    assert sum(manifest.source_tensors.values()) == len(orig.tensors) == manifest.mapped + len(manifest.dropped)
    assert {d["tensor"] for d in manifest.dropped} == {n for n, t in expected.items() if t is None}
    assert all(d["reason"] for d in manifest.dropped)
    for target, name in carried.items():
        source, tensor = orig.tensors[name], got[target]
        assert tensor.dtype == source.dtype, target
        assert torch.equal(tensor[: source.shape[0]], source), target
        if tensor.shape != source.shape:  # vocabulary rows added for <image>/<video>/<pad>
            assert target in manifest.resized
            mean = source.float().mean(0).to(source.dtype)
            assert all(torch.equal(row, mean) for row in tensor[source.shape[0] :]), target


def test_converted_checkpoint_generates_through_the_engine(converted, clips: dict[str, Path]) -> None:
    case, _, out, manifest = converted
    *_, family, template, per_frame = CASES[case]
    engine = load_engine(str(out), num_frames=4, load=CPU)  # family detected from config.json
    assert (engine.settings.family, engine.settings.template, manifest.family) == (family, template, family)
    loaded = engine.model.state_dict()
    for name, tensor in output_tensors(out).items():  # from_pretrained used every converted tensor
        assert torch.equal(loaded[name], tensor.float()), name
    result = engine.generate(
        [Request(question="What colour?", videos=(str(clips["red_right"]),), generation=GenerationSettings(4))]
    )[0]
    assert result.ok, result.error
    assert result.usage.visual_tokens == 4 * per_frame and result.usage.completion_tokens > 0
    tokenizer = engine.processor.tokenizer
    for token, token_id in manifest.added_tokens.items():
        assert tokenizer.convert_tokens_to_ids(token) == token_id
    assert engine.config.video_token_id == manifest.added_tokens["<video>"]
    assert engine.config.image_token_id == manifest.added_tokens["<image>"]


def test_manifest_records_files_and_hashes(converted) -> None:
    case, orig, out, manifest = converted
    on_disk = read_manifest(out)
    assert on_disk["source_layout"] == CASES[case][2] or on_disk["source"] == CASES[case][2]
    assert on_disk["mapped"] == manifest.mapped and on_disk["format_version"] == 1
    for record in on_disk["output_files"]:
        assert sha256_file(out / record["path"]) == record["sha256"]
    groups = {r["group"] for r in on_disk["source_files"]}
    assert "checkpoint" in groups
    assert all(len(r["sha256"]) == 64 for r in on_disk["source_files"])


def test_output_is_sharded_under_the_limit_with_an_index(converted) -> None:
    _, _, out, _ = converted
    shards = sorted(out.glob("model-*.safetensors"))
    assert len(shards) >= 2
    index = json.loads((out / SAFETENSORS_INDEX).read_text())
    assert set(index["weight_map"].values()) == {s.name for s in shards}
    for shard in shards:
        tensors = load_file(str(shard))
        data_bytes = sum(t.numel() * t.element_size() for t in tensors.values())
        assert data_bytes <= 300_000 or len(tensors) == 1  # one oversized tensor may stand alone
    assert not list(out.parent.glob("*.partial"))


# ---------------------------------------------------------------- layout-specific choices


def test_vicuna_gets_linear_rope_2_under_rope_parameters(tmp_path: Path) -> None:
    orig = originals.build_original_llava_next_video(tmp_path / "o")
    convert_checkpoint("llava_next_video", options(orig, tmp_path / "a"), progress=quiet)
    text = json.loads((tmp_path / "a" / "config.json").read_text())["text_config"]
    assert text["rope_parameters"]["rope_type"] == "linear" and text["rope_parameters"]["factor"] == 2.0
    assert "factor" not in text and "type" not in text
    convert_checkpoint("llava_next_video", options(orig, tmp_path / "b", rope_factor=0), progress=quiet)
    text = json.loads((tmp_path / "b" / "config.json").read_text())["text_config"]
    assert text["rope_parameters"]["rope_type"] == "default"


def test_yi_34b_is_told_apart_by_its_vocabulary(tmp_path: Path) -> None:
    """LLaVA-NeXT-Video-34B: ``llava_llama`` like the 7B, but Yi's 64000-entry vocabulary: the added
    tokens get Yi's ids, the template is mistral_direct, and no Vicuna RoPE factor is applied."""
    orig = originals.build_original_llava_next_video(tmp_path / "o", variant="yi-34b")
    manifest = convert_checkpoint("lmms-lab/LLaVA-NeXT-Video-34B", options(orig, tmp_path / "out"), progress=quiet)
    assert (manifest.settings["variant"], manifest.settings["template"]) == ("yi-34b", "mistral_direct")
    assert (manifest.added_tokens["<video>"], manifest.added_tokens["<image>"]) == (64000, 64001)
    assert manifest.settings["rope_scaling"] is None
    text = json.loads((tmp_path / "out" / "config.json").read_text())["text_config"]
    assert text["vocab_size"] % 64 == 0 and text["vocab_size"] > max(manifest.added_tokens.values())
    assert "factor" not in (text.get("rope_parameters") or {})


def test_qwen2_pool_and_newline_come_from_the_original_config(tmp_path: Path) -> None:
    orig = originals.build_original_llava_video_qwen2(tmp_path / "o", pool_mode="average", newline=None)
    manifest = convert_checkpoint("llava_video_qwen2", options(orig, tmp_path / "c"), progress=quiet)
    config = json.loads((tmp_path / "c" / "config.json").read_text())
    assert (config["spatial_pool_mode"], config["mm_newline_position"]) == ("average", "one_token")
    assert manifest.settings["mm_newline_position"]["from"].startswith("LLaVA-NeXT's getattr default")
    assert config["vision_config"]["num_hidden_layers"] == 2  # the tower config says 3; the seed drops one
    assert manifest.vocab == {"original": 448, "converted": 448}  # Qwen2's padded rows hold the new tokens


@pytest.mark.parametrize(("time_instr", "force"), [(False, False), (None, None), (True, False)])
def test_qwen2_time_instruction_and_force_sample_come_from_the_original_config(
    tmp_path: Path, clips: dict[str, Path], time_instr: bool | None, force: bool | None
) -> None:
    """As LLaVA-NeXT's video_demo.py: both read from the config, absent meaning False (#16 item 7)."""
    orig = originals.build_original_llava_video_qwen2(
        tmp_path / "o", add_time_instruction=time_instr, force_sample=force
    )
    manifest = convert_checkpoint("llava_video_qwen2", options(orig, tmp_path / "c"), progress=quiet)
    config = json.loads((tmp_path / "c" / "config.json").read_text())
    assert config["add_time_instruction"] is bool(time_instr)
    assert json.loads((tmp_path / "c" / "videolmm.json").read_text()) == {"force_sample": bool(force)}
    origin = manifest.settings["force_sample"]["from"]
    assert origin == (
        "config.json" if force is not None else "video_demo.py's getattr default (key absent from config.json)"
    )
    engine = load_engine(str(tmp_path / "c"), num_frames=4, load=CPU, load_model=False)
    assert engine.settings.media.sampling.force_sample is bool(force)
    info = engine.describe(Request(question="Q?", videos=(str(clips["red_right"]),)))
    assert ("frames are uniformly sampled" in info["prompt"]) is bool(time_instr)
    assert info["video"]["sampled_indices"] == ([0, 5, 10, 15] if force else [0, 8])  # 16 frames at 8 fps


def test_hound_without_tower_copies_and_with_bin_shards(tmp_path: Path) -> None:
    orig = originals.build_original_llava_hound(tmp_path / "o", fmt="bin")
    manifest = convert_checkpoint("llava_hound", options(orig, tmp_path / "h", dtype="float32"), progress=quiet)
    assert manifest.source_tensors["video_tower"] == manifest.source_tensors["image_tower"]
    assert all(t.dtype == torch.float32 for t in output_tensors(tmp_path / "h").values())
    config = json.loads((tmp_path / "h" / "config.json").read_text())
    assert (config["model_type"], config["video_drop_cls"], config["dtype"]) == ("llava_hound", True, "float32")


# ---------------------------------------------------------------- refusals


def _edit_weights(checkpoint: Path, edit) -> None:
    """Apply ``edit(shard_number, tensors)`` to every safetensors shard and rebuild the index."""
    weight_map = {}
    for number, shard in enumerate(sorted(checkpoint.glob("model-*.safetensors"))):
        tensors = load_file(str(shard))
        edit(number, tensors)
        save_file(tensors, str(shard), metadata={"format": "pt"})
        weight_map.update({k: shard.name for k in tensors})
    (checkpoint / SAFETENSORS_INDEX).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


@pytest.fixture
def vicuna_original(tmp_path: Path) -> originals.OriginalCheckpoint:
    return originals.build_original_llava_next_video(tmp_path / "o")


def test_unknown_missing_and_misshapen_tensors_are_listed_and_nothing_is_written(
    vicuna_original: originals.OriginalCheckpoint, tmp_path: Path
) -> None:
    def damage(number: int, tensors: dict) -> None:
        if number == 0:
            tensors["model.faster_token"] = torch.zeros(64)  # LLaVA-Video's SlowFast token: no target
        if "model.mm_projector.0.weight" in tensors:
            tensors["model.mm_projector.0.weight"] = torch.zeros(3, 3)
        tensors.pop("model.image_newline", None)

    _edit_weights(vicuna_original.checkpoint, damage)
    out = tmp_path / "out"
    with pytest.raises(ConversionRefused) as err:
        convert_checkpoint("llava_next_video", options(vicuna_original, out), progress=quiet)
    message = str(err.value)
    assert "unknown source tensors (no rule consumes them) (1)" in message
    assert "checkpoint:model.faster_token [64]" in message
    assert "target parameters no source tensor fills (1):\n  - model.image_newline" in message
    assert "mm_projector.0.weight has shape [3, 3] but model.multi_modal_projector.linear_1.weight" in message
    assert not out.exists() and not out.with_name("out.partial").exists()


def test_temporal_attention_towers_are_refused(tmp_path: Path) -> None:
    orig = originals.build_original_llava_hound(tmp_path / "o", temporal=True)
    with pytest.raises(ConversionRefused, match="temporal-attention tensors .*temporal_attn"):
        convert_checkpoint("llava_hound", options(orig, tmp_path / "out"), progress=quiet)
    config_path = orig.towers["video"] / "config.json"
    config = json.loads(config_path.read_text())
    config["vision_config"]["add_time_attn"] = True
    config_path.write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="add_time_attn"):
        convert_checkpoint("llava_hound", options(orig, tmp_path / "out"), progress=quiet)


def test_hound_needs_its_languagebind_towers(tmp_path: Path) -> None:
    orig = originals.build_original_llava_hound(tmp_path / "o")
    config_path = orig.checkpoint / "config.json"
    config = json.loads(config_path.read_text())
    config["mm_video_tower"] = "LanguageBind/LanguageBind_Video_merge"
    config_path.write_text(json.dumps(config))
    opts = ConvertOptions(input=orig.checkpoint, output=tmp_path / "out", image_tower=orig.towers["image"])
    with pytest.raises(ConfigError, match="pass --video-tower DIR"):
        convert_checkpoint("llava_hound", opts, progress=quiet)


def test_wrong_layout_existing_output_and_unknown_source(
    vicuna_original: originals.OriginalCheckpoint, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="not a llava_hound checkpoint; it looks like 'llava_next_video'"):
        convert_checkpoint("llava_hound", options(vicuna_original, tmp_path / "x"), progress=quiet)
    with pytest.raises(ConfigError, match="unknown source layout 'llava_13b'.*lmms-lab/LLaVA-Video-7B-Qwen2"):
        convert_checkpoint("llava_13b", options(vicuna_original, tmp_path / "x"), progress=quiet)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("x")
    with pytest.raises(ConfigError, match="exists and is not empty"):
        convert_checkpoint("llava_next_video", options(vicuna_original, busy), progress=quiet)
    convert_checkpoint("llava_next_video", options(vicuna_original, busy, overwrite=True), progress=quiet)
    assert (busy / MANIFEST_NAME).is_file() and not (busy / "keep.txt").exists()


def test_engine_refuses_an_unconverted_original_with_the_command(vicuna_original, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="convert it first: videolmm convert --source llava_next_video"):
        load_engine(str(vicuna_original.checkpoint), load=CPU, load_model=False)
    qwen = originals.build_original_llava_video_qwen2(tmp_path / "q")
    with pytest.raises(ConfigError, match="videolmm convert --source llava_video_qwen2"):
        load_engine(str(qwen.checkpoint), family="llava_video_qwen2", load=CPU, load_model=False)


# ---------------------------------------------------------------- shards, RoPE, chat templates


def test_shard_writer_flushes_before_a_shard_overflows(tmp_path: Path) -> None:
    writer = ShardWriter(tmp_path, max_shard_bytes=1000, progress=quiet)
    for i in range(5):
        writer.add(f"t{i}", torch.zeros(100))  # 400 bytes each: two per shard
    writer.add("big", torch.zeros(1000))  # larger than a shard: alone
    files = writer.close()
    contents = [sorted(load_file(str(f))) for f in files]
    assert contents == [["t0", "t1"], ["t2", "t3"], ["t4"], ["big"]]
    assert [f.name for f in files][0] == "model-00001-of-00004.safetensors"


def test_flat_rope_keys_are_moved_into_rope_parameters(tiny_llava_next_video: Path, tmp_path: Path) -> None:
    """llava-hf/LLaVA-NeXT-Video-7B-hf (revisions 6ae32f6/babe571) wrote the scaling flat."""
    from transformers import AutoConfig, LlamaModel

    from videolmm.models.families.llava_next_video.configuration import repair_flat_rope_scaling

    ckpt = tmp_path / "flat"
    shutil.copytree(tiny_llava_next_video, ckpt)
    data = json.loads((ckpt / "config.json").read_text())
    data["text_config"].update(factor=2.0, type="linear")
    (ckpt / "config.json").write_text(json.dumps(data))
    config = AutoConfig.from_pretrained(ckpt)
    assert config.text_config.rope_parameters["rope_type"] == "default"  # transformers ignores flat keys
    plain = LlamaModel(config.text_config).rotary_emb.inv_freq.clone()
    params = repair_flat_rope_scaling(config.text_config)
    assert params == {**params, "rope_type": "linear", "factor": 2.0}
    assert not hasattr(config.text_config, "factor") and "factor" not in config.text_config.to_dict()
    torch.testing.assert_close(LlamaModel(config.text_config).rotary_emb.inv_freq, plain / 2)
    assert repair_flat_rope_scaling(config.text_config) is None  # idempotent


def test_engine_applies_flat_rope_scaling(tiny_llava_next_video: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "flat"
    shutil.copytree(tiny_llava_next_video, ckpt)
    data = json.loads((ckpt / "config.json").read_text())
    data["text_config"].update(factor=2.0, type="linear")
    (ckpt / "config.json").write_text(json.dumps(data))
    engine = load_engine(str(ckpt), load=CPU, load_model=False)
    assert engine.config.text_config.rope_parameters["rope_type"] == "linear"
    assert engine.config.text_config.rope_parameters["factor"] == 2.0


def test_explicit_rope_scaling_wins_over_flat_keys() -> None:
    from transformers import LlamaConfig

    from videolmm.models.families.llava_next_video.configuration import repair_flat_rope_scaling

    config = LlamaConfig(rope_scaling={"type": "linear", "factor": 2.5}, factor=2.0, type="linear")
    assert repair_flat_rope_scaling(config) is None
    assert config.rope_parameters["factor"] == 2.5


@pytest.mark.parametrize("name", ["vicuna_v1", "v1", "llava_v1", "qwen_1_5", "mistral_direct", "mistral_instruct"])
def test_chat_templates_render_the_seed_prompts_byte_exact(name: str) -> None:
    from videolmm.convert.chat_templates import chat_template
    from videolmm.models.prompts import BUILTIN_TEMPLATES
    from videolmm.toy.tiny import build_tokenizer

    template = next(t for t in BUILTIN_TEMPLATES if t.name == name)
    tokenizer = build_tokenizer()
    tokenizer.chat_template = chat_template(name)
    for content in ("<video>\nWhat?", [{"type": "video"}, {"type": "text", "text": "What?"}]):
        rendered = tokenizer.apply_chat_template(
            [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
        )
        assert rendered == template.render("<video>\nWhat?")
    turns = [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "q2"},
    ]
    multi = tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
    assert (
        multi
        == {
            "vicuna_v1": "S USER: q1 ASSISTANT: a1</s>USER: q2 ASSISTANT:",
            "v1": "S USER: q1 ASSISTANT: a1</s>USER: q2 ASSISTANT:",
            "llava_v1": "S USER: q1 ASSISTANT: a1</s>USER: q2 ASSISTANT:",
            "qwen_1_5": "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nq1<|im_end|>\n<|im_start|>assistant\na1"
            "<|im_end|>\n<|im_start|>user\nq2<|im_end|>\n<|im_start|>assistant\n",
            "mistral_direct": "<|im_start|>system\nS<|im_end|><|im_start|>user\nq1<|im_end|><|im_start|>assistant\na1"
            "<|im_end|><|im_start|>user\nq2<|im_end|><|im_start|>assistant\n",
            "mistral_instruct": "[INST] <<SYS>>\nS\n<</SYS>>\n\nq1 [/INST] a1 </s><s>[INST] q2 [/INST]",
        }[name]
    )


# ---------------------------------------------------------------- the command


@pytest.mark.timeout(600)
def test_cli_convert_streams_with_progress_and_refuses_with_the_list(tmp_path: Path) -> None:
    orig = originals.build_original_llava_video_qwen2(tmp_path / "o")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    script = (
        "import sys\nfrom videolmm.cli import main\n"
        "codes = [main(a.split('|')) for a in sys.argv[1:]]\nprint('CODES', codes)\n"
    )
    ok = f"convert|--source|lmms-lab/LLaVA-Video-7B-Qwen2|--input|{orig.checkpoint}|--output|{tmp_path / 'c'}"
    ok += "|--max-shard-size|100KB"
    bad = f"convert|--source|llava_hound|--input|{orig.checkpoint}|--output|{tmp_path / 'd'}"
    proc = subprocess.run(
        [str(VENV_BIN / "python"), "-c", script, ok, bad], env=env, capture_output=True, text=True, timeout=500
    )
    assert "CODES [0, 2]" in proc.stdout, proc.stderr[-3000:]
    summary = json.loads(proc.stdout[proc.stdout.index("{") : proc.stdout.rindex("}") + 1])
    assert summary["family"] == "llava_video_qwen2" and summary["mapped"] == 69
    assert "[1/2] checkpoint: model-00001-of-00002.safetensors" in proc.stderr
    assert "wrote shard" in proc.stderr and "plan: 69 tensors -> 69 parameters" in proc.stderr
    assert "videolmm: error:" in proc.stderr and "is not a llava_hound checkpoint" in proc.stderr
    assert (tmp_path / "c" / MANIFEST_NAME).is_file() and not (tmp_path / "d").exists()
