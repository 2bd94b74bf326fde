"""Issue 5's families served by name: llava_video_qwen2 and llava_hound answer over HTTP exactly as
the core does in process (same frames, same visual tokens, same prompt tokens, same greedy text).

The prompt-token equality covers what the media deployment must carry across processes: for
llava_video_qwen2, the sampler's ``frame_time`` string that the time instruction is built from.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from serve_helpers import HOUND, QWEN2, QWEN2_FRAMES, ServeApp, video_message

from videolmm.load import load_engine
from videolmm.models.families.base import LoadOptions
from videolmm.types import GenerationSettings, Request

QUESTION = "Which way does the square move?"


@pytest.fixture(scope="module")
def checkpoints(tiny_llava_video_qwen2: Path, tiny_llava_hound: Path) -> dict[str, Path]:
    return {QWEN2: tiny_llava_video_qwen2, HOUND: tiny_llava_hound}


@pytest.mark.parametrize(("model", "family"), [(QWEN2, "llava_video_qwen2"), (HOUND, "llava_hound")])
def test_served_family_matches_the_core_in_process(
    serve_app: ServeApp, checkpoints: dict[str, Path], model: str, family: str
) -> None:
    clip = serve_app.media_root / "red_right.mp4"
    frames = {"num_frames": QWEN2_FRAMES} if model == QWEN2 else {}  # as the serve config sets it
    engine = load_engine(str(checkpoints[model]), family=family, load=LoadOptions(device="cpu"), **frames)
    (expected,) = engine.generate(
        [Request(question=QUESTION, videos=(str(clip),), generation=GenerationSettings(max_new_tokens=8))]
    )
    assert expected.ok, expected.error
    served = serve_app.client().chat.completions.create(
        model=model, messages=video_message(serve_app.file_url("red_right.mp4"), QUESTION), max_tokens=8, temperature=0
    )
    info = served.model_extra["videolmm"]
    assert info["frames"] == [list(expected.frames[0])]
    assert info["visual_tokens"] == expected.usage.visual_tokens > 0
    assert served.usage.prompt_tokens == expected.usage.prompt_tokens
    assert served.choices[0].message.content == expected.text
    if family == "llava_video_qwen2":  # the time instruction is in the prompt both ways
        prompt = engine.render_prompt(Request(question=QUESTION, videos=(str(clip),)), [engine.load_video(str(clip))])
        assert "The video lasts for" in prompt
