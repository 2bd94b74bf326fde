"""ShareGPTVideo LLaVA-Hound Pretrain / SFT / DPO → videolmm's ``LlavaHoundForConditionalGeneration``.

The original checkpoints are LLaVA-Hound's ``LlavaLlamaForCausalLM`` (``model_type:
llava_llama`` with ``mm_video_tower``), in ``model-*.safetensors`` shards: the Vicuna-7B language
model and the ``mlp2x_gelu`` projector. The towers are *not* taken from them: the seed builds
them with ``delay_load=True`` and loads ``mm_video_tower`` (LanguageBind/LanguageBind_Video_merge)
and ``mm_image_tower`` (LanguageBind/LanguageBind_Image) from their own repositories at load time
(``llava/model/builder.py``), so the converter reads the towers from local copies of those
(``--video-tower DIR``, ``--image-tower DIR``: their ``config.json`` and weights) and drops any
tower copies the checkpoint carries. Only the towers' ``vision_model`` is used; the LanguageBind
text encoders and projections are dropped. A tower trained with temporal attention
(``add_time_attn``: ``temporal_*`` tensors) has no VideoLlava equivalent and is refused.

As in transformers' Video-LLaVA conversion, ``<image>``, ``<video>`` and ``<pad>`` are added
(32000 / 32001 / 32002) and the embeddings grow to 32064 rows (mean embedding in the new rows).
``mm_vision_select_feature: patch`` sets ``video_drop_cls`` (256 tokens per frame).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from videolmm.convert.base import (
    ConvertOptions,
    Prepared,
    Source,
    SourceLayout,
    llm_rules,
    projector_rules,
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
from videolmm.convert.plan import ConversionRefused, Rule
from videolmm.convert.shards import Progress, TensorRef, weight_files
from videolmm.errors import ConfigError
from videolmm.models.families.originals import is_original_llava_hound

_TOWER_FIELDS = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "image_size",
    "patch_size",
)
_LANGUAGEBIND_UNUSED = "LanguageBind's text encoder and projections; LLaVA-Hound uses only the vision model"


class LlavaHoundLayout(SourceLayout):
    """ShareGPTVideo LLaVA-Hound (LLaVA-Hound-DPO ``llava_llama`` checkpoints with LanguageBind towers)."""

    name = "llava_hound"
    aliases = ("ShareGPTVideo/LLaVA-Hound-Pretrain", "ShareGPTVideo/LLaVA-Hound-SFT", "ShareGPTVideo/LLaVA-Hound-DPO")
    family = "llava_hound"
    description = "ShareGPTVideo LLaVA-Hound Pretrain/SFT/DPO + LanguageBind towers -> videolmm LlavaHound"

    def detect(self, original: Mapping[str, Any]) -> bool:
        return is_original_llava_hound(original)

    def prepare(self, original: Mapping[str, Any], options: ConvertOptions, progress: Progress) -> Prepared:
        from videolmm.models.families.llava_hound.configuration import LlavaHoundConfig
        from videolmm.models.families.llava_hound.modeling import LlavaHoundForConditionalGeneration
        from videolmm.models.families.llava_hound.processing import build_llava_hound_processor

        require(original, "mm_projector_type", ["mlp2x_gelu"])
        select = require(original, "mm_vision_select_feature", ["patch", "cls_patch"], "patch")
        video_dir = _tower_dir(original, "mm_video_tower", options.video_tower, "--video-tower")
        if "mm_image_tower" in original:
            image_dir = _tower_dir(original, "mm_image_tower", options.image_tower, "--image-tower")
            image_from = str(image_dir)
        else:
            image_dir = video_dir
            image_from = "the video tower (config.json names no mm_image_tower; images are not the seed's input)"
        vision, where = vision_config(str(original["mm_video_tower"]), video_dir, "clip")
        image_vision, _ = vision_config(str(original.get("mm_image_tower", "")), image_dir, "clip")
        _refuse_time_attention(video_dir)
        _refuse_time_attention(image_dir)
        differ = [f for f in _TOWER_FIELDS if getattr(vision, f) != getattr(image_vision, f)]
        if differ:
            raise ConfigError(f"the image and video towers differ in {differ}; VideoLlava shares one vision config")

        tokenizer = load_tokenizer(options.input)
        added = add_tokens(tokenizer, ("<image>", "<video>"), pad="<pad>")
        vocab = grown_vocab(int(original["vocab_size"]), len(tokenizer))
        text = text_config(
            original,
            "llama",
            vocab_size=vocab,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        patches = (vision.image_size // vision.patch_size) ** 2
        drop_cls = select == "patch"
        config = LlavaHoundConfig(
            vision_config=vision,
            text_config=text,
            image_token_index=added["<image>"],
            video_token_index=added["<video>"],
            projector_hidden_act="gelu",
            vision_feature_select_strategy="default" if drop_cls else "full",
            vision_feature_layer=int(original.get("mm_vision_select_layer", -2)),
            image_seq_length=patches,
            video_seq_length=(patches if drop_cls else patches + 1) * 8,
            video_drop_cls=drop_cls,
            tie_word_embeddings=bool(original.get("tie_word_embeddings", False)),
        )
        template = chat_template("v1")
        tokenizer.chat_template = template
        processor = build_llava_hound_processor(tokenizer, vision.image_size, vision.patch_size, template)
        processor.video_drop_cls = drop_cls
        settings = {
            "video_tower": {"name": original["mm_video_tower"], "from": str(video_dir), "config_from": where},
            "image_tower": {"name": original.get("mm_image_tower"), "from": image_from},
            "video_drop_cls": drop_cls,
            "vision_feature_layer": config.vision_feature_layer,
        }
        rules = (
            Rule(r"(video|image)_tower:vision_model\.embeddings\.position_ids", None, "position-id buffer; rebuilt"),
            Rule(r"video_tower:vision_model\.(.+)", r"model.video_tower.\1"),
            Rule(r"image_tower:vision_model\.(.+)", r"model.image_tower.\1"),
            Rule(
                r"(video|image)_tower:(text_model\..+|text_projection\.weight|visual_projection\.weight|logit_scale)",
                None,
                _LANGUAGEBIND_UNUSED,
            ),
            Rule(
                r"checkpoint:model\.(video|image)_tower\..+",
                None,
                "the seed loads its towers from mm_video_tower / mm_image_tower at load time (delay_load), "
                "so the checkpoint's copies are never used",
            ),
            *projector_rules(),
            *llm_rules("model.language_model."),
        )
        return Prepared(
            family=self.family,
            config=config,
            model_class=LlavaHoundForConditionalGeneration,
            processor=processor,
            generation_config=generation_config(options.input, tokenizer),
            sources=(
                Source("checkpoint", options.input, tuple(weight_files(options.input))),
                Source("video_tower", video_dir, tuple(weight_files(video_dir))),
                Source("image_tower", image_dir, tuple(weight_files(image_dir))),
            ),
            rules=rules,
            row_resizable=("model.language_model.embed_tokens.weight", "lm_head.weight"),
            added_tokens=added,
            original_vocab=int(original["vocab_size"]),
            settings=settings,
        )

    def check_refs(self, refs: Sequence[TensorRef]) -> None:
        temporal = [ref.name for ref in refs if ref.group != "checkpoint" and ".temporal_" in ref.key]
        if temporal:
            shown = ", ".join(temporal[:5]) + (f" and {len(temporal) - 5} more" if len(temporal) > 5 else "")
            raise ConversionRefused(
                f"the LanguageBind tower has temporal-attention tensors ({shown}): it was trained with "
                "add_time_attn, which VideoLlava cannot run; use LanguageBind_Video_merge as the seed does"
            )


def _tower_dir(original: Mapping[str, Any], key: str, override: Path | None, flag: str) -> Path:
    """The local copy of a tower: the command-line directory, else the config's value if it is local."""
    if override is not None:
        if not Path(override).is_dir():
            raise ConfigError(f"{flag} {override}: not a directory")
        return Path(override)
    name = str(original.get(key, ""))
    if name and Path(name).is_dir():
        return Path(name)
    raise ConfigError(
        f"config.json {key}={name!r}: the seed loads this tower from its own repository; download it and pass "
        f"{flag} DIR (a directory with its config.json and weights)"
    )


def _refuse_time_attention(tower: Path) -> None:
    cfg = tower / "config.json"
    data = json.loads(cfg.read_text()) if cfg.is_file() else {}
    vision = data.get("vision_config", data)
    if isinstance(vision, Mapping) and vision.get("add_time_attn"):
        raise ConfigError(
            f"{cfg}: add_time_attn=true (LanguageBind temporal attention) has no VideoLlava equivalent; "
            "LLaVA-Hound uses LanguageBind_Video_merge, which has none"
        )


__all__ = ["LlavaHoundLayout"]
