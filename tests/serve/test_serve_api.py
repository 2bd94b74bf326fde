"""The OpenAI routes over real HTTP with the real ``openai`` client: video, image, streaming, models."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import numpy as np
import pytest
from serve_helpers import BROKEN, HOUND, LNV, LNV34B, QWEN2, STATIC, TRAINED, VL, ServeApp, data_url, video_message

QUESTION = "What colour is the moving square?"


def ext(response: Any) -> dict[str, Any]:
    """videolmm's extension object of a chat completion."""
    return response.model_extra["videolmm"]


def uniform(num_source: int, count: int) -> list[int]:
    return [int(i) for i in np.linspace(0, num_source - 1, count, dtype=int)]


def test_health_needs_no_key_and_models_are_listed(serve_app: ServeApp) -> None:
    import httpx

    health = httpx.get(f"{serve_app.base_url}/health", timeout=10).json()
    # BROKEN (no weights) is listed as unavailable once a request has tried to load it
    assert health == {"status": "ok"} or set(health["unavailable"]) == {BROKEN}, health
    client = serve_app.client()
    assert [m.id for m in client.models.list()] == [LNV, VL, TRAINED, QWEN2, HOUND, STATIC, BROKEN, LNV34B]
    card = client.models.retrieve(VL)
    assert (card.id, card.owned_by, card.object) == (VL, "videolmm", "model")


def test_chat_with_a_file_video_uses_the_family_defaults(serve_app: ServeApp) -> None:
    raw = serve_app.client().chat.completions.with_raw_response.create(
        model=LNV, messages=video_message(serve_app.file_url("red_right.mp4")), max_tokens=6
    )
    response = raw.parse()
    assert raw.headers["x-request-id"] and response.id == f"chatcmpl-{raw.headers['x-request-id']}"
    choice = response.choices[0]
    assert isinstance(choice.message.content, str) and choice.message.role == "assistant"
    assert choice.finish_reason in ("stop", "length")
    assert response.usage.completion_tokens <= 6
    info = ext(response)
    # llava_next_video's default: 32 frames, linspace over the clip's 16 frames; 4 pooled tokens each
    assert info["frames"] == [uniform(16, 32)]
    assert info["visual_tokens"] == 32 * 4
    assert response.usage.prompt_tokens > info["visual_tokens"]
    assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens
    assert {"decode", "queue", "preprocess", "generate"} <= set(info["timings"])
    assert info["batch_size"] == 1  # nothing else was in flight


def test_data_url_video_gives_the_same_answer_as_the_file(serve_app: ServeApp) -> None:
    client = serve_app.client()
    by_file = client.chat.completions.create(
        model=LNV, messages=video_message(serve_app.file_url("red_right.mp4")), max_tokens=8
    )
    by_data = client.chat.completions.create(
        model=LNV, messages=video_message(data_url(serve_app.media_root / "red_right.mp4", "video/mp4")), max_tokens=8
    )
    assert by_data.choices[0].message.content == by_file.choices[0].message.content
    assert ext(by_data)["frames"] == ext(by_file)["frames"]
    assert by_data.usage == by_file.usage


@pytest.mark.parametrize("name", ["blue up.mp4", "sub/inside.mp4"])
def test_percent_encoded_paths_and_symlinks_inside_the_root(serve_app: ServeApp, name: str) -> None:
    url = serve_app.file_url(name)
    response = serve_app.client().chat.completions.create(model=LNV, messages=video_message(url), max_tokens=2)
    assert ext(response)["frames"] == [uniform(16, 32)]


@pytest.mark.parametrize("source", ["data", "file"])
def test_image_url(serve_app: ServeApp, source: str) -> None:
    png = serve_app.media_root / "square.png"
    url = data_url(png, "image/png") if source == "data" else serve_app.file_url("square.png")
    messages = [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "Hi"}]}
    ]
    response = serve_app.client().chat.completions.create(model=LNV, messages=messages, max_tokens=3)
    info = ext(response)
    assert info["frames"] == [] and info["visual_tokens"] > 0
    assert response.usage.prompt_tokens > info["visual_tokens"]


def test_text_only_request(serve_app: ServeApp) -> None:
    response = serve_app.client().chat.completions.create(
        model=VL, messages=[{"role": "user", "content": "Say something."}], max_tokens=3
    )
    assert ext(response)["visual_tokens"] == 0 and response.usage.completion_tokens <= 3


