"""LLaVA-Hound on transformers' VideoLlava classes, with the video CLS token dropped.

LLaVA-Hound (ShareGPTVideo/LLaVA-Hound-{Pretrain,SFT,DPO}) is Video-LLaVA's architecture
(LanguageBind video and image towers, CLIP ViT-L/14 at 224 px, layer -2, an MLP projector,
Vicuna-7B) with ``mm_vision_select_feature: "patch"``, which drops the CLS token from *video*
features too: 256 tokens per frame instead of Video-LLaVA's 257
(../shared/docs/seed-facts.md §1a). transformers' ``VideoLlavaModel.get_video_features`` always
keeps the CLS token, so :class:`LlavaHoundModel` drops index 0 of every frame's features when
``video_drop_cls`` is set. The projector works token by token, so dropping after it equals
dropping before it.

Parameter names are VideoLlava's, so a converted checkpoint also loads into the stock class
(which would then keep the CLS token and no longer match the seed).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.video_llava.modeling_video_llava import (
    VideoLlavaForConditionalGeneration,
    VideoLlavaModel,
    VideoLlavaPreTrainedModel,
)

from videolmm.models.families.llava_hound.configuration import LlavaHoundConfig


class LlavaHoundModel(VideoLlavaModel):
    """``VideoLlavaModel`` whose video features drop the CLS token when ``video_drop_cls`` is set."""

    config_class = LlavaHoundConfig

    def get_video_features(
        self,
        pixel_values_videos: torch.Tensor,
        vision_feature_layer: int | list[int] | None = None,
        **kwargs: Any,
    ) -> tuple | BaseModelOutputWithPooling:
        """VideoLlava's video features, without the first (CLS) token of each frame.

        Args:
            pixel_values_videos: ``(batch, frames, channels, height, width)``.
            vision_feature_layer: hidden-state index (or indices) to use; config default if None.
            **kwargs: passed to the parent (``return_dict`` is honoured).

        Returns:
            The tower output; ``pooler_output`` is ``(batch * frames, patches, hidden)``.
        """
        return_dict = kwargs.pop("return_dict", True)
        outputs = super().get_video_features(
            pixel_values_videos, vision_feature_layer=vision_feature_layer, return_dict=True, **kwargs
        )
        if self.config.video_drop_cls:
            outputs.pooler_output = outputs.pooler_output[:, 1:]
        return outputs if return_dict else outputs.to_tuple()


class LlavaHoundForConditionalGeneration(VideoLlavaForConditionalGeneration):
    """LLaVA-Hound: ``VideoLlavaForConditionalGeneration`` over :class:`LlavaHoundModel`."""

    config_class = LlavaHoundConfig

    def __init__(self, config: LlavaHoundConfig) -> None:
        VideoLlavaPreTrainedModel.__init__(self, config)  # skip building VideoLlava's model twice
        self.model = LlavaHoundModel(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.post_init()


__all__ = ["LlavaHoundForConditionalGeneration", "LlavaHoundModel"]
