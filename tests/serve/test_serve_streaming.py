"""Token streaming and the continuous scheduler over real HTTP, with the real ``openai`` client.

The app's llava_next_video models run the continuous scheduler (the default): text leaves as it is
generated, a client that goes away cancels its request and frees its slot, and ``STATIC`` serves
the same checkpoint on the static path (``@serve.batch``), answering the same text.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path

from serve_helpers import LNV, STATIC, ServeApp, video_message
from test_serve_load import _scrape, _total

TOKENS = 48


def _stream(serve_app: ServeApp, model: str, max_tokens: int) -> tuple[list, list[float], float]:
    """The chunks of a streamed answer, the seconds at which each arrived, and the total seconds."""
    client = serve_app.client()
    messages = video_message(serve_app.file_url("red_right.mp4"))
    start = time.perf_counter()
    chunks, at = [], []
    for chunk in client.chat.completions.create(
        model=model, messages=messages, max_tokens=max_tokens, stream=True, stream_options={"include_usage": True}
    ):
        chunks.append(chunk)
        at.append(time.perf_counter() - start)
    return chunks, at, time.perf_counter() - start


def test_tokens_stream_as_they_are_generated(serve_app: ServeApp) -> None:
    client = serve_app.client()
    messages = video_message(serve_app.file_url("red_right.mp4"))
    plain = client.chat.completions.create(model=LNV, messages=messages, max_tokens=TOKENS)
    assert plain.usage.completion_tokens == TOKENS and plain.choices[0].finish_reason == "length"
    chunks, at, total = _stream(serve_app, LNV, TOKENS)
    assert chunks[0].choices[0].delta.role == "assistant"
    content = [(t, c.choices[0].delta.content) for t, c in zip(at, chunks, strict=True)
               if c.choices and c.choices[0].delta.content]  # fmt: skip
    assert len(content) >= 12, f"{len(content)} content chunks"
    # the text arrives spread over the generation, not in one burst at its end (prefill is a fixed share
    # of a 48-token answer on this machine, so the first delta's share of the total is not a fixed bound)
    assert content[0][0] < 0.5 * total, f"first text at {content[0][0]:.2f} s of {total:.2f} s"
    assert content[-1][0] - content[0][0] > 0.4 * total, f"text arrived within {content[-1][0] - content[0][0]:.2f} s"
    assert "".join(text for _, text in content) == plain.choices[0].message.content
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
    chunks, _, _ = _stream(serve_app, STATIC, 12)  # the static path streams its whole text at once
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == static.choices[0].message.content and chunks[-1].usage == static.usage


def test_a_refused_stream_is_a_plain_error(serve_app: ServeApp) -> None:
    body = {"model": LNV, "messages": video_message(serve_app.file_url("notes.txt")), "stream": True}
    with serve_app.http() as http:
        response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_media"


def test_a_client_that_goes_away_frees_its_slot(serve_app: ServeApp) -> None:
    rid = f"vlmm-cancel-{uuid.uuid4().hex}"
    body = {"model": LNV, "messages": video_message(serve_app.file_url("red_right.mp4")), "max_tokens": 64,
            "stream": True}  # fmt: skip
    with serve_app.http(headers={"x-request-id": rid}) as http:
        with http.stream("POST", "/v1/chat/completions", json=body) as response:
            assert response.status_code == 200
            seen = 0
            for line in response.iter_lines():
                if line.startswith("data: {") and json.loads(line[6:])["choices"][0]["delta"].get("content"):
                    seen += 1
                if seen >= 2:
                    break  # leave mid-stream: the connection closes here
    start = time.perf_counter()
    after = serve_app.client().chat.completions.create(
        model=LNV, messages=video_message(serve_app.file_url("red_right.mp4")), max_tokens=4
    )
    assert after.choices[0].finish_reason in ("stop", "length")
    assert time.perf_counter() - start < 20
    needles = {
        "ModelServer": re.compile(rf"{rid}.*request cancelled"),
        "OpenAIIngress": re.compile(rf"rid={rid} client went away"),
    }
    deadline, found = time.monotonic() + 20, set()
    while time.monotonic() < deadline and len(found) < len(needles):
        logs = _serve_logs(serve_app.ray_tmp)
        found = {d for d, rx in needles.items() if any(rx.search(t) for t in logs.get(d, []))}
        time.sleep(0.5)
    assert found == set(needles), f"no cancel logged by {set(needles) - found}"
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


def _serve_logs(ray_tmp: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for path in ray_tmp.glob("ray/session_*/logs/serve/replica_videolmm_*.log"):
        deployment = path.name.removeprefix("replica_videolmm_").split("_", 1)[0]
        out.setdefault(deployment, []).append(path.read_text(errors="replace"))
    return out
