"""LLaVA-NeXT-Video's processor: transformers' ``LlavaNextVideoProcessor`` with ``// 4`` replaced.

transformers' processor expands ``<video>`` to ``num_image_tokens // 4 * frames`` tokens, which is
right for stride 2 only (seed-facts §1a). :class:`PooledLlavaNextVideoProcessor` derives the count
from the configured ``spatial_pool_stride`` (:func:`~.configuration.pooled_side`), so the prompt
always has as many placeholders as the pooled model produces features.
"""

from __future__ import annotations

from typing import Any

from transformers import LlavaNextVideoProcessor
from transformers.image_utils import get_image_size, to_numpy_array

from videolmm.errors import ConfigError
from videolmm.models.families.llava_next_video.configuration import pooled_side
from videolmm.tokens import SeedTokenization


class PooledLlavaNextVideoProcessor(SeedTokenization, LlavaNextVideoProcessor):
    """transformers' processor with ``// 4`` replaced by the configured pool geometry, and the text
    tokenized around the visual tokens as the seed's ``tokenizer_image_token`` (:mod:`videolmm.tokens`)."""

    spatial_pool_stride: int = 2

    def replace_video_token(self, video_inputs: dict | None = None, video_idx: int = 0, **kwargs: Any) -> str:
        video = to_numpy_array(video_inputs["pixel_values_videos"][video_idx])
        height, width = get_image_size(video[0])
        grid_h, grid_w = height // self.patch_size, width // self.patch_size
        if grid_h != grid_w:
            raise ConfigError(f"LlavaNextVideo pools a square patch grid; got {grid_h}×{grid_w} patches")
        side = pooled_side(grid_h, self.spatial_pool_stride)
        return self.video_token * (side * side * video.shape[0])


__all__ = ["PooledLlavaNextVideoProcessor"]
