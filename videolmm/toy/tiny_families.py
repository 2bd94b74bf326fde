"""Deterministic tiny checkpoints of the llava_video_qwen2 and llava_hound families, offline.

Same recipe as :mod:`videolmm.toy.tiny` (a BPE tokenizer trained here, weights from the
models' own initialisers under a fixed seed) for videolmm's own classes:

* :func:`build_tiny_llava_video_qwen2`: SigLIP (no head) + Qwen2, LLaVA-Video's video path.
  ``tiny``: 32 px / patch 8 (4×4 grid → 2×2 bilinear + 2 newlines = 6 tokens per frame);
  ``published``: 384 px / patch 14 as SigLIP so400m (27×27 → 14×14 + 14 = 210 per frame).
* :func:`build_tiny_llava_hound`: CLIP towers + Llama, video CLS dropped. ``tiny``: 32 px /
  patch 8 (16 per frame); ``published``: 224 px / patch 14 as LanguageBind (256 per frame).

torch and transformers are imported inside the functions only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from videolmm.toy import tiny

__all__ = ["build_tiny_llava_hound", "build_tiny_llava_video_qwen2"]


def _qwen2_text_config(tokenizer: Any) -> Any:
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=32768,
        initializer_range=0.02,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )


def _siglip_vision_config(image_size: int, patch_size: int) -> Any:
    from transformers import SiglipVisionConfig

    return SiglipVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=image_size,
        patch_size=patch_size,
        vision_use_head=False,
    )


def build_tiny_llava_video_qwen2(out_dir: str | Path, *, seed: int = 0, geometry: str = "tiny") -> Path:
    """Write a tiny ``LlavaVideoQwen2ForConditionalGeneration`` checkpoint with its processor.

    SigLIP vision tower without head (hidden 32, 2 layers), Qwen2 text model (hidden 64,
    2 layers, 4 heads, 2 KV heads), ``vision_feature_layer=-1`` / ``"full"`` (as LLaVA-Video),
    bilinear pooling with stride 2 after the projector, grid newlines.

    Args:
        out_dir: directory to write (created if missing; existing files are overwritten).
        seed: weight initialisation seed; the same seed gives bit-identical weights.
        geometry: ``"tiny"`` (32 px, patch 8) or ``"published"`` (384 px, patch 14).

    Returns:
        The checkpoint directory, loadable with ``videolmm.load.load_engine``.

    Raises:
        ValueError: unknown ``geometry``.
    """
    tiny.check_geometry(geometry)
    from videolmm.convert.chat_templates import chat_template
    from videolmm.models.families.llava_video_qwen2.configuration import LlavaVideoQwen2Config
    from videolmm.models.families.llava_video_qwen2.modeling import LlavaVideoQwen2ForConditionalGeneration
    from videolmm.models.families.llava_video_qwen2.processing import build_llava_video_qwen2_processor

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    image_size, patch_size = (32, 8) if geometry == "tiny" else (384, 14)
    grid = image_size // patch_size
    pinpoints = [[image_size * h, image_size * w] for h in (1, 2) for w in (1, 2)]

    tokenizer = tiny.build_tokenizer()
    template = chat_template("qwen_1_5")
    tokenizer.chat_template = template
    config = LlavaVideoQwen2Config(
        vision_config=_siglip_vision_config(image_size, patch_size),
        text_config=_qwen2_text_config(tokenizer),
        image_token_index=tokenizer.image_token_id,
        video_token_index=tokenizer.video_token_id,
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        image_grid_pinpoints=pinpoints,
        vision_aspect_ratio="anyres_max_9",
        spatial_pool_mode="bilinear",
        spatial_pool_stride=2,
        mm_newline_position="grid",
        tie_word_embeddings=False,
    )
    config.initializer_range = 0.02
    tiny.save_tiny_model(LlavaVideoQwen2ForConditionalGeneration, config, tokenizer, out, seed)

    processor = build_llava_video_qwen2_processor(tokenizer, image_size, grid * grid, pinpoints, template, config)
    processor.save_pretrained(out)
    tiny.write_tiny_manifest(out, "llava_video_qwen2", geometry, seed)
    return out


def build_tiny_llava_hound(out_dir: str | Path, *, seed: int = 0, geometry: str = "tiny") -> Path:
    """Write a tiny ``LlavaHoundForConditionalGeneration`` checkpoint with its processor.

    CLIP towers (hidden 32, 2 layers) and a Llama text model (hidden 64, 2 layers), layer -2,
    video CLS dropped: 16 tokens per frame at the tiny geometry, 256 at the published one
    (224 px, patch 14, as LanguageBind_Video_merge).

    Args:
        out_dir: directory to write (created if missing; existing files are overwritten).
        seed: weight initialisation seed; the same seed gives bit-identical weights.
        geometry: ``"tiny"`` (32 px, patch 8) or ``"published"`` (224 px, patch 14).

    Returns:
        The checkpoint directory, loadable with ``videolmm.load.load_engine``.

    Raises:
        ValueError: unknown ``geometry``.
    """
    tiny.check_geometry(geometry)
    from videolmm.convert.chat_templates import chat_template
    from videolmm.models.families.llava_hound.configuration import LlavaHoundConfig
    from videolmm.models.families.llava_hound.modeling import LlavaHoundForConditionalGeneration
    from videolmm.models.families.llava_hound.processing import build_llava_hound_processor

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    image_size, patch_size = (32, 8) if geometry == "tiny" else (224, 14)
    patches = (image_size // patch_size) ** 2

    tokenizer = tiny.build_tokenizer()
    template = chat_template("v1")
    tokenizer.chat_template = template
    config = LlavaHoundConfig(
        vision_config=tiny.tiny_clip_vision_config(image_size, patch_size),
        text_config=tiny.tiny_llama_text_config(tokenizer, 4096),
        image_token_index=tokenizer.image_token_id,
        video_token_index=tokenizer.video_token_id,
        projector_hidden_act="gelu",
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        image_seq_length=patches,
        video_seq_length=patches * 8,
        video_drop_cls=True,
        tie_word_embeddings=False,
    )
    config.initializer_range = 0.02
    tiny.save_tiny_model(LlavaHoundForConditionalGeneration, config, tokenizer, out, seed)
    build_llava_hound_processor(tokenizer, image_size, patch_size, template).save_pretrained(out)
    tiny.write_tiny_manifest(out, "llava_hound", geometry, seed)
    return out
