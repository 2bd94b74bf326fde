"""lmms-lab LLaVA-NeXT-Video 7B / 7B-DPO / 7B-32K / 34B / 34B-DPO → transformers' LlavaNextVideo.

The original checkpoints are LLaVA-NeXT's ``LlavaLlamaForCausalLM`` / ``LlavaMistralForCausalLM``
(``model_type`` ``llava_llama`` / ``llava_mistral``): the language model's keys
(``model.layers.*``, ``lm_head``), the CLIP tower under ``model.vision_tower.vision_tower.*``,
the ``mlp2x_gelu`` projector ``model.mm_projector.{0,2}`` and ``model.image_newline``; the
spatial pool (``mm_spatial_pool_mode`` average, stride 2) has no weights. The mapping and the
choices follow transformers' ``convert_llava_next_video_weights_to_hf.py``:

- ``<video>`` then ``<image>`` are added (ids 32000 / 32001 for Vicuna and Mistral, 64000 /
  64001 for Yi), plus ``<pad>`` when the tokenizer has none; the embeddings grow to a multiple
  of 64 with the mean embedding in the new rows;
- Vicuna (7B, 7B-DPO) gets linear RoPE scaling, factor 2.0, under ``rope_scaling`` (the
  transformers script wrote it flat into ``text_config``, where it is ignored; see
  :mod:`videolmm.models.families.llava_next_video.configuration`);
- the pool mode and stride are read from the original config.

The output is a stock ``LlavaNextVideoForConditionalGeneration`` checkpoint (videolmm's
``llava_next_video`` family loads it, so does plain transformers).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from videolmm.convert.base import (
    ConvertOptions,
    Prepared,
    Source,
    SourceLayout,
    llava_next_rules,
    require,
)
from videolmm.convert.chat_templates import chat_template
from videolmm.convert.common import (
    add_tokens,
    generation_config,
    grown_vocab,
    load_tokenizer,
    text_config,
    vision_config,
)
from videolmm.convert.shards import Progress, weight_files
from videolmm.errors import ConfigError
from videolmm.models.families.base import clip_processor_kwargs
from videolmm.models.families.llava_next_video.configuration import pooled_side
from videolmm.models.families.llava_next_video.family import LLAVA_NEXT_VIDEO
from videolmm.models.families.originals import is_original_llava_next_video

#: Vicuna's linear RoPE factor in transformers' converter (and the seed demo's value at 32 frames).
VICUNA_ROPE_FACTOR = 2.0


def variant(original: Mapping[str, Any]) -> str:
    """``vicuna-7b``, ``mistral-7b`` (7B-32K) or ``yi-34b``, from the original config."""
    if original.get("model_type") == "llava_mistral":
        return "mistral-7b"
    return "yi-34b" if int(original.get("vocab_size", 0)) >= 64000 else "vicuna-7b"


class LlavaNextVideoLayout(SourceLayout):
    """lmms-lab LLaVA-NeXT-Video (LLaVA-NeXT ``llava_llama`` / ``llava_mistral`` checkpoints)."""

    name = "llava_next_video"
    aliases = (
        "lmms-lab/LLaVA-NeXT-Video-7B",
        "lmms-lab/LLaVA-NeXT-Video-7B-DPO",
        "lmms-lab/LLaVA-NeXT-Video-7B-32K",
        "lmms-lab/LLaVA-NeXT-Video-34B",
        "lmms-lab/LLaVA-NeXT-Video-34B-DPO",
    )
    family = "llava_next_video"
    description = "lmms-lab LLaVA-NeXT-Video 7B/7B-DPO/7B-32K/34B/34B-DPO -> transformers LlavaNextVideo"

    def detect(self, original: Mapping[str, Any]) -> bool:
        return is_original_llava_next_video(original)

    def prepare(self, original: Mapping[str, Any], options: ConvertOptions, progress: Progress) -> Prepared:
        from transformers import (
            LlavaNextImageProcessor,
            LlavaNextVideoConfig,
            LlavaNextVideoForConditionalGeneration,
            LlavaNextVideoProcessor,
            LlavaNextVideoVideoProcessor,
        )

        require(original, "mm_projector_type", ["mlp2x_gelu"])
        require(original, "mm_vision_select_feature", ["patch"], "patch")
        pool_mode = require(original, "mm_spatial_pool_mode", ["average", "max"], "average")
        stride = int(original.get("mm_spatial_pool_stride", 2))
        if "unpad" not in str(original.get("mm_patch_merge_type", "")):
            raise ConfigError(
                f"config.json mm_patch_merge_type={original.get('mm_patch_merge_type')!r}: LlavaNextVideo needs "
                "the image_newline parameter of a *_unpad merge type"
            )
        kind = variant(original)
        settings: dict[str, Any] = {"variant": kind, "spatial_pool_mode": pool_mode, "spatial_pool_stride": stride}

        tokenizer = load_tokenizer(options.input)
        added = add_tokens(tokenizer, ("<video>", "<image>"), pad="<pad>")
        vocab = grown_vocab(int(original["vocab_size"]), len(tokenizer))
        overrides: dict[str, Any] = {
            "vocab_size": vocab,
            "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
        }
        rope = _rope(original, kind, options.rope_factor)
        if rope is not None:
            overrides["rope_scaling"] = rope
        settings["rope_scaling"] = rope or original.get("rope_scaling")
        text = text_config(original, "mistral" if kind == "mistral-7b" else "llama", **overrides)

        vision, where = vision_config(str(original["mm_vision_tower"]), options.vision_tower, "clip")
        settings["vision_tower"] = {"name": original["mm_vision_tower"], "config_from": where}
        grid = vision.image_size // vision.patch_size
        side = pooled_side(grid, stride)
        pinpoints = original.get("image_grid_pinpoints") or [[vision.image_size, vision.image_size]]
        config = LlavaNextVideoConfig(
            vision_config=vision,
            text_config=text,
            image_token_index=added["<image>"],
            video_token_index=added["<video>"],
            projector_hidden_act="gelu",
            vision_feature_select_strategy="default",
            vision_feature_layer=int(original.get("mm_vision_select_layer", -2)),
            image_grid_pinpoints=pinpoints,
            spatial_pool_mode=pool_mode,
            spatial_pool_stride=stride,
            image_seq_length=grid * grid,
            video_seq_length=side * side * LLAVA_NEXT_VIDEO.media.sampling.num_frames,
            tie_word_embeddings=bool(original.get("tie_word_embeddings", False)),
        )
        template = LLAVA_NEXT_VIDEO.default_template(config)
        settings["template"] = template
        common = clip_processor_kwargs(vision.image_size)
        tokenizer.chat_template = chat_template(template)
        processor = LlavaNextVideoProcessor(
            video_processor=LlavaNextVideoVideoProcessor(**common),
            image_processor=LlavaNextImageProcessor(**common, image_grid_pinpoints=pinpoints, do_pad=True),
            tokenizer=tokenizer,
            chat_template=tokenizer.chat_template,
            patch_size=vision.patch_size,
            vision_feature_select_strategy="default",
            num_additional_image_tokens=1,
        )
        rules = llava_next_rules()
        return Prepared(
            family=self.family,
            config=config,
            model_class=LlavaNextVideoForConditionalGeneration,
            processor=processor,
            generation_config=generation_config(options.input, tokenizer),
            sources=(Source("checkpoint", options.input, tuple(weight_files(options.input))),),
            rules=rules,
            row_resizable=("model.language_model.embed_tokens.weight", "lm_head.weight"),
            added_tokens=added,
            original_vocab=int(original["vocab_size"]),
            settings=settings,
        )


def _rope(original: Mapping[str, Any], kind: str, factor: float | None) -> dict[str, Any] | None:
    """Vicuna's linear RoPE scaling, unless the original config sets its own or it is turned off."""
    if kind != "vicuna-7b" or original.get("rope_scaling"):
        return None
    factor = VICUNA_ROPE_FACTOR if factor is None else float(factor)
    return {"type": "linear", "factor": factor} if factor > 0 else None


__all__ = ["VICUNA_ROPE_FACTOR", "LlavaNextVideoLayout", "variant"]
