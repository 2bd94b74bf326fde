"""Token streaming and the continuous scheduler over real HTTP, with the real ``openai`` client.

The app's llava_next_video models run the continuous scheduler (the default): text leaves as it is
generated, a client that goes away cancels its request and frees its slot, and ``STATIC`` serves
the same checkpoint on the static path (``@serve.batch``), answering the same text.
"""

from __future__ import annotations

import re
import time
import uuid

from serve_helpers import LNV, STATIC, ServeApp, leave_mid_stream, video_message
from test_serve_load import _scrape, _total

TOKENS = 48


def _stream(serve_app: ServeApp, model: str, max_tokens: int, rid: str | None = None) -> list:
    """The chunks of a streamed answer."""
    client = serve_app.client()
    messages = video_message(serve_app.file_url("red_right.mp4"))
    headers = {"x-request-id": rid} if rid else None
    return list(
        client.chat.completions.create(
            model=model,
            messages=messages,
            max_tokens=max_tokens,
            stream=True,
            stream_options={"include_usage": True},
            extra_headers=headers,
        )
    )


def test_tokens_stream_as_they_are_generated(serve_app: ServeApp) -> None:
    client = serve_app.client()
    messages = video_message(serve_app.file_url("red_right.mp4"))
    plain = client.chat.completions.create(model=LNV, messages=messages, max_tokens=TOKENS)
    assert plain.usage.completion_tokens == TOKENS and plain.choices[0].finish_reason == "length"
    rid = f"vlmm-stream-{uuid.uuid4().hex}"
    chunks = _stream(serve_app, LNV, TOKENS, rid)
    assert chunks[0].choices[0].delta.role == "assistant"
    content = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    # each piece the model replica sent as it was generated reaches the client as its own event (its
    # log counts them); that they leave before the answer ends is shown causally by the cancel test below
    logged = re.compile(rf"{rid}.*generated {TOKENS} tokens.* (\d+) chunks")
    found = serve_app.wait_for_log("ModelServer", {"done": logged})
    assert found, f"the model replica did not log {rid}"
    pieces = int(found[1].group(1))
    assert len(content) == pieces > 1, (len(content), pieces)
    assert "".join(content) == plain.choices[0].message.content
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["length"]
    assert chunks[-1].choices == [] and chunks[-1].usage == plain.usage  # include_usage: the last chunk
    assert all(c.usage is None for c in chunks[:-1])


def test_static_and_continuous_answer_the_same(serve_app: ServeApp) -> None:
    client = serve_app.client()
    messages = video_message(serve_app.file_url("red_right.mp4"))
    continuous = client.chat.completions.create(model=LNV, messages=messages, max_tokens=12)
    static = client.chat.completions.create(model=STATIC, messages=messages, max_tokens=12)
    assert static.choices[0].message.content == continuous.choices[0].message.content
    assert static.usage == continuous.usage
    chunks = _stream(serve_app, STATIC, 12)  # the static path streams its whole text at once
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == static.choices[0].message.content and chunks[-1].usage == static.usage


def test_a_refused_stream_is_a_plain_error(serve_app: ServeApp) -> None:
    body = {"model": LNV, "messages": video_message(serve_app.file_url("notes.txt")), "stream": True}
    with serve_app.http() as http:
        response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_media"


def test_a_client_that_goes_away_frees_its_slot(serve_app: ServeApp) -> None:
    # the model replica logs the cancel: the first text reached the client while the answer was being generated
    rid = leave_mid_stream(serve_app)
    start = time.perf_counter()
    after = serve_app.client().chat.completions.create(
        model=LNV, messages=video_message(serve_app.file_url("red_right.mp4")), max_tokens=4
    )
    assert after.choices[0].finish_reason in ("stop", "length")
    assert time.perf_counter() - start < 20
    gone = serve_app.wait_for_log("OpenAIIngress", {"gone": re.compile(rf"rid={rid} client went away")})
    assert gone, f"the ingress did not log {rid} as gone"
    # the cancel is counted, and the running-requests gauge is back to 0 (Ray exports every few seconds: an
    # export taken while the request after it ran still says 1, so wait for a later one)
    deadline, text = time.monotonic() + 40, ""
    while time.monotonic() < deadline:
        text = _scrape(serve_app.metrics_port)
        cancelled = _total(text, "ray_videolmm_cancelled_total", model=LNV) >= 1
        if cancelled and "ray_videolmm_running_requests{" in text:
            if _total(text, "ray_videolmm_running_requests", model=LNV) == 0:
                break
        time.sleep(2)
    assert _total(text, "ray_videolmm_cancelled_total", model=LNV) >= 1
    assert _total(text, "ray_videolmm_running_requests", model=LNV) == 0
