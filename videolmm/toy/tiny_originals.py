"""Tiny checkpoints in the *original* key layouts, to test the converters offline.

Each builder writes what the original code base saves, with the same tensor names and shapes as
its modules define them, at tiny widths:

* :func:`build_original_llava_next_video`: LLaVA-NeXT ``LlavaLlamaForCausalLM`` /
  ``LlavaMistralForCausalLM`` (``model.layers.*``, ``lm_head``,
  ``model.vision_tower.vision_tower.vision_model.*`` (a CLIP ``CLIPVisionModel``),
  ``model.mm_projector.{0,2}``, ``model.image_newline``), a LLaVA config (LM fields + ``mm_*``),
  a Llama-style tokenizer without ``<image>``/``<video>``, and a directory with the CLIP tower's
  ``config.json`` that ``mm_vision_tower`` points to (the real one names a hub id).
* :func:`build_original_llava_video_qwen2`: LLaVA-NeXT ``LlavaQwenForCausalLM`` with a SigLIP
  tower whose last layer and head are gone (as the seed's ``SigLipVisionTower`` leaves it),
  a Qwen-style tokenizer, and the SigLIP ``config.json`` (with the full layer count).
* :func:`build_original_llava_hound`: LLaVA-Hound's ``LlavaLlamaForCausalLM`` (language model and
  projector; optionally the tower copies the seed ignores) and two LanguageBind-style tower
  directories (a CLIP model's ``vision_model`` / ``text_model`` / projections / ``logit_scale``,
  with the ``position_ids`` buffer older transformers saved, in ``pytorch_model.bin``).

The language models also carry the ``rotary_emb.inv_freq`` buffers older transformers saved.
Weights come from the transformers modules' own initialisers under a fixed seed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from videolmm.toy import tiny

__all__ = [
    "OriginalCheckpoint",
    "build_original_llava_hound",
    "build_original_llava_next_video",
    "build_original_llava_video_qwen2",
    "original_tokenizer",
]

_IMAGE, _PATCH = 32, 8
_VISION_HIDDEN = 32
_TEXT_HIDDEN = 64
#: Yi-34B's vocabulary size (LLaVA-NeXT-Video-34B); the converter tells the 34B apart by it.
YI_VOCAB = 64000


@dataclass(frozen=True)
class OriginalCheckpoint:
    """A tiny original checkpoint and the tower directories it refers to.

    Attributes:
        checkpoint: the checkpoint directory (``config.json``, tokenizer, weight shards).
        towers: tower directories by role (``vision``, ``video``, ``image``).
        tensors: every tensor written to the checkpoint and towers, by ``group:key`` name
            (``checkpoint:model.layers.0...``, ``video_tower:vision_model...``).
    """

    checkpoint: Path
    towers: dict[str, Path] = field(default_factory=dict)
    tensors: dict[str, Any] = field(default_factory=dict)


def original_tokenizer(style: str, vocab_size: int | None = None) -> Any:
    """A tokenizer like the originals': no ``<image>`` / ``<video>`` / pad tokens.

    Args:
        style: ``llama`` (``<unk> <s> </s>``, ``<s>`` prepended) or ``qwen``
            (``<|endoftext|> <|im_start|> <|im_end|>``, no BOS, pad ``<|endoftext|>``).
        vocab_size: pad the BPE vocabulary with unused entries to this length (Yi-34B's 64000, so
            that added tokens get Yi's ids); None keeps the trained 384.

    Returns:
        A ``PreTrainedTokenizerFast``.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>"] if style == "llama" else ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=384,
        min_frequency=1,
        show_progress=False,
        special_tokens=[AddedToken(t, normalized=False, special=True) for t in specials],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    corpus = tiny.tokenizer_training_corpus()
    backend.train_from_iterator(corpus, trainer=trainer, length=len(corpus))
    if vocab_size is not None:
        backend = _padded_vocab(backend, vocab_size)
    if style == "llama":
        backend.post_processor = processors.TemplateProcessing(single="<s>:0 $A:0", special_tokens=[("<s>", 1)])
        return PreTrainedTokenizerFast(
            tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>", model_max_length=4096
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>", model_max_length=32768
    )


def _padded_vocab(backend: Any, size: int) -> Any:
    """``backend`` with its BPE vocabulary filled to ``size`` entries no merge produces (ids kept)."""
    from tokenizers import Tokenizer

    data = json.loads(backend.to_str())
    vocab = data["model"]["vocab"]
    if size < len(vocab):
        raise ValueError(f"vocab_size={size} is below the trained vocabulary ({len(vocab)})")
    for i in range(len(vocab), size):
        vocab[f"<unused_{i}>"] = i
    return Tokenizer.from_str(json.dumps(data))


def _init(seed: int) -> None:
    import torch

    torch.manual_seed(seed)


def _state(module: Any, prefix: str = "", dtype: Any = None) -> dict[str, Any]:
    """A module's state dict with a name prefix, detached and contiguous, optionally cast."""
    out = {}
    for key, value in module.state_dict().items():
        tensor = value.detach().clone().contiguous()
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        out[prefix + key] = tensor
    return out


def _rotary_buffers(num_layers: int, head_dim: int, prefix: str = "model.layers") -> dict[str, Any]:
    """``rotary_emb.inv_freq`` buffers as transformers < 4.32 saved them."""
    import torch

    inv = 1.0 / (10000 ** (torch.arange(0, head_dim, 2).float() / head_dim))
    return {f"{prefix}.{i}.self_attn.rotary_emb.inv_freq": inv.clone() for i in range(num_layers)}


def _projector(in_dim: int, out_dim: int, dtype: Any) -> dict[str, Any]:
    from torch import nn

    mlp = nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))
    return _state(mlp, "model.mm_projector.", dtype)