def test_streaming_matches_the_plain_response_and_ends_with_usage(serve_app: ServeApp) -> None:
    client = serve_app.client()
    messages = video_message(serve_app.file_url("red_right.mp4"))
    plain = client.chat.completions.create(model=LNV, messages=messages, max_tokens=8)
    chunks = list(
        client.chat.completions.create(
            model=LNV, messages=messages, max_tokens=8, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == [plain.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage == plain.usage
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1


def test_stream_wire_format_without_usage(serve_app: ServeApp) -> None:
    body = {"model": VL, "messages": video_message(serve_app.file_url("red_right.mp4")), "max_tokens": 4}
    with serve_app.http() as http, http.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line]
    assert events[-1] == "data: [DONE]"
    payloads = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
    assert all(p["object"] == "chat.completion.chunk" and "usage" not in p for p in payloads)
    assert payloads[-1]["choices"][0]["finish_reason"] in ("stop", "length")


def test_media_io_kwargs_sets_the_frame_count(serve_app: ServeApp) -> None:
    response = serve_app.client().chat.completions.create(
        model=LNV,
        messages=video_message(serve_app.file_url("red_right.mp4")),
        max_tokens=2,
        extra_body={"media_io_kwargs": {"video": {"num_frames": 4}}},
    )
    assert ext(response)["frames"] == [[0, 5, 10, 15]]
    assert ext(response)["visual_tokens"] == 4 * 4


def test_each_model_is_served_by_its_own_engine(serve_app: ServeApp) -> None:
    client = serve_app.client()
    url = serve_app.file_url("red_right.mp4")
    lnv = client.chat.completions.create(model=LNV, messages=video_message(url), max_tokens=2)
    vl = client.chat.completions.create(model=VL, messages=video_message(url), max_tokens=2)
    assert ext(lnv)["visual_tokens"] == 32 * 4  # LLaVA-NeXT-Video: 32 frames × 4 pooled tokens
    assert ext(vl)["visual_tokens"] == 8 * 17  # Video-LLaVA: 8 frames × (16 patches + CLS)
    assert (lnv.model, vl.model) == (LNV, VL)


def test_generation_parameters(serve_app: ServeApp) -> None:
    client = serve_app.client()
    messages = video_message(serve_app.file_url("red_right.mp4"))
    greedy = client.chat.completions.create(model=LNV, messages=messages, max_completion_tokens=12)
    assert greedy.usage.completion_tokens <= 12
    text = greedy.choices[0].message.content
    if len(text) > 2:  # a stop string taken from the greedy text cuts the answer before it
        stop = text[1:3]
        cut = client.chat.completions.create(model=LNV, messages=messages, max_tokens=12, stop=[stop])
        assert cut.choices[0].message.content == text[: text.find(stop)].strip()
        assert cut.choices[0].finish_reason == "stop"
    sampled = [
        client.chat.completions.create(
            model=LNV, messages=messages, max_tokens=12, temperature=1.0, top_p=0.9, seed=seed
        )
        .choices[0]
        .message.content
        for seed in (7, 7, 8)
    ]
    assert sampled[0] == sampled[1]  # a seed makes sampling reproducible


def test_a_system_message_replaces_the_templates_system_prompt(serve_app: ServeApp) -> None:
    """A judge sends a system prompt: the app takes it (the template's own one gives the same answer)."""
    from videolmm.models.prompts import VICUNA_SYSTEM

    client = serve_app.client()
    messages = video_message(serve_app.file_url("red_right.mp4"))
    plain = client.chat.completions.create(model=LNV, messages=messages, max_tokens=8)
    own = client.chat.completions.create(
        model=LNV, messages=[{"role": "system", "content": VICUNA_SYSTEM}, *messages], max_tokens=8
    )
    assert (own.choices[0].message.content, own.usage.prompt_tokens) == (
        plain.choices[0].message.content,
        plain.usage.prompt_tokens,
    )
    judge = client.chat.completions.create(
        model=LNV,
        messages=[{"role": "system", "content": "You are a strict judge of answers. " * 4}, *messages],
        max_tokens=8,
    )
    assert judge.usage.prompt_tokens > plain.usage.prompt_tokens  # the longer system message is in the prompt


def test_request_id_reaches_every_stage_log(serve_app: ServeApp) -> None:
    rid = f"vlmm-test-{uuid.uuid4().hex}"
    # sharp.mp4 is over the app's inline_decode_max_bytes: ingress → MediaDecoder → model replica
    body = {"model": LNV, "messages": video_message(serve_app.file_url("sharp.mp4")), "max_tokens": 2}
    with serve_app.http(headers={"x-request-id": rid}) as http:
        response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 200 and response.headers["x-request-id"] == rid
    assert response.json()["videolmm"]["request_id"] == rid
    assert response.json()["videolmm"]["decoded_in"] == "media_deployment"
    stages = {"OpenAIIngress": f"rid={rid}", "MediaDecoder": f"rid={rid}", "ModelServer": rid}
    deadline = time.monotonic() + 20
    found: dict[str, bool] = {}
    while time.monotonic() < deadline and len(found) < len(stages):
        logs = serve_app.logs()
        found = {stage: True for stage, needle in stages.items() if any(needle in t for t in logs.get(stage, []))}
        time.sleep(0.5)
    assert set(found) == set(stages), f"request id {rid} missing from the logs of {set(stages) - set(found)}"
