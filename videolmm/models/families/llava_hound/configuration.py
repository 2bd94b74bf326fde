"""LLaVA-Hound's configuration: VideoLlava's, plus whether video features drop the CLS token.

LLaVA-Hound's ``mm_vision_select_feature: "patch"`` drops the CLS token from *video* features:
``(image_size / patch_size)²`` = 256 tokens per frame at 224/14, where Video-LLaVA keeps 257
(../shared/docs/seed-facts.md §1a).
"""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import VideoLlavaConfig

MODEL_TYPE = "llava_hound"


@strict
class LlavaHoundConfig(VideoLlavaConfig):
    r"""VideoLlava's configuration plus LLaVA-Hound's video feature selection.

    video_drop_cls (`bool`, *optional*, defaults to `True`):
        Drop the CLS token from every frame's video features (the seed's
        `mm_vision_select_feature: "patch"`), giving `(image_size / patch_size)²` tokens per frame.
    """

    model_type = MODEL_TYPE

    video_drop_cls: bool = True


def register_auto_config() -> None:
    """Make ``AutoConfig`` (and the Auto processor classes, which consult it) know ``llava_hound``.

    Idempotent; called by the family when it loads a checkpoint, never at import.
    """
    from transformers import AutoConfig

    AutoConfig.register(MODEL_TYPE, LlavaHoundConfig, exist_ok=True)


__all__ = ["MODEL_TYPE", "LlavaHoundConfig", "register_auto_config"]
