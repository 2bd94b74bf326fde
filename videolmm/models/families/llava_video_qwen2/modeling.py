"""LLaVA-Video (LLaVA-NeXT-Video-7B/72B-Qwen2) on transformers' LlavaOnevision classes.

transformers has no class that runs LLaVA-Video the way its authors did
(../shared/docs/seed-facts.md §1a): ``LlavaOnevisionModel`` pools every video frame with a
hard-coded bilinear ``/2`` and appends *one* newline per video, while LLaVA-Video
(LLaVA-NeXT ``llava_arch.py``: ``encode_multimodals`` → ``get_2dPool`` → ``add_token_per_grid``)
does:

1. SigLIP features of the configured layer (OneVision's ``vision_feature_layer`` /
   ``vision_feature_select_strategy``; the seed's tower drops SigLIP's last layer and uses the
   output of the one before, which is layer ``-1`` of the 26-layer tower transformers builds);
2. the multimodal projector;
3. a 2-D pool **after** the projector, ``spatial_pool_stride`` 2, ``spatial_pool_mode``
   ``bilinear`` (output side ``ceil(grid / stride)``: 27 → 14), ``average`` or ``max``
   (``floor``: 27 → 13); a stride of 1 skips the pool, as the seed's ``stride > 1`` test does;
4. newline embeddings by ``mm_newline_position``: ``grid`` (one after every row of every frame:
   14×14 + 14 = 210 tokens per frame), ``frame`` (one after every frame), ``one_token`` (one
   after the whole video, OneVision's choice) or ``no_token``.

Only the video path differs; images take OneVision's anyres path, as in the seed. The classes
keep OneVision's parameter names, so a converted checkpoint's keys are OneVision's.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.llava_onevision.modeling_llava_onevision import (
    LlavaOnevisionForConditionalGeneration,
    LlavaOnevisionModel,
    LlavaOnevisionPreTrainedModel,
)
from transformers.utils.generic import can_return_tuple, merge_with_config_defaults
from transformers.utils.output_capturing import select_hidden_states

from videolmm.models.families.llava_video_qwen2.configuration import (
    NEWLINE_POSITIONS,
    POOL_MODES,
    LlavaVideoQwen2Config,
    pooled_side,
)


def pool_frames(features: torch.Tensor, grid: int, stride: int, mode: str) -> torch.Tensor:
    """LLaVA-NeXT's ``get_2dPool`` on projected frame features.

    Args:
        features: ``(frames, grid * grid, dim)``.
        grid: patches per side.
        stride: pool stride; 1 returns the features unchanged.
        mode: ``bilinear`` (``F.interpolate`` to ``ceil(grid / stride)``), ``average`` or ``max``.

    Returns:
        ``(frames, side * side, dim)`` with ``side = pooled_side(grid, stride, mode)``.
    """
    if stride <= 1:
        return features
    frames, tokens, dim = features.shape
    if tokens != grid * grid:
        raise ValueError(f"expected {grid}×{grid}={grid * grid} patch features per frame, got {tokens}")
    x = features.view(frames, grid, grid, dim).permute(0, 3, 1, 2).contiguous()
    if mode == "average":
        x = nn.functional.avg_pool2d(x, stride)
    elif mode == "max":
        x = nn.functional.max_pool2d(x, stride)
    elif mode == "bilinear":
        side = pooled_side(grid, stride, mode)
        x = nn.functional.interpolate(x, size=[side, side], mode="bilinear")
    else:
        raise ValueError(f"spatial_pool_mode={mode!r}: expected one of {POOL_MODES}")
    return x.permute(0, 2, 3, 1).reshape(frames, -1, dim)


def add_newlines(features: torch.Tensor, newline: torch.Tensor, position: str) -> torch.Tensor:
    """Insert the ``image_newline`` embedding the way LLaVA-Video does.

    Args:
        features: ``(frames, side * side, dim)`` pooled features of one video.
        newline: ``(dim,)`` the learned newline embedding.
        position: ``grid`` (after every row), ``frame`` (after every frame), ``one_token`` (after
            the video) or ``no_token``.

    Returns:
        ``(tokens, dim)``, the video's embedding sequence in prompt order.
    """
    frames, tokens, dim = features.shape
    nl = newline.to(device=features.device, dtype=features.dtype)
    if position == "grid":
        side = int(round(tokens**0.5))
        if side * side != tokens:
            raise ValueError(f"grid newlines need a square token grid, got {tokens} tokens per frame")
        rows = features.view(frames, side, side, dim)
        rows = torch.cat((rows, nl.expand(frames, side, 1, dim)), dim=2)
        return rows.reshape(-1, dim)
    if position == "frame":
        return torch.cat((features, nl.expand(frames, 1, dim)), dim=1).reshape(-1, dim)
    if position == "one_token":
        return torch.cat((features.reshape(-1, dim), nl[None]), dim=0)
    if position == "no_token":
        return features.reshape(-1, dim)
    raise ValueError(f"mm_newline_position={position!r}: expected one of {NEWLINE_POSITIONS}")


class LlavaVideoQwen2Model(LlavaOnevisionModel):
    """``LlavaOnevisionModel`` with LLaVA-Video's video path (pool after projector, newlines)."""

    config_class = LlavaVideoQwen2Config

    @merge_with_config_defaults
    @can_return_tuple
    @select_hidden_states("vision_feature_layer")
    def get_video_features(
        self,
        pixel_values_videos: torch.Tensor,
        vision_feature_layer: int | list[int] | None = None,
        vision_feature_select_strategy: str | None = None,
        **kwargs: Any,
    ) -> tuple | BaseModelOutputWithPooling:
        """Encode videos: vision tower → projector → 2-D pool → newlines.

        Args:
            pixel_values_videos: ``(batch, frames, channels, height, width)``.
            vision_feature_layer: hidden-state index (or indices, concatenated) to use.
            vision_feature_select_strategy: ``"default"`` drops the first token, ``"full"``
                keeps all (SigLIP has no CLS token: the seed uses ``full``).

        Returns:
            The tower output with ``pooler_output`` of shape ``(batch, video_tokens, hidden)``.
        """
        batch, frames, channels, height, width = pixel_values_videos.shape
        pixels = pixel_values_videos.view(batch * frames, channels, height, width)
        outputs = self.vision_tower(pixels, return_dict=True, **kwargs)
        if isinstance(vision_feature_layer, int):
            selected = outputs.hidden_states[vision_feature_layer]
        else:
            selected = torch.cat([outputs.hidden_states[i] for i in vision_feature_layer], dim=-1)
        if vision_feature_select_strategy == "default":
            selected = selected[:, 1:]
        features = self.multi_modal_projector(selected)
        cfg = self.config
        grid = cfg.vision_config.image_size // cfg.vision_config.patch_size
        features = pool_frames(features, grid, cfg.spatial_pool_stride, cfg.spatial_pool_mode)
        per_video = features.view(batch, frames, features.shape[1], features.shape[2])
        videos = [add_newlines(v, self.image_newline, cfg.mm_newline_position) for v in per_video]
        outputs.pooler_output = torch.stack(videos, dim=0)
        return outputs


class LlavaVideoQwen2ForConditionalGeneration(LlavaOnevisionForConditionalGeneration):
    """LLaVA-Video-7B/72B-Qwen2: ``LlavaOnevisionForConditionalGeneration`` over
    :class:`LlavaVideoQwen2Model`. Parameter names are OneVision's."""

    config_class = LlavaVideoQwen2Config

    def __init__(self, config: LlavaVideoQwen2Config) -> None:
        LlavaOnevisionPreTrainedModel.__init__(self, config)  # skip building OneVision's model twice
        self.model = LlavaVideoQwen2Model(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.post_init()


__all__ = [
    "LlavaVideoQwen2ForConditionalGeneration",
    "LlavaVideoQwen2Model",
    "add_newlines",
    "pool_frames",
]
