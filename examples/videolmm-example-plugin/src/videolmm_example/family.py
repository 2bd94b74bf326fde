"""The ``llava_onevision_video`` family: LLaVA-OneVision checkpoints on transformers' classes.

``llava-hf/llava-onevision-qwen2-{0.5b,7b,72b}-ov-hf`` load with
``LlavaOnevisionForConditionalGeneration`` and ``LlavaOnevisionProcessor``. For a video the
model (``get_video_features`` / ``apply_pooling``):

1. runs SigLIP on every frame and keeps all patch features of the selected layer (SigLIP has no
   CLS token, so ``vision_feature_select_strategy`` is ``"full"``): a ``grid × grid`` map with
   ``grid = image_size // patch_size`` (384 // 14 = 27 for the published checkpoints);
2. projects them, then resizes the map bilinearly to ``ceil(grid / 2)`` per side (14 × 14 = 196
   tokens per frame for the published checkpoints);
3. appends ONE ``image_newline`` embedding after the last frame of the video.

So a video of T frames is ``T * ceil(grid / 2) ** 2 + 1`` tokens, all read from the config.

Module-level imports stay light; transformers is imported inside methods.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from videolmm.errors import ConfigError
from videolmm.models.families.base import Family, LoadOptions
from videolmm.models.prompts import PromptTemplate
from videolmm.types import MediaSettings, SamplingSpec

logger = logging.getLogger(__name__)

#: ``config.json`` ``model_type`` of the checkpoints this family loads.
MODEL_TYPE = "llava_onevision"

ONEVISION_CHAT = PromptTemplate(
    name="onevision_chat",
    format="<|im_start|>user\n{content}<|im_end|>\n<|im_start|>assistant\n",
    description="LLaVA-OneVision chat turn (ChatML user/assistant, no system message): llava-onevision-qwen2-*-ov-hf",
)


def _grid(config: Any) -> int:
    """Patches per side of the SigLIP feature map the model pools (from the config)."""
    vc = config.vision_config
    return int(vc.image_size) // int(vc.patch_size)


def pooled_side(grid: int) -> int:
    """Side of the feature map after OneVision's bilinear ``ceil(grid / 2)`` resize."""
    if grid < 1:
        raise ConfigError(f"a {grid}x{grid} patch grid cannot be pooled")
    return math.ceil(grid / 2)


class LlavaOnevisionVideoFamily(Family):
    """The ``llava_onevision_video`` family (video path of LLaVA-OneVision)."""

    def default_template(self, config: Any) -> str:
        """``onevision_chat`` for every OneVision checkpoint."""
        return ONEVISION_CHAT.name

    def video_tokens_per_frame(self, config: Any, height: int, width: int) -> int:
        """``ceil(grid / 2) ** 2`` with ``grid = image_size // patch_size`` from the vision config.

        Raises:
            ConfigError: the config drops a patch (``"default"`` selection, meant for CLS
                towers) or the processed frames do not have the size the model pools.
        """
        if config.vision_feature_select_strategy != "full":
            raise ConfigError(
                "LLaVA-OneVision pools the full SigLIP patch grid (no CLS token): vision_feature_select_strategy "
                f"must be 'full', got {config.vision_feature_select_strategy!r}"
            )
        grid = _grid(config)
        patch = int(config.vision_config.patch_size)
        if (height // patch, width // patch) != (grid, grid):
            raise ConfigError(
                f"LLaVA-OneVision pools a {grid}x{grid} patch grid (image_size {config.vision_config.image_size}, "
                f"patch {patch}) but the processed frames are {height}x{width} px"
            )
        side = pooled_side(grid)
        return side * side

    def video_tokens(self, config: Any, num_frames: int, height: int, width: int) -> int:
        """Per-frame tokens × frames, plus the one ``image_newline`` token closing the video."""
        return self.video_tokens_per_frame(config, height, width) * num_frames + 1

    def load_processor(self, pretrained: str, config: Any, load: LoadOptions) -> Any:
        """Load ``LlavaOnevisionProcessor`` and make its token math agree with the config.

        The processor counts video tokens from ``num_image_tokens`` (``grid ** 2``); a
        processor saved with another value is corrected from the config, with a warning.
        """
        processor = super().load_processor(pretrained, config, load)
        want = _grid(config) ** 2
        if processor.num_image_tokens != want:
            logger.warning(
                "%s: processor num_image_tokens=%s disagrees with the config (%s); using the config's value",
                pretrained,
                processor.num_image_tokens,
                want,
            )
            processor.num_image_tokens = want
        processor.vision_feature_select_strategy = config.vision_feature_select_strategy
        return processor

    def describe(self, config: Any) -> dict[str, Any]:
        """Vision tower, feature selection, pooling and newline facts for ``videolmm inspect``."""
        vc = config.vision_config
        grid = _grid(config)
        return {
            "vision_tower": f"{vc.model_type} {vc.image_size}px patch {vc.patch_size} ({grid}×{grid} patches)",
            "vision_feature_layer": config.vision_feature_layer,
            "vision_feature_select_strategy": config.vision_feature_select_strategy,
            "pooling": {
                "mode": "bilinear",
                "where": "after the projector",
                "grid_after_pool": pooled_side(grid),
            },
            "newline": "one image_newline token after the last frame of each video",
            "text_model": getattr(config.text_config, "model_type", ""),
        }


LLAVA_ONEVISION_VIDEO = LlavaOnevisionVideoFamily(
    name="llava_onevision_video",
    description="LLaVA-OneVision (qwen2 0.5b/7b/72b ov-hf) on videos (transformers LlavaOnevision)",
    model_class="transformers.LlavaOnevisionForConditionalGeneration",
    processor_class="transformers.LlavaOnevisionProcessor",
    model_types=(MODEL_TYPE,),
    media=MediaSettings(decoder="decord", sampler="uniform", sampling=SamplingSpec(num_frames=8)),
    lmms_eval_id=None,  # reached through the generic lmms-eval id: --model videolmm
    # `videolmm tiny --family llava_onevision_video` imports and calls this (a string: no import here)
    tiny_builder="videolmm_example.tiny:build_tiny_llava_onevision",
)

__all__ = ["LLAVA_ONEVISION_VIDEO", "LlavaOnevisionVideoFamily", "MODEL_TYPE", "ONEVISION_CHAT", "pooled_side"]
