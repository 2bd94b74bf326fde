"""API details as OpenAI and vLLM have them (issue 17.3), over real HTTP with the official ``openai`` client.

vLLM's ``mm_processor_kwargs`` is honoured (``num_frames``, ``fps``) or refused; a parameter OpenAI
does not have is refused as OpenAI refuses it; validation errors are 400 with OpenAI's error JSON;
``/v1/models`` lists each model's family, default frames and context length (``max_model_len``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest
from serve_helpers import BROKEN, LNV, QWEN2, QWEN2_FRAMES, VL, ServeApp, video_message


def _ask(app: ServeApp, **extra: Any) -> Any:
    return app.client().chat.completions.create(
        model=LNV, messages=video_message(app.file_url("red_right.mp4")), max_tokens=4, temperature=0, **extra
    )


def test_mm_processor_kwargs_num_frames_is_honoured_like_media_io_kwargs(serve_app: ServeApp) -> None:
    by_vllm_name = _ask(serve_app, extra_body={"mm_processor_kwargs": {"num_frames": 4}})
    by_media_io = _ask(serve_app, extra_body={"media_io_kwargs": {"video": {"num_frames": 4}}})
    default = _ask(serve_app)
    frames = by_vllm_name.model_extra["videolmm"]["frames"]
    assert [len(f) for f in frames] == [4]
    assert frames == by_media_io.model_extra["videolmm"]["frames"]
    assert by_vllm_name.choices[0].message.content == by_media_io.choices[0].message.content
    assert len(default.model_extra["videolmm"]["frames"][0]) != 4  # the model's own default differs


@pytest.mark.parametrize(
    ("extra_body", "param", "needle"),
    [
        ({"mm_processor_kwargs": {"do_resize": False}}, "mm_processor_kwargs", "do_resize not supported"),
        ({"mm_processor_kwargs": {"num_frames": 0}}, "mm_processor_kwargs.num_frames", "num_frames"),
        (
            {"mm_processor_kwargs": {"num_frames": 4}, "media_io_kwargs": {"video": {"num_frames": 6}}},
            None,
            "contradicts media_io_kwargs.video.num_frames",
        ),
        ({"mm_processor_kwargs": {"fps": 1e-310}}, "mm_processor_kwargs.fps", "outside 0.01..240"),
        ({"top_k": 5}, "top_k", "Unrecognized request argument supplied: top_k"),
        ({"logit_bias": {"100": 5}}, None, "logit_bias={'100': 5} is not supported"),
        ({"reasoning_effort": "low"}, None, "reasoning_effort='low' is not supported"),
    ],
)
def test_what_cannot_be_honoured_is_a_400_in_openai_s_error_json(
    serve_app: ServeApp, extra_body: dict[str, Any], param: str | None, needle: str, reliability: Any
) -> None:
    with pytest.raises(openai.BadRequestError) as excinfo:
        _ask(serve_app, extra_body=extra_body)
    err = excinfo.value
    assert err.status_code == 400
    body = err.body  # the SDK's parsed {"error": {...}} payload
    assert body["type"] == "invalid_request_error" and needle in body["message"], body
    if param is not None:
        assert body["param"] == param
    reliability("API parity", f"request with {extra_body}", "API", "400 naming the field",
                f"{err.status_code} {body['message'][:120]}")  # fmt: skip


def test_openai_platform_parameters_are_accepted_without_effect(serve_app: ServeApp) -> None:
    plain = _ask(serve_app)
    with_platform = _ask(
        serve_app, user="someone", metadata={"k": "v"}, store=False, service_tier="auto", parallel_tool_calls=False
    )
    assert with_platform.choices[0].message.content == plain.choices[0].message.content


def test_a_validation_error_is_400_not_fastapi_s_422(serve_app: ServeApp) -> None:
    with serve_app.http() as http:
        response = http.post("/v1/chat/completions", json={"model": LNV, "messages": [], "temperature": "hot"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    assert "messages" in error["message"] and "temperature" in error["message"]


def test_responses_parse_as_the_sdk_s_own_models(serve_app: ServeApp) -> None:
    from openai.types.chat import ChatCompletion, ChatCompletionChunk

    with serve_app.http() as http:
        body = {"model": LNV, "messages": video_message(serve_app.file_url("red_right.mp4")), "max_tokens": 4}
        whole = http.post("/v1/chat/completions", json=body).json()
        ChatCompletion.model_validate(whole)
        assert whole["object"] == "chat.completion" and whole["choices"][0]["message"]["role"] == "assistant"
        with http.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as stream:
            lines = [line[6:] for line in stream.iter_lines() if line.startswith("data: ")]
    import json

    chunks = [ChatCompletionChunk.model_validate(json.loads(line)) for line in lines[:-1]]
    assert lines[-1] == "[DONE]" and chunks[-1].choices[0].finish_reason in ("stop", "length")
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == whole["choices"][0]["message"]["content"]


def test_models_list_family_frames_and_context_length_in_vllm_style(
    serve_app: ServeApp, tiny_llava_next_video: Path
) -> None:
    from videolmm.load import load_engine

    cards = {m.id: m for m in serve_app.client().models.list()}
    expected = load_engine(str(tiny_llava_next_video), load_model=False)
    lnv = cards[LNV].model_extra
    assert lnv["family"] == "llava_next_video" and lnv["max_model_len"] == expected.context_length > 0
    assert lnv["num_frames"] == expected.settings.media.sampling.num_frames and lnv["root"]
    assert cards[VL].model_extra["family"] == "video_llava"
    assert cards[QWEN2].model_extra["num_frames"] == QWEN2_FRAMES
    assert cards[BROKEN].model_extra["family"] == "llava_next_video"  # settings read without weights
    single = serve_app.client().models.retrieve(QWEN2)
    assert single.model_extra["family"] == "llava_video_qwen2" and single.model_extra["max_model_len"] > 0


def test_the_34b_layout_answers_32_frames_at_its_seed_defaults(
    serve_app: ServeApp, tiny_llava_next_video_34b: Path, clips: dict[str, Path]
) -> None:
    """LLaVA-NeXT-Video-34B's config (4,096 positions, no RoPE scaling) cannot hold 32 × 144 visual
    tokens; the authors' demo raises the context to 8,192 (``context_policy=demo``), and so does the API."""
    from serve_helpers import LNV34B

    from videolmm.load import load_engine
    from videolmm.models.families.base import LoadOptions
    from videolmm.types import GenerationSettings, Request

    card = serve_app.client().models.retrieve(LNV34B).model_extra
    assert (card["family"], card["num_frames"], card["max_model_len"]) == ("llava_next_video", 32, 8192)
    answer = serve_app.client().chat.completions.create(
        model=LNV34B, messages=video_message(serve_app.file_url("red_right.mp4")), max_tokens=4, temperature=0
    )
    info = answer.model_extra["videolmm"]
    assert len(info["frames"][0]) == 32 and info["visual_tokens"] == 32 * 144
    assert answer.usage.prompt_tokens > 4096  # past the config's own 4,096 positions
    engine = load_engine(str(tiny_llava_next_video_34b), load=LoadOptions(device="cpu"))
    local = engine.generate(
        [
            Request(
                question="What colour is the moving square?",
                videos=(str(serve_app.media_root / "red_right.mp4"),),
                generation=GenerationSettings(max_new_tokens=4),
            )
        ]  # fmt: skip
    )[0]
    assert answer.choices[0].message.content == local.text  # the same answer in process and over HTTP
