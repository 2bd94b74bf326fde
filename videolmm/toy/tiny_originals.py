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
Weights come from the transformers modules' own initialisers under a fixed seed; the shared
pieces (tokenizer, state dicts, shard writing) are in :mod:`videolmm.toy.original_weights`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from videolmm.toy import tiny
from videolmm.toy.original_weights import (
    legacy_text_config,
    original_tokenizer,
    projector_state,
    rotary_buffers,
    save_weights,
    seed_weights,
    state_dict,
    write_json,
)

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
    write_json(tower / "config.json", clip.to_dict())
    seed_weights(seed)
    dtype = torch.bfloat16
    tensors = state_dict(model_cls(text), dtype=dtype)
    tensors.update(rotary_buffers(2, _TEXT_HIDDEN // 4))
    # transformers 5's CLIPVisionModel drops the 4.x ``vision_model.`` level; the originals have it.
    vision = state_dict(CLIPVisionModel(clip.vision_config), "model.vision_tower.vision_tower.vision_model.", dtype)
    grid = _IMAGE // _PATCH
    position_ids = torch.arange(grid * grid + 1)[None]
    vision["model.vision_tower.vision_tower.vision_model.embeddings.position_ids"] = position_ids
    tensors.update(vision)
    tensors.update(projector_state(_VISION_HIDDEN, _TEXT_HIDDEN, dtype))
    tensors["model.image_newline"] = torch.randn(_TEXT_HIDDEN).to(dtype)
    save_weights(tensors, ckpt, fmt, shards=3)

    model_type, architecture = (
        ("llava_mistral", "LlavaMistralForCausalLM") if mistral else ("llava_llama", "LlavaLlamaForCausalLM")
    )
    config = legacy_text_config(text, model_type, architecture)
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
    write_json(ckpt / "config.json", config)
    write_json(
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
    add_time_instruction: bool | None = True,
    force_sample: bool | None = True,
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
        add_time_instruction: ``add_time_instruction`` to write (None leaves the key out).
        force_sample: ``force_sample`` to write (None leaves the key out).

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
    write_json(tower / "config.json", siglip.to_dict())
    seed_weights(seed)
    dtype = torch.bfloat16
    tensors = state_dict(Qwen2ForCausalLM(text), dtype=dtype)
    kept = SiglipVisionConfig(**vision_fields, num_hidden_layers=2, vision_use_head=False)
    tensors.update(state_dict(SiglipVisionModel(kept), "model.vision_tower.vision_tower.vision_model.", dtype))
    tensors.update(projector_state(_VISION_HIDDEN, _TEXT_HIDDEN, dtype))
    tensors["model.image_newline"] = torch.randn(_TEXT_HIDDEN).to(dtype)
    save_weights(tensors, ckpt, fmt, shards=2)

    config = legacy_text_config(text, "llava_qwen", "LlavaQwenForCausalLM")
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
    for key, value in (("add_time_instruction", add_time_instruction), ("force_sample", force_sample)):
        if value is not None:
            config[key] = value
    write_json(ckpt / "config.json", config)
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
    write_json(directory / "config.json", data)
    seed_weights(seed)
    tensors = state_dict(CLIPModel(config), dtype=torch.float16)
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
    seed_weights(seed)
    dtype = torch.float16
    tensors = state_dict(LlamaForCausalLM(text), dtype=dtype)
    tensors.update(rotary_buffers(2, _TEXT_HIDDEN // 4))
    tensors.update(projector_state(_VISION_HIDDEN, _TEXT_HIDDEN, dtype))
    if towers_in_checkpoint:
        for role, source in (("video", video_tensors), ("image", image_tensors)):
            tensors.update(
                {
                    f"model.{role}_tower.{role}_tower.{k.removeprefix('vision_model.')}": v.clone()
                    for k, v in source.items()
                    if k.startswith("vision_model.")
                }
            )
    save_weights(tensors, ckpt, fmt, shards=4)

    config = legacy_text_config(text, "llava_llama", "LlavaLlamaForCausalLM")
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
    write_json(ckpt / "config.json", config)
    tokenizer.save_pretrained(ckpt)
    named = {f"checkpoint:{k}": v for k, v in tensors.items()}
    named.update({f"video_tower:{k}": v for k, v in video_tensors.items()})
    named.update({f"image_tower:{k}": v for k, v in image_tensors.items()})
    return OriginalCheckpoint(ckpt, {"video": video, "image": image}, named)
