"""``media_resize``: the MediaDecoder sends frames at the model's input size, and the answer is the same.

The model deployment plans each model's resize from its processor (no weights; checked on a probe
clip); the ingress hands it to the MediaDecoder with the job; the model's processor then finds the
frames at its own output size. On the session app: the plans per family, the MediaDecoder's output
with and without the plan (called through its deployment handle), and the trained checkpoint's
answer on a 128-px clip (resized to its 64 px in the MediaDecoder) against the in-process engine.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from serve_helpers import HOUND, LNV, LNV34B, QWEN2, STATIC, TRAINED, VL, ServeApp, video_message

from videolmm.load import load_engine
from videolmm.media.resize import FrameResize
from videolmm.models.batch import DecodedRequest
from videolmm.models.families.base import LoadOptions
from videolmm.serve.jobs import ChatJob, MediaRef
from videolmm.types import GenerationSettings, Request

QUESTION = "What colour is the moving square?"


_LOOP: asyncio.AbstractEventLoop | None = None


def call(deployment: str, method: str, *args: Any) -> Any:
    """One call through a deployment handle, made on one event loop that runs for the rest of the
    process (Ray's throughput-optimized settings bind the handles' router to the caller's loop)."""
    from ray import serve

    global _LOOP
    if _LOOP is None:
        _LOOP = asyncio.new_event_loop()
        threading.Thread(target=_LOOP.run_forever, name="handle-loop", daemon=True).start()

    async def go() -> Any:
        return await getattr(serve.get_deployment_handle(deployment, app_name="videolmm"), method).remote(*args)

    return asyncio.run_coroutine_threadsafe(go(), _LOOP).result(timeout=120)


@pytest.fixture(scope="module")
def resizes(serve_app: ServeApp) -> dict[str, FrameResize | None]:
    return call("ModelServer", "frame_resizes")


def test_each_model_gets_its_processors_resize(resizes: dict[str, FrameResize | None]) -> None:
    for model_id in (LNV, STATIC):  # tiny LLaVA-NeXT-Video: shortest edge 32, crop 32, bicubic
        assert resizes[model_id] == FrameResize("bicubic", shortest_edge=32, crop=(32, 32)), model_id
    assert resizes[LNV34B] == FrameResize("bicubic", shortest_edge=336, crop=(336, 336))  # the 34B's processor
    assert resizes[TRAINED] == FrameResize("bicubic", shortest_edge=64, crop=(64, 64))
    qwen2 = resizes[QWEN2]
    assert qwen2 is not None and qwen2.height == qwen2.width and qwen2.crop is None  # SigLIP: a fixed square
    assert resizes[VL] is None and resizes[HOUND] is None  # LanguageBind's float transform: frames kept whole


def test_media_decoder_resizes_what_the_job_asks(serve_app: ServeApp, resizes: dict[str, FrameResize | None]) -> None:
    ref = MediaRef("video", serve_app.file_url("sharp.mp4"), "messages[0].content[1].video_url.url")
    whole = call("MediaDecoder", "decode", ChatJob("resize-plain", TRAINED, QUESTION, media=(ref,)))
    asked = ChatJob("resize-small", TRAINED, QUESTION, media=(ref,), resize=resizes[TRAINED])
    small = call("MediaDecoder", "decode", asked)
    assert isinstance(whole, DecodedRequest) and isinstance(small, DecodedRequest), (whole, small)
    assert whole.videos[0].array.shape[1:3] == (128, 128)  # the clip's own size
    assert small.videos[0].array.shape[1:3] == (64, 64)  # the trained checkpoint's input size
    assert small.videos[0].indices == whole.videos[0].indices
    assert small.videos[0].array.nbytes * 4 == whole.videos[0].array.nbytes


def test_resized_frames_give_the_in_process_answer(serve_app: ServeApp, trained_llava_next_video: Path) -> None:
    """128-px frames resized to 64 px in the MediaDecoder: the same greedy text as the engine in process."""
    served = serve_app.client().chat.completions.create(
        model=TRAINED, messages=video_message(serve_app.file_url("sharp.mp4"), QUESTION), max_tokens=8, temperature=0
    )
    assert served.model_extra["videolmm"]["decoded_in"] == "media_deployment"
    engine = load_engine(str(trained_llava_next_video), family="llava_next_video", load=LoadOptions(device="cpu"))
    request = Request(
        question=QUESTION, videos=(str(serve_app.media_root / "sharp.mp4"),), generation=GenerationSettings(8)
    )
    (expected,) = engine.generate([request], batch_size=1)
    assert expected.error is None, expected.error
    assert served.choices[0].message.content == expected.text
    assert served.model_extra["videolmm"]["frames"] == [list(expected.frames[0])]
