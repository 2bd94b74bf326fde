"""``videolmm inspect``: the effective settings of an engine, and what one request becomes.

Everything a user needs to check fidelity by eye: family, sampler and the sampled indices,
template and the rendered prompt, pooling, tokens per frame and in total.
"""

from __future__ import annotations

from typing import Any

from videolmm.types import Request


def describe(engine: Any, request: Request | None = None) -> dict[str, Any]:
    """Effective settings of ``engine`` as a JSON-ready dict.

    Args:
        engine: a :class:`~videolmm.models.engine.Engine` (a model is not needed).
        request: optional (a request, or one already decoded); adds its sampled frames, rendered
            prompt and visual token counts.
    """
    s = engine.settings
    out: dict[str, Any] = {
        "pretrained": s.pretrained,
        "family": s.family,
        "model_class": engine.family.model_class,
        "template": s.template,
        "system_prompt": s.system_prompt if s.system_prompt is not None else engine.template.system,
        "scheduler": engine.scheduler,
        "decoder": s.media.decoder,
        "frame_cache": str(engine.frame_cache.root) if engine.frame_cache is not None else None,
        "sampler": s.media.sampler,
        "frames_sampler": s.media.frames_sampler,
        "sampling": {
            "num_frames": s.media.sampling.num_frames,
            "fps": s.media.sampling.fps,
            "force_sample": s.media.sampling.force_sample,
            "reverse": s.media.sampling.reverse,
        },
        "family_options": dict(s.family_options),
        **engine.family.describe(engine.config),
        "processed_frame_size": list(engine.family.processed_frame_size(engine.processor)),
    }
    h, w = engine.family.processed_frame_size(engine.processor)
    out["visual_tokens_per_frame"] = engine.family.video_tokens_per_frame(engine.config, h, w)
    if request is None:
        out["prompt"] = engine.render_prompt(Request(question="{question}", videos=("video",)))
        return out
    item = engine.decode(request)
    if item.error:
        out["error"] = item.error
        return out
    if item.videos:
        v = item.videos[0]
        out["video"] = {
            "source": v.source,
            "num_source_frames": v.num_source_frames,
            "fps": v.fps,
            "duration": v.duration,
            "sampled_indices": list(v.indices),
            "timestamps": [round(t, 3) for t in v.timestamps],
            "frame_time": v.frame_time,
        }
    batch = engine.prepare([item], item.request.generation)
    out["prompt"] = batch.prompts[0]
    out["visual_tokens_total"] = batch.visual_tokens[0]
    out["prompt_tokens"] = int(batch.inputs["attention_mask"][0].sum())
    return out


__all__ = ["describe"]
