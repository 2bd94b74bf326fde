"""lmms-lab LLaVA-Video-7B/72B-Qwen2 → videolmm's ``LlavaVideoQwen2ForConditionalGeneration``.

The original checkpoints are LLaVA-NeXT's ``LlavaQwenForCausalLM`` (``model_type: llava_qwen``):
the Qwen2 language model's keys, the SigLIP tower under ``model.vision_tower.vision_tower.*``
(the seed deletes SigLIP's last encoder layer and its head before training, so the checkpoint
holds one layer fewer than the tower's own config), the ``mlp2x_gelu`` projector and
``model.image_newline``.

The output keeps OneVision's parameter names with videolmm's config class (``model_type:
llava_video_qwen2``), which adds LLaVA-Video's video path: the pool mode and stride and the
newline position are read from the original config (``mm_spatial_pool_mode``,
``mm_spatial_pool_stride``, ``mm_newline_position``); when a key is absent: ``bilinear``
(LLaVA-NeXT #408), stride 2 (hard-coded at LLaVA-NeXT HEAD) and ``one_token`` (LLaVA-NeXT's
``getattr`` default). ``add_time_instruction`` (into the config) and ``force_sample`` (into the
checkpoint's ``videolmm.json``) are read as the seed's ``video_demo.py`` reads them: from the
config, absent meaning False. The manifest records which. ``<image>`` and ``<video>`` are added as in
transformers' OneVision checkpoints (151646 / 151647 for Qwen2's tokenizer); Qwen2's padded
vocabulary (152064 rows for 7B) holds them without growing.
"""

from __future__ import annotations

import re
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
from videolmm.models.families.originals import is_original_llava_video_qwen2


