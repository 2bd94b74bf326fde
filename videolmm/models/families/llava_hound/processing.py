"""Processor for LLaVA-Hound: VideoLlava's, with the video CLS token not counted.

``VideoLlavaProcessor`` expands ``<video>`` to ``(patches + num_additional_image_tokens) × frames``
(257 per frame at 224/14). LLaVA-Hound drops the CLS token, so a frame is ``patches`` tokens
(256) when ``video_drop_cls`` is set. :func:`build_llava_hound_processor` assembles one with
LanguageBind's transform, for the converter and the tiny checkpoints.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from transformers import VideoLlavaImageProcessor, VideoLlavaProcessor, VideoLlavaVideoProcessor
from transformers.image_utils import PILImageResampling, get_image_size, to_numpy_array

from videolmm.models.families.base import clip_processor_kwargs
from videolmm.tokens import SeedTokenization


class LlavaHoundProcessor(SeedTokenization, VideoLlavaProcessor):
    """``VideoLlavaProcessor`` whose video placeholder count leaves out the CLS token; text tokenized
    around the visual tokens as the seed's ``tokenizer_X_token`` (:mod:`videolmm.tokens`).

    Args:
        image_processor: VideoLlava image processor.
        video_processor: VideoLlava video processor.
        tokenizer: the Vicuna tokenizer with ``<image>`` / ``<video>`` / ``<pad>`` added.
        patch_size: the vision tower's patch size.
        vision_feature_select_strategy: ``"default"`` drops the CLS token of *images*.
        image_token: image placeholder string.
        video_token: video placeholder string.
        chat_template: Jinja chat template.
        num_additional_image_tokens: extra tokens the tower adds per frame (CLIP's CLS: 1).
        video_drop_cls: count ``patches`` (True, the seed) or ``patches + 1`` tokens per frame.
        **kwargs: passed to ``VideoLlavaProcessor``.
    """

    def __init__(
        self,
        image_processor: Any = None,
        video_processor: Any = None,
        tokenizer: Any = None,
        patch_size: int = 14,
        vision_feature_select_strategy: str = "default",
        image_token: str = "<image>",
        video_token: str = "<video>",
        chat_template: str | None = None,
        num_additional_image_tokens: int = 1,
        video_drop_cls: bool = True,
        **kwargs: Any,
    ) -> None:
        # Every argument is spelled out: ProcessorMixin saves exactly the __init__ parameters.
        self.video_drop_cls = video_drop_cls
        super().__init__(
            image_processor=image_processor,
            video_processor=video_processor,
            tokenizer=tokenizer,
            patch_size=patch_size,
            vision_feature_select_strategy=vision_feature_select_strategy,
            image_token=image_token,
            video_token=video_token,
            chat_template=chat_template,
            num_additional_image_tokens=num_additional_image_tokens,
            **kwargs,
        )

    def tokens_per_frame(self, height: int, width: int) -> int:
        """Video tokens of one processed ``height``×``width`` frame."""
        patches = (height // self.patch_size) * (width // self.patch_size)
        return patches if self.video_drop_cls else patches + self.num_additional_image_tokens

    def replace_video_token(self, video_inputs: dict, video_idx: int, **kwargs: Any) -> str:
        """Expand one ``<video>`` into ``frames × tokens_per_frame`` placeholders."""
        video = video_inputs["pixel_values_videos"][video_idx]
        video = np.array(video) if isinstance(video, (list, tuple)) else to_numpy_array(video)
        height, width = get_image_size(video[0])
        return self.video_token * (self.tokens_per_frame(height, width) * int(video.shape[0]))


def build_llava_hound_processor(
    tokenizer: Any, image_size: int, patch_size: int, chat_template: str | None
) -> LlavaHoundProcessor:
    """LLaVA-Hound's processor at ``image_size``: LanguageBind's transform (OpenAI CLIP mean/std,
    short side to ``image_size``, centre crop); video frames are resized bilinearly as
    pytorchvideo's ``ShortSideScale`` does, images bicubically as CLIP's image processor."""
    common = clip_processor_kwargs(image_size)
    return LlavaHoundProcessor(
        image_processor=VideoLlavaImageProcessor(**common, resample=PILImageResampling.BICUBIC),
        video_processor=VideoLlavaVideoProcessor(**common, resample=PILImageResampling.BILINEAR),
        tokenizer=tokenizer,
        chat_template=chat_template,
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        video_drop_cls=True,
    )


__all__ = ["LlavaHoundProcessor", "build_llava_hound_processor"]
