"""Video-LLaVA-7B on transformers' VideoLlava classes.

Seed behaviour reproduced (../shared/docs/seed-facts.md §1–2): LanguageBind video tower
(CLIP ViT-L/14 at 224), layer -2, **CLS kept** for video → 257 tokens per frame, 8 frames
``np.linspace(0, N-1, 8, dtype=int)`` with decord, conversation ``llava_v1`` ("curious
human"). Frames are resampled exactly as LanguageBind's transform (/255 → normalise → bilinear
short-side 224 without antialias → centre crop 224; :mod:`videolmm.media.languagebind`), not with
transformers' bicubic antialiased resize. The seed's ``RandomHorizontalFlipVideo(p=0.5)`` at inference is
deliberately not reproduced: it makes the seed's own results non-deterministic (docs/models.md).
"""

from __future__ import annotations

from typing import Any

from videolmm.models.families.base import Family, LoadOptions, import_string, vision_summary
from videolmm.types import MediaSettings, SamplingSpec


class VideoLlavaFamily(Family):
    """The ``video_llava`` family."""

    #: Video features keep the CLS token (transformers' get_video_features takes every
    #: hidden state of the selected layer); LLaVA-Hound overrides this to drop it.
    keep_video_cls: bool = True

    def default_template(self, config: Any) -> str:
        return "llava_v1"

    def video_tokens_per_frame(self, config: Any, height: int, width: int) -> int:
        patch = config.vision_config.patch_size
        return (height // patch) * (width // patch) + (1 if self.keep_video_cls else 0)

    def load_processor(self, pretrained: str, config: Any, load: LoadOptions) -> Any:
        """The checkpoint's processor with LanguageBind's exact video transform installed."""
        processor = super().load_processor(pretrained, config, load)
        processor.video_processor = import_string(f"{__package__}.processing.seed_video_processor")(
            processor.video_processor
        )
        return processor

    def describe(self, config: Any) -> dict[str, Any]:
        return {
            **vision_summary(config),
            "video_resample": "LanguageBind: /255, normalise, bilinear short side, no antialias, crop, no flip",
            "video_cls_token": "kept" if self.keep_video_cls else "dropped",
            "pooling": None,
            "newline": "none",
        }


VIDEO_LLAVA = VideoLlavaFamily(
    name="video_llava",
    description="Video-LLaVA-7B (transformers VideoLlava, CLS kept: 257 tokens/frame)",
    model_class="transformers.VideoLlavaForConditionalGeneration",
    processor_class="videolmm.tokens.SeedTokenizedVideoLlavaProcessor",  # tokenizer_image_token ids
    model_types=("video_llava",),
    media=MediaSettings(decoder="keyframe", sampler="uniform", sampling=SamplingSpec(num_frames=8)),
    lmms_eval_id=None,  # lmms-eval has a built-in `video_llava`; reach ours via `videolmm,family=video_llava`
    tiny_builder="videolmm.toy.tiny:build_tiny_video_llava",
)

__all__ = ["VIDEO_LLAVA", "VideoLlavaFamily"]