class LlavaVideoQwen2Layout(SourceLayout):
    """lmms-lab LLaVA-Video-7B/72B-Qwen2 (LLaVA-NeXT ``llava_qwen`` checkpoints)."""

    name = "llava_video_qwen2"
    aliases = (
        "lmms-lab/LLaVA-Video-7B-Qwen2",
        "lmms-lab/LLaVA-Video-72B-Qwen2",
        "lmms-lab/LLaVA-NeXT-Video-7B-Qwen2",
        "lmms-lab/LLaVA-NeXT-Video-72B-Qwen2",
    )
    family = "llava_video_qwen2"
    description = "lmms-lab LLaVA-Video-7B/72B-Qwen2 -> videolmm LlavaVideoQwen2 (OneVision subclass)"

    def detect(self, original: Mapping[str, Any]) -> bool:
        return is_original_llava_video_qwen2(original)

    def prepare(self, original: Mapping[str, Any], options: ConvertOptions, progress: Progress) -> Prepared:
        from videolmm.models.families.llava_video_qwen2.configuration import (
            NEWLINE_POSITIONS,
            POOL_MODES,
            LlavaVideoQwen2Config,
            pooled_side,
        )
        from videolmm.models.families.llava_video_qwen2.modeling import LlavaVideoQwen2ForConditionalGeneration
        from videolmm.models.families.llava_video_qwen2.processing import build_llava_video_qwen2_processor

        require(original, "mm_projector_type", ["mlp2x_gelu"])
        if original.get("add_faster_video"):
            raise ConfigError("config.json add_faster_video=true (SlowFast video tokens) is not supported")
        if "unpad" not in str(original.get("mm_patch_merge_type", "")):
            raise ConfigError(
                f"config.json mm_patch_merge_type={original.get('mm_patch_merge_type')!r}: the model needs "
                "the image_newline parameter of a *_unpad merge type"
            )
        pool_mode = require(original, "mm_spatial_pool_mode", list(POOL_MODES), "bilinear")
        stride = int(original.get("mm_spatial_pool_stride", 2))
        newline = require(original, "mm_newline_position", list(NEWLINE_POSITIONS), "one_token")
        # LLaVA-NeXT's video_demo.py reads both from the model config, getattr default False (the
        # Video-Only checkpoint's card shows no time instruction): read them the same way.
        time_instr = _flag(original, "add_time_instruction")
        force_sample = _flag(original, "force_sample")
        aspect = str(original.get("image_aspect_ratio", "anyres_max_9"))
        if not re.fullmatch(r"anyres_max_\d+", aspect):
            raise ConfigError(f"config.json image_aspect_ratio={aspect!r}: OneVision's image path needs anyres_max_N")
        settings: dict[str, Any] = {
            "spatial_pool_mode": {
                "value": pool_mode,
                "from": _origin(original, "mm_spatial_pool_mode", "videolmm's default (LLaVA-NeXT #408)"),
            },
            "spatial_pool_stride": {
                "value": stride,
                "from": _origin(original, "mm_spatial_pool_stride", "LLaVA-NeXT's hard-coded stride"),
            },
            "mm_newline_position": {
                "value": newline,
                "from": _origin(original, "mm_newline_position", "LLaVA-NeXT's getattr default"),
            },
            "add_time_instruction": {
                "value": time_instr,
                "from": _origin(original, "add_time_instruction", "video_demo.py's getattr default"),
            },
            "force_sample": {
                "value": force_sample,
                "from": _origin(original, "force_sample", "video_demo.py's getattr default"),
            },
        }

        tokenizer = load_tokenizer(options.input)
        added = add_tokens(tokenizer, ("<image>", "<video>"), pad="<|endoftext|>")
        vocab = grown_vocab(int(original["vocab_size"]), len(tokenizer))
        text = text_config(
            original,
            "qwen2",
            vocab_size=vocab,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        vision, where = vision_config(str(original["mm_vision_tower"]), options.vision_tower, "siglip")
        # The seed's SigLipVisionTower deletes the last encoder layer and the head, then uses the
        # output of the remaining ones: layer -1 of a tower one layer shorter, all tokens.
        vision.num_hidden_layers = int(vision.num_hidden_layers) - 1
        vision.vision_use_head = False
        settings["vision_tower"] = {
            "name": original["mm_vision_tower"],
            "config_from": where,
            "layers_used": vision.num_hidden_layers,
            "feature": "last remaining layer, all tokens (the seed drops SigLIP's last layer and head)",
        }
        grid = vision.image_size // vision.patch_size
        pooled_side(grid, stride, pool_mode)  # validates the stride against the grid
        pinpoints = original.get("image_grid_pinpoints") or [[vision.image_size, vision.image_size]]
        config = LlavaVideoQwen2Config(
            vision_config=vision,
            text_config=text,
            image_token_index=added["<image>"],
            video_token_index=added["<video>"],
            vision_feature_select_strategy="full",
            vision_feature_layer=-1,
            image_grid_pinpoints=pinpoints,
            vision_aspect_ratio=aspect,
            spatial_pool_mode=pool_mode,
            spatial_pool_stride=stride,
            mm_newline_position=newline,
            add_time_instruction=time_instr,
            tie_word_embeddings=bool(original.get("tie_word_embeddings", False)),
        )
        template = chat_template("qwen_1_5")
        tokenizer.chat_template = template
        processor = build_llava_video_qwen2_processor(
            tokenizer, vision.image_size, grid * grid, pinpoints, template, config
        )
        rules = llava_next_rules()
        return Prepared(
            family=self.family,
            config=config,
            model_class=LlavaVideoQwen2ForConditionalGeneration,
            processor=processor,
            generation_config=generation_config(options.input, tokenizer),
            sources=(Source("checkpoint", options.input, tuple(weight_files(options.input))),),
            rules=rules,
            row_resizable=("model.language_model.embed_tokens.weight", "lm_head.weight"),
            added_tokens=added,
            original_vocab=int(original["vocab_size"]),
            settings=settings,
            checkpoint_defaults={"force_sample": force_sample},
        )


def _flag(original: Mapping[str, Any], key: str) -> bool:
    """A boolean of the original config; absent is False, as the seed's ``getattr(config, key, None)``."""
    value = original.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ConfigError(f"config.json {key}={value!r}: expected true or false")
    return value


def _origin(original: Mapping[str, Any], key: str, default: str) -> str:
    return "config.json" if key in original else f"{default} (key absent from config.json)"


__all__ = ["LlavaVideoQwen2Layout"]