def _legacy_text_config(config: Any, model_type: str, architecture: str) -> dict[str, Any]:
    """A text config as transformers 4.x wrote it (``rope_theta`` / ``rope_scaling``, not
    ``rope_parameters``), relabelled as the LLaVA wrapper's."""
    data = config.to_dict()
    rope = data.pop("rope_parameters", None) or {}
    data["rope_theta"] = rope.get("rope_theta", 10000.0)
    data["rope_scaling"] = None
    for key in ("dtype", "transformers_version", "output_attentions", "output_hidden_states", "return_dict"):
        data.pop(key, None)
    data.update(model_type=model_type, architectures=[architecture], torch_dtype="bfloat16")
    data["transformers_version"] = "4.40.0.dev0"
    return data


def _save_weights(tensors: dict[str, Any], out: Path, fmt: str, shards: int) -> None:
    """Write ``tensors`` in ``shards`` files with an index (``safetensors`` or ``bin``)."""
    import torch
    from safetensors.torch import save_file

    keys = list(tensors)
    per = -(-len(keys) // shards)
    chunks = [keys[i : i + per] for i in range(0, len(keys), per)]
    stem, ext, index = (
        ("model", "safetensors", "model.safetensors.index.json")
        if fmt == "safetensors"
        else ("pytorch_model", "bin", "pytorch_model.bin.index.json")
    )
    weight_map = {}
    total = 0
    for i, chunk in enumerate(chunks, start=1):
        name = f"{stem}-{i:05d}-of-{len(chunks):05d}.{ext}"
        part = {k: tensors[k] for k in chunk}
        if fmt == "safetensors":
            save_file(part, str(out / name), metadata={"format": "pt"})
        else:
            torch.save(part, out / name)
        weight_map.update({k: name for k in chunk})
        total += sum(t.numel() * t.element_size() for t in part.values())
    (out / index).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def _pinpoints() -> list[list[int]]:
    return [[_IMAGE, 2 * _IMAGE], [2 * _IMAGE, _IMAGE], [2 * _IMAGE, 2 * _IMAGE]]


def build_original_llava_next_video(
    out_dir: str | Path, *, variant: str = "vicuna-7b", fmt: str = "safetensors", seed: int = 0
) -> OriginalCheckpoint:
    """A tiny lmms-lab LLaVA-NeXT-Video checkpoint in LLaVA-NeXT's layout.

    Args:
        out_dir: directory to create; the checkpoint goes to ``out_dir/checkpoint``, the CLIP
            tower's config to ``out_dir/clip-vit-tiny``.
        variant: ``vicuna-7b`` (Llama, ``llava_llama``), ``mistral-7b`` (the 7B-32K,
            ``llava_mistral``) or ``yi-34b`` (the 34B / 34B-DPO: ``llava_llama`` with Yi's 64000-entry
            vocabulary, so the added tokens get ids 64000 / 64001).
        fmt: ``safetensors`` (as lmms-lab publishes) or ``bin``.
        seed: weight seed.

    Returns:
        The checkpoint, its tower directory and every tensor written.
    """
    import torch
    from transformers import (
        CLIPConfig,
        CLIPVisionModel,
        LlamaConfig,
        LlamaForCausalLM,
        MistralConfig,
        MistralForCausalLM,
    )

    out = Path(out_dir)
    ckpt, tower = out / "checkpoint", out / "clip-vit-tiny"
    ckpt.mkdir(parents=True, exist_ok=True)
    if variant not in ("vicuna-7b", "mistral-7b", "yi-34b"):
        raise ValueError(f"unknown variant {variant!r}: vicuna-7b, mistral-7b or yi-34b")
    tokenizer = original_tokenizer("llama", vocab_size=YI_VOCAB if variant == "yi-34b" else None)
    mistral = variant == "mistral-7b"
    text_cls, model_cls = (MistralConfig, MistralForCausalLM) if mistral else (LlamaConfig, LlamaForCausalLM)
    text = text_cls(
        vocab_size=len(tokenizer),
        hidden_size=_TEXT_HIDDEN,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2 if mistral else 4,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    clip = CLIPConfig(
        vision_config=tiny.tiny_clip_vision_config(_IMAGE, _PATCH).to_dict(),
        text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4},
    )
    _write_json(tower / "config.json", clip.to_dict())
    _init(seed)
    dtype = torch.bfloat16
    tensors = _state(model_cls(text), dtype=dtype)
    tensors.update(_rotary_buffers(2, _TEXT_HIDDEN // 4))
    # transformers 5's CLIPVisionModel drops the 4.x ``vision_model.`` level; the originals have it.
    vision = _state(CLIPVisionModel(clip.vision_config), "model.vision_tower.vision_tower.vision_model.", dtype)
    grid = _IMAGE // _PATCH
    position_ids = torch.arange(grid * grid + 1)[None]
    vision["model.vision_tower.vision_tower.vision_model.embeddings.position_ids"] = position_ids
    tensors.update(vision)
    tensors.update(_projector(_VISION_HIDDEN, _TEXT_HIDDEN, dtype))
    tensors["model.image_newline"] = torch.randn(_TEXT_HIDDEN).to(dtype)
    _save_weights(tensors, ckpt, fmt, shards=3)

    model_type, architecture = (
        ("llava_mistral", "LlavaMistralForCausalLM") if mistral else ("llava_llama", "LlavaLlamaForCausalLM")
    )
    config = _legacy_text_config(text, model_type, architecture)
    config.update(
        mm_vision_tower=str(tower),
        mm_hidden_size=_VISION_HIDDEN,
        mm_projector_type="mlp2x_gelu",
        mm_vision_select_layer=-2,
        mm_vision_select_feature="patch",
        mm_patch_merge_type="spatial_unpad",
        mm_resampler_type="spatial_pool",
        mm_spatial_pool_mode="average",
        mm_spatial_pool_stride=2,
        mm_spatial_pool_out_channels=_VISION_HIDDEN,
        mm_use_im_start_end=False,
        mm_use_im_patch_token=False,
        image_aspect_ratio="anyres",
        image_grid_pinpoints=_pinpoints(),
        tokenizer_model_max_length=4096,
        tokenizer_padding_side="right",
        use_mm_proj=True,
    )
    _write_json(ckpt / "config.json", config)
    _write_json(
        ckpt / "generation_config.json",
        # Vicuna's own generation_config.json: sampling values without do_sample.
        {
            "bos_token_id": 1,
            "eos_token_id": 2,
            "pad_token_id": 0,
            "temperature": 0.9,
            "top_p": 0.6,
            "max_length": 4096,
        },
    )
    tokenizer.save_pretrained(ckpt)
    return OriginalCheckpoint(ckpt, {"vision": tower}, {f"checkpoint:{k}": v for k, v in tensors.items()})


def build_original_llava_video_qwen2(
    out_dir: str | Path,
    *,
    fmt: str = "safetensors",
    seed: int = 0,
    pool_mode: str | None = "bilinear",
    newline: str | None = "grid",
) -> OriginalCheckpoint:
    """A tiny lmms-lab LLaVA-Video-Qwen2 checkpoint in LLaVA-NeXT's ``llava_qwen`` layout.

    The SigLIP tower config says 3 layers; the checkpoint holds 2 and no head, as the seed's
    ``SigLipVisionTower`` (``del layers[-1:]``, ``head = Identity``) leaves it. The text
    vocabulary is padded beyond the tokenizer (as Qwen2's 152064 rows), so the added tokens fit.

    Args:
        out_dir: directory to create (``checkpoint`` and ``siglip-tiny`` inside).
        fmt: ``safetensors`` or ``bin``.
        seed: weight seed.
        pool_mode: ``mm_spatial_pool_mode`` to write (None leaves the key out).
        newline: ``mm_newline_position`` to write (None leaves the key out).

    Returns:
        The checkpoint, its tower directory and every tensor written.
    """
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM, SiglipConfig, SiglipVisionConfig, SiglipVisionModel

    out = Path(out_dir)
    ckpt, tower = out / "checkpoint", out / "siglip-tiny"
    ckpt.mkdir(parents=True, exist_ok=True)
    tokenizer = original_tokenizer("qwen")
    text = Qwen2Config(
        vocab_size=448,
        hidden_size=_TEXT_HIDDEN,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=32768,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    vision_fields = {
        "hidden_size": _VISION_HIDDEN,
        "intermediate_size": 64,
        "num_attention_heads": 4,
        "image_size": _IMAGE,
        "patch_size": _PATCH,
    }
    siglip = SiglipConfig(
        vision_config={**vision_fields, "num_hidden_layers": 3},
        text_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 4,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "pad_token_id": 1,
        },
    )
    _write_json(tower / "config.json", siglip.to_dict())
    _init(seed)
    dtype = torch.bfloat16
    tensors = _state(Qwen2ForCausalLM(text), dtype=dtype)
    kept = SiglipVisionConfig(**vision_fields, num_hidden_layers=2, vision_use_head=False)
    tensors.update(_state(SiglipVisionModel(kept), "model.vision_tower.vision_tower.vision_model.", dtype))
    tensors.update(_projector(_VISION_HIDDEN, _TEXT_HIDDEN, dtype))
    tensors["model.image_newline"] = torch.randn(_TEXT_HIDDEN).to(dtype)
    _save_weights(tensors, ckpt, fmt, shards=2)

    config = _legacy_text_config(text, "llava_qwen", "LlavaQwenForCausalLM")
    config.update(
        mm_vision_tower=str(tower),
        mm_hidden_size=_VISION_HIDDEN,
        mm_projector_type="mlp2x_gelu",
        mm_vision_select_layer=-2,
        mm_vision_select_feature="patch",
        mm_patch_merge_type="spatial_unpad",
        mm_spatial_pool_stride=2,
        image_aspect_ratio="anyres_max_9",
        image_grid_pinpoints=_pinpoints(),
        add_faster_video=False,
        tokenizer_model_max_length=32768,
        use_mm_proj=True,
    )
    if pool_mode is not None:
        config["mm_spatial_pool_mode"] = pool_mode
    if newline is not None:
        config["mm_newline_position"] = newline
    _write_json(ckpt / "config.json", config)
    tokenizer.save_pretrained(ckpt)
    return OriginalCheckpoint(ckpt, {"vision": tower}, {f"checkpoint:{k}": v for k, v in tensors.items()})


def _languagebind_tower(directory: Path, seed: int, temporal: bool) -> dict[str, Any]:
    """A LanguageBind-style tower directory: CLIP model weights in ``pytorch_model.bin``."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    vision = tiny.tiny_clip_vision_config(_IMAGE, _PATCH).to_dict()
    config = CLIPConfig(
        vision_config=vision,
        text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4},
        projection_dim=32,
    )
    data = config.to_dict()
    data["model_type"] = "LanguageBindVideo"
    data["vision_config"].update(add_time_attn=False, num_frames=8, lora_r=2, lora_alpha=16, lora_dropout=0.1)
    _write_json(directory / "config.json", data)
    _init(seed)
    tensors = _state(CLIPModel(config), dtype=torch.float16)
    grid = _IMAGE // _PATCH
    tensors["vision_model.embeddings.position_ids"] = torch.arange(grid * grid + 1)[None]
    if temporal:
        layer = "vision_model.encoder.layers.0"
        tensors[f"{layer}.temporal_attn.q_proj.weight"] = torch.zeros(_VISION_HIDDEN, _VISION_HIDDEN)
        tensors[f"{layer}.temporal_embedding"] = torch.zeros(1, 8, _VISION_HIDDEN)
    torch.save(tensors, directory / "pytorch_model.bin")
    return tensors


def build_original_llava_hound(
    out_dir: str | Path,
    *,
    fmt: str = "safetensors",
    seed: int = 0,
    temporal: bool = False,
    towers_in_checkpoint: bool = False,
) -> OriginalCheckpoint:
    """A tiny ShareGPTVideo LLaVA-Hound checkpoint with LanguageBind-style tower directories.

    Args:
        out_dir: directory to create (``checkpoint``, ``LanguageBind_Video_merge``,
            ``LanguageBind_Image`` inside).
        fmt: ``safetensors`` (as ShareGPTVideo publishes) or ``bin``.
        seed: weight seed.
        temporal: give the video tower temporal-attention tensors (an ``add_time_attn`` tower).
        towers_in_checkpoint: also store tower copies in the checkpoint (the seed never uses them).

    Returns:
        The checkpoint, its tower directories and every tensor written.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    ckpt, video, image = out / "checkpoint", out / "LanguageBind_Video_merge", out / "LanguageBind_Image"
    for d in (ckpt, video, image):
        d.mkdir(parents=True, exist_ok=True)
    tokenizer = original_tokenizer("llama")
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=_TEXT_HIDDEN,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    video_tensors = _languagebind_tower(video, seed + 1, temporal)
    image_tensors = _languagebind_tower(image, seed + 2, False)
    _init(seed)
    dtype = torch.float16
    tensors = _state(LlamaForCausalLM(text), dtype=dtype)
    tensors.update(_rotary_buffers(2, _TEXT_HIDDEN // 4))
    tensors.update(_projector(_VISION_HIDDEN, _TEXT_HIDDEN, dtype))
    if towers_in_checkpoint:
        for role, source in (("video", video_tensors), ("image", image_tensors)):
            tensors.update(
                {
                    f"model.{role}_tower.{role}_tower.{k.removeprefix('vision_model.')}": v.clone()
                    for k, v in source.items()
                    if k.startswith("vision_model.")
                }
            )
    _save_weights(tensors, ckpt, fmt, shards=4)

    config = _legacy_text_config(text, "llava_llama", "LlavaLlamaForCausalLM")
    config.update(
        mm_video_tower=str(video),
        mm_image_tower=str(image),
        mm_hidden_size=_VISION_HIDDEN,
        mm_projector_type="mlp2x_gelu",
        mm_vision_select_layer=-2,
        mm_vision_select_feature="patch",
        mm_use_im_start_end=False,
        mm_use_im_patch_token=False,
        image_aspect_ratio="pad",
        torch_dtype="float16",
        use_mm_proj=True,
    )
    _write_json(ckpt / "config.json", config)
    tokenizer.save_pretrained(ckpt)
    named = {f"checkpoint:{k}": v for k, v in tensors.items()}
    named.update({f"video_tower:{k}": v for k, v in video_tensors.items()})
    named.update({f"image_tower:{k}": v for k, v in image_tensors.items()})
    return OriginalCheckpoint(ckpt, {"video": video, "image": image}, named)
