"""Processor for LLaVA-Video-Qwen2: OneVision's, with LLaVA-Video's video token count.

``LlavaOnevisionProcessor`` expands ``<video>`` to ``frames × ceil(grid/2)² + 1`` tokens (bilinear
``/2`` and one newline per video). LLaVA-Video's count follows the pool stride and mode and the
newline position (:func:`~.configuration.video_token_count`): 210 per frame for SigLIP 384/14
with bilinear stride 2 and grid newlines. :func:`build_llava_video_qwen2_processor` assembles one
with SigLIP's transform, for the converter and the tiny checkpoints.
"""

from __future__ import annotations

import math
from typing import Any

from transformers import LlavaOnevisionImageProcessor, LlavaOnevisionProcessor, LlavaOnevisionVideoProcessor
from transformers.processing_utils import MultiModalData

from videolmm.models.families.llava_video_qwen2.configuration import video_token_count
from videolmm.tokens import SeedTokenization

SIGLIP_MEAN: tuple[float, ...] = (0.5, 0.5, 0.5)
"""SigLIP normalisation mean (LLaVA-NeXT's ``SigLipImageProcessor``)."""

SIGLIP_STD: tuple[float, ...] = (0.5, 0.5, 0.5)
"""SigLIP normalisation std."""


class LlavaVideoQwen2Processor(SeedTokenization, LlavaOnevisionProcessor):
    """``LlavaOnevisionProcessor`` whose video placeholder count matches LLaVA-Video's model; text
    tokenized around the visual tokens as the seed's ``tokenizer_image_token`` (same ids for Qwen2's BPE).

    Args:
        image_processor: OneVision image processor (anyres).
        tokenizer: the Qwen2 tokenizer with ``<image>`` / ``<video>`` added.
        video_processor: OneVision video processor (SigLIP 384×384, mean/std 0.5).
        num_image_tokens: patches per frame (``grid * grid``, 729 for SigLIP 384/14).
        vision_feature_select_strategy: ``"full"`` for SigLIP.
        chat_template: Jinja chat template.
        image_token: image placeholder string.
        video_token: video placeholder string.
        vision_aspect_ratio: OneVision's anyres setting for images (``anyres_max_9``).
        spatial_pool_mode: ``bilinear``, ``average`` or ``max``.
        spatial_pool_stride: pool stride (1 disables the pool).
        mm_newline_position: ``grid``, ``frame``, ``one_token`` or ``no_token``.
        **kwargs: passed to ``LlavaOnevisionProcessor``.
    """

    def __init__(
        self,
        image_processor: Any = None,
        tokenizer: Any = None,
        video_processor: Any = None,
        num_image_tokens: int | None = None,
        vision_feature_select_strategy: str | None = None,
        chat_template: str | None = None,
        image_token: str = "<image>",
        video_token: str = "<video>",
        vision_aspect_ratio: str = "anyres_max_9",
        spatial_pool_mode: str = "bilinear",
        spatial_pool_stride: int = 2,
        mm_newline_position: str = "grid",
        **kwargs: Any,
    ) -> None:
        # Every argument is spelled out: ProcessorMixin saves exactly the __init__ parameters.
        self.spatial_pool_mode = spatial_pool_mode
        self.spatial_pool_stride = spatial_pool_stride
        self.mm_newline_position = mm_newline_position
        super().__init__(
            image_processor=image_processor,
            tokenizer=tokenizer,
            video_processor=video_processor,
            num_image_tokens=num_image_tokens,
            vision_feature_select_strategy=vision_feature_select_strategy,
            chat_template=chat_template,
            image_token=image_token,
            video_token=video_token,
            vision_aspect_ratio=vision_aspect_ratio,
            **kwargs,
        )

    def num_video_tokens(self, num_frames: int) -> int:
        """Placeholder tokens for a video of ``num_frames`` frames."""
        grid = math.isqrt(int(self.num_image_tokens))
        if grid * grid != self.num_image_tokens:
            raise ValueError(f"num_image_tokens={self.num_image_tokens} is not a square patch grid")
        return video_token_count(
            num_frames, grid, int(self.spatial_pool_stride), self.spatial_pool_mode, self.mm_newline_position
        )

    def replace_video_token(self, video_inputs: dict, video_idx: int, **kwargs: Any) -> str:
        """Expand one ``<video>`` into LLaVA-Video's number of placeholders."""
        video = video_inputs["pixel_values_videos"][video_idx]
        num_frames = len(video) if isinstance(video, (list, tuple)) else int(video.shape[0])
        return self.video_token * self.num_video_tokens(num_frames)

    def _get_num_multimodal_tokens(self, image_sizes: Any = None, video_sizes: Any = None, **kwargs: Any) -> Any:
        data = super()._get_num_multimodal_tokens(image_sizes=image_sizes, **kwargs)
        if video_sizes is not None:
            counts = [self.num_video_tokens(int(frames)) for frames, _, _ in video_sizes]
            data = MultiModalData(**{**dict(data), "num_video_tokens": counts})
        return data


def build_llava_video_qwen2_processor(
    tokenizer: Any, image_size: int, num_image_tokens: int, pinpoints: list, chat_template: str | None, config: Any
) -> LlavaVideoQwen2Processor:
    """LLaVA-Video's processor: SigLIP's transform (resize to ``image_size`` square, bicubic, mean and
    std 0.5), OneVision's anyres images, and the video token count of ``config``'s pooling and
    newline settings."""
    common = {
        "size": {"height": image_size, "width": image_size},
        "do_resize": True,
        "do_rescale": True,
        "do_normalize": True,
        "do_convert_rgb": True,
        "image_mean": list(SIGLIP_MEAN),
        "image_std": list(SIGLIP_STD),
    }
    return LlavaVideoQwen2Processor(
        image_processor=LlavaOnevisionImageProcessor(**common, image_grid_pinpoints=pinpoints, do_pad=True),
        video_processor=LlavaOnevisionVideoProcessor(**common),
        tokenizer=tokenizer,
        num_image_tokens=num_image_tokens,
        vision_feature_select_strategy=config.vision_feature_select_strategy,
        vision_aspect_ratio=config.vision_aspect_ratio,
        chat_template=chat_template,
        spatial_pool_mode=config.spatial_pool_mode,
        spatial_pool_stride=config.spatial_pool_stride,
        mm_newline_position=config.mm_newline_position,
    )


__all__ = ["SIGLIP_MEAN", "SIGLIP_STD", "LlavaVideoQwen2Processor", "build_llava_video_qwen2_processor"]
