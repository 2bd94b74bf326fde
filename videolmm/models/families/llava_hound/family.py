"""LLaVA-Hound (ShareGPTVideo/LLaVA-Hound-Pretrain, -SFT, -DPO) as its authors ran it.

Seed behaviour reproduced (../shared/docs/seed-facts.md §1a, §2; RifleZhang/LLaVA-Hound-DPO):

- Video-LLaVA's architecture (LanguageBind CLIP ViT-L/14 towers at 224 px, layer -2, MLP
  projector, Vicuna-7B) with the video CLS token **dropped**: 16×16 = **256** tokens per frame
  (:mod:`videolmm.models.families.llava_hound.modeling`).
- Frames: the seed extracts JPEGs with ``ffmpeg -vf "scale=336:-1,fps=2"`` and takes
  ``np.linspace(0, n-1, 8, dtype=int)`` of the sorted files. The ``hound`` sampler computes the
  same source frames without running ffmpeg; a directory of frames the seed already extracted
  is read with the ``frames`` decoder and ``sampler="uniform"`` (linspace over the sorted files).
  ``scale=336:-1`` only resizes (to 336 px wide) before the processor's own short-side-224 resize
  and centre crop, so it does not change which frames are used (docs/models.md).
- Prompt: conversation ``v1`` ("A chat between a curious user ...").
"""

from __future__ import annotations

from typing import Any

from videolmm.errors import ConfigError
from videolmm.models.families.base import LoadOptions, load_converted_config
from videolmm.models.families.video_llava.family import VideoLlavaFamily
from videolmm.types import MediaSettings, SamplingSpec

_PACKAGE = "videolmm.models.families.llava_hound"


class LlavaHoundFamily(VideoLlavaFamily):
    """The ``llava_hound`` family: Video-LLaVA's token math with the CLS token dropped."""

    keep_video_cls: bool = False

    def default_template(self, config: Any) -> str:
        return "v1"

    def load_config(self, pretrained: str, load: LoadOptions) -> Any:
        """Load :class:`LlavaHoundConfig` (refuses an unconverted ShareGPTVideo checkpoint by name)."""
        return load_converted_config(
            pretrained,
            load,
            model_type="llava_hound",
            package=_PACKAGE,
            config_class="LlavaHoundConfig",
            convert_hint="--source llava_hound --input {pretrained} --video-tower DIR --image-tower DIR --output OUT",
        )

    def content_extras(self, frames: Any, config: Any = None) -> str | None:
        """No extra text; refuses the one frame source the seed's sampling cannot apply to.

        A directory of frames LLaVA-Hound already extracted at 2 fps must be sampled with
        ``uniform`` (linspace over the sorted files); the ``hound`` sampler would apply ffmpeg's
        ``fps=2`` a second time (the ``frames`` decoder cannot know the extraction rate).

        Raises:
            ConfigError: the first video is a frames directory sampled with ``hound``.
        """
        if getattr(frames, "decoder", "") == "frames" and getattr(frames, "sampler", "") == "hound":
            raise ConfigError(
                f"{frames.source}: a directory of extracted frames is sampled with sampler='uniform' (linspace "
                "over the sorted files, as LLaVA-Hound does); the 'hound' sampler would apply ffmpeg's fps=2 again"
            )
        return None

    def video_tokens_per_frame(self, config: Any, height: int, width: int) -> int:
        patch = config.vision_config.patch_size
        patches = (height // patch) * (width // patch)
        return patches if getattr(config, "video_drop_cls", True) else patches + 1

    def load_processor(self, pretrained: str, config: Any, load: LoadOptions) -> Any:
        processor = super().load_processor(pretrained, config, load)
        processor.video_drop_cls = bool(getattr(config, "video_drop_cls", True))
        return processor

    def describe(self, config: Any) -> dict[str, Any]:
        out = super().describe(config)
        out["video_cls_token"] = "dropped" if getattr(config, "video_drop_cls", True) else "kept"
        out["frames_directory"] = "decoder 'frames' + sampler 'uniform' (linspace over the sorted files)"
        return out


LLAVA_HOUND = LlavaHoundFamily(
    name="llava_hound",
    description="LLaVA-Hound Pretrain/SFT/DPO (VideoLlava subclass, video CLS dropped: 256 tokens/frame)",
    model_class=f"{_PACKAGE}.modeling.LlavaHoundForConditionalGeneration",
    processor_class=f"{_PACKAGE}.processing.LlavaHoundProcessor",
    model_types=("llava_hound",),
    # a directory of frames the seed extracted at 2 fps: linspace over the sorted files, as the seed
    media=MediaSettings(
        decoder="keyframe", sampler="hound", sampling=SamplingSpec(num_frames=8, fps=2.0), frames_sampler="uniform"
    ),
    lmms_eval_id="llava_hound",
    tiny_builder="videolmm.toy.tiny_families:build_tiny_llava_hound",
)

__all__ = ["LLAVA_HOUND", "LlavaHoundFamily"]
