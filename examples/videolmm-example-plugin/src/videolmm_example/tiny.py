"""A tiny random LLaVA-OneVision checkpoint, written offline (for tests and demos).

Same classes and file layout as ``llava-hf/llava-onevision-qwen2-0.5b-ov-hf``, a few hundred
thousand random parameters: SigLIP vision tower (hidden 32, 2 layers, no head), Qwen2 text model
(hidden 64, 2 layers), and videolmm's deterministic tiny tokenizer. torch and transformers are
imported inside the function.
"""

from __future__ import annotations

import json
from pathlib import Path

#: SigLIP normalisation (the OneVision processors use mean = std = 0.5).
_SIGLIP_MEAN = [0.5, 0.5, 0.5]
_SIGLIP_STD = [0.5, 0.5, 0.5]
_INITIALIZER_RANGE = 0.02

#: (image_size, patch_size) per geometry: 32/8 is a 4x4 grid (4 video tokens per frame); 384/14
#: is the published 27x27 grid (196 per frame).
GEOMETRIES: dict[str, tuple[int, int]] = {"tiny": (32, 8), "published": (384, 14)}

#: ChatML chat template for ``hf_chat``; accepts string content or a list of typed parts
#: (images, then videos, then text, as llava-hf's OneVision template orders them).
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}"
    "{%- for part in message['content'] | selectattr('type', 'equalto', 'image') -%}{{ '<image>\\n' }}{%- endfor -%}"
    "{%- for part in message['content'] | selectattr('type', 'equalto', 'video') -%}{{ '<video>\\n' }}{%- endfor -%}"
    "{%- for part in message['content'] | selectattr('type', 'equalto', 'text') -%}{{ part['text'] }}{%- endfor -%}"
    "{%- endif -%}"
    "{{ '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)

#: File recording how a tiny checkpoint was made (same name as videolmm's own tiny builders).
MANIFEST_NAME = "videolmm_tiny.json"


def build_tiny_llava_onevision(out_dir: str | Path, *, seed: int = 0, geometry: str = "tiny") -> Path:
    """Write a tiny ``LlavaOnevisionForConditionalGeneration`` checkpoint with its processor.

    ``vision_feature_select_strategy="full"`` and ``vision_feature_layer=-1`` as the published
    checkpoints; the processor's ``num_image_tokens`` is ``grid ** 2`` so that it inserts
    ``frames * ceil(grid / 2) ** 2 + 1`` video tokens, exactly what the model produces.

    Args:
        out_dir: directory to write (created if missing; existing files are overwritten).
        seed: seed of the weight initialisation; the same seed gives identical weights.
        geometry: ``"tiny"`` (32 px, patch 8) or ``"published"`` (384 px, patch 14).

    Returns:
        The checkpoint directory, loadable with ``from_pretrained``.

    Raises:
        ValueError: ``geometry`` is unknown.
    """
    if geometry not in GEOMETRIES:
        raise ValueError(f"unknown geometry {geometry!r}; expected one of {sorted(GEOMETRIES)}")
    import torch
    from transformers import (
        GenerationConfig,
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
        Qwen2Config,
        SiglipVisionConfig,
    )
    from transformers.utils import logging as hf_logging
    from videolmm.toy.tiny import build_tokenizer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    image_size, patch_size = GEOMETRIES[geometry]
    grid = image_size // patch_size
    pinpoints = [[image_size, image_size], [image_size, 2 * image_size], [2 * image_size, image_size]]

    tokenizer = build_tokenizer()
    vision = SiglipVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=image_size,
        patch_size=patch_size,
        vision_use_head=False,
    )
    text = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        initializer_range=_INITIALIZER_RANGE,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    config = LlavaOnevisionConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.image_token_id,
        video_token_index=tokenizer.video_token_id,
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        image_grid_pinpoints=pinpoints,
        tie_word_embeddings=False,
    )
    config.initializer_range = _INITIALIZER_RANGE

    torch.manual_seed(seed)
    model = LlavaOnevisionForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a sub-megabyte checkpoint needs no "Writing model shards" bar
    try:
        model.save_pretrained(out)
    finally:
        if bars:
            hf_logging.enable_progress_bar()

    common = {
        "size": {"height": image_size, "width": image_size},
        "do_resize": True,
        "do_rescale": True,
        "do_normalize": True,
        "do_convert_rgb": True,
        "image_mean": _SIGLIP_MEAN,
        "image_std": _SIGLIP_STD,
    }
    processor = LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(**common, image_grid_pinpoints=pinpoints, do_pad=True),
        video_processor=LlavaOnevisionVideoProcessor(**common),
        tokenizer=tokenizer,
        num_image_tokens=grid * grid,
        vision_feature_select_strategy="full",
        chat_template=CHAT_TEMPLATE,
    )
    processor.save_pretrained(out)
    manifest = {"family": "llava_onevision_video", "geometry": geometry, "seed": seed}
    (out / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return out


__all__ = ["CHAT_TEMPLATE", "GEOMETRIES", "MANIFEST_NAME", "build_tiny_llava_onevision"]
