"""Every limit and refusal over real HTTP: the right status, OpenAI error JSON naming the reason, and the
next valid request still succeeds. Also backpressure (503 with Retry-After) under a burst."""

from __future__ import annotations

import asyncio
import base64
import os
from typing import Any

import httpx
import pytest
from serve_helpers import LNV, TEST_LIMITS, ServeApp, video_message


def body(app: ServeApp, **changes: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"model": LNV, "messages": video_message(app.file_url("red_right.mp4")), "max_tokens": 2}
    out.update(changes)
    return out


def with_video(app: ServeApp, url: str, **changes: Any) -> dict[str, Any]:
    return body(app, messages=video_message(url), **changes)


def assert_error(response: httpx.Response, status: int, code: str | None, *needles: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    if code is not None:
        assert error["code"] == code, error
    for needle in needles:
        assert needle in error["message"], error
    assert response.headers.get("x-request-id")


def assert_still_serving(app: ServeApp) -> None:
    with app.http() as http:
        response = http.post("/v1/chat/completions", json=body(app))
    assert response.status_code == 200, response.text


def _cases(app: ServeApp) -> dict[str, tuple[dict[str, Any] | bytes, int, str | None, tuple[str, ...]]]:
    root = app.media_root
    random_b64 = base64.b64encode(os.urandom(TEST_LIMITS["max_data_url_bytes"] + 4096)).decode()
    three = video_message(app.file_url("red_right.mp4"))
    three[0]["content"] = [three[0]["content"][0]] * 3 + [three[0]["content"][1]]
    no = "forbidden"
    return {
        # 400: refused sources and unsupported requests
        "outside_root": (with_video(app, "file:///etc/hostname"), 400, no, ("outside the configured media roots",)),
        "traversal": (with_video(app, f"file://{root}/../../../etc/hostname"), 400, "forbidden", ("outside",)),
        "symlink_escape": (with_video(app, app.file_url("escape.mp4")), 400, "forbidden", ("outside",)),
        "missing_file": (with_video(app, app.file_url("nope.mp4")), 400, None, ("no such file",)),
        "not_a_video": (with_video(app, app.file_url("notes.txt")), 400, "invalid_media", ("notes.txt",)),
        "file_url_host": (with_video(app, f"file://otherhost{root}/red_right.mp4"), 400, None, ("host",)),
        "bad_scheme": (with_video(app, "ftp://example.com/a.mp4"), 400, None, ("unsupported URL scheme",)),
        "loopback_host": (with_video(app, f"{app.base_url}/health"), 400, "forbidden", ("non-public",)),
        "localhost_name": (with_video(app, "http://localhost:8080/a.mp4"), 400, "forbidden", ("non-public",)),
        "metadata_ip": (with_video(app, "http://169.254.169.254/latest/meta-data/"), 400, no, ("non-public",)),
        "host_not_listed": (with_video(app, "https://example.com/a.mp4"), 400, "forbidden", ("allow-list",)),
        "unresolvable": (with_video(app, "http://unresolvable.invalid/a.mp4"), 400, None, ("resolve",)),
        "data_not_base64": (with_video(app, "data:video/mp4;base64,@@@@"), 400, None, ("base64",)),
        "assistant_message": (
            body(app, messages=[*video_message(app.file_url("red_right.mp4")), {"role": "assistant", "content": "x"}]),
            400, "invalid_conversation", ("messages[1]", "ends with an assistant message"),
        ),
        "invalid_json": (b"{not json", 400, "invalid_json", ("JSON",)),
        # 404
        "unknown_model": (body(app, model="gpt-4o"), 404, "model_not_found", ("gpt-4o",)),
        # 413: sizes
        "body_too_large": (body(app, padding="x" * TEST_LIMITS["max_request_bytes"]), 413, "too_large", ("body",)),
        "data_url_too_large": (with_video(app, f"data:video/mp4;base64,{random_b64}"), 413, None, ("data URL",)),
        "file_too_large": (with_video(app, app.file_url("big.mp4")), 413, "too_large", ("big.mp4",)),
        "too_long": (with_video(app, app.file_url("long.mp4")), 413, "too_large", ("lasts 5.0 s",)),
        "too_many_pixels": (with_video(app, app.file_url("wide.mp4")), 413, "too_large", ("160x160",)),
        # 400: counts and values
        "too_many_frames": (
            body(app, media_io_kwargs={"video": {"num_frames": TEST_LIMITS["max_frames"] + 1}}),
            400, None, ("num_frames",),
        ),
        "too_many_tokens": (body(app, max_tokens=TEST_LIMITS["max_tokens"] + 1), 400, None, ("max_tokens",)),
        "too_many_videos": (body(app, messages=three), 400, None, ("3 videos",)),
        "n_above_one": (body(app, n=2), 400, None, ("n=2",)),
        "bad_type": (body(app, temperature="hot"), 400, None, ("temperature",)),
        "unknown_media_kwarg": (body(app, media_io_kwargs={"video": {"frames": 4}}), 400, None, ("frames",)),
        "unknown_part": (
            body(app, messages=[{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]),
            400, None, ("messages",),
        ),
    }  # fmt: skip


CASES = [
    "outside_root", "traversal", "symlink_escape", "missing_file", "not_a_video", "file_url_host", "bad_scheme",
    "loopback_host", "localhost_name", "metadata_ip", "host_not_listed", "unresolvable", "data_not_base64",
    "assistant_message", "invalid_json", "unknown_model", "body_too_large", "data_url_too_large", "file_too_large",
    "too_long", "too_many_pixels", "too_many_frames", "too_many_tokens", "too_many_videos", "n_above_one", "bad_type",
    "unknown_media_kwarg", "unknown_part",
]  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_limit_gives_its_error_then_the_next_request_succeeds(serve_app: ServeApp, case: str) -> None:
    cases = _cases(serve_app)
    assert sorted(cases) == sorted(CASES)  # every defined case is parametrized
    payload, status, code, needles = cases[case]
    with serve_app.http() as http:
        if isinstance(payload, bytes):
            response = http.post("/v1/chat/completions", content=payload, headers={"content-type": "application/json"})
        else:
            response = http.post("/v1/chat/completions", json=payload)
    assert_error(response, status, code, *needles)
    assert_still_serving(serve_app)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}])
def test_api_key_is_required_on_every_route_but_health(serve_app: ServeApp, headers: dict[str, str]) -> None:
    with httpx.Client(base_url=serve_app.base_url, headers=headers, timeout=30) as http:
        assert_error(http.get("/v1/models"), 401, "invalid_api_key", "API key")
        assert_error(http.get(f"/v1/models/{LNV}"), 401, "invalid_api_key")
        assert_error(http.post("/v1/chat/completions", json=body(serve_app)), 401, "invalid_api_key")
        assert http.get("/health").status_code == 200
    assert_still_serving(serve_app)


def test_unknown_route_and_model_card(serve_app: ServeApp) -> None:
    with serve_app.http() as http:
        assert_error(http.get("/v1/nothing"), 404, "not_found")
        assert_error(http.get("/v1/models/gpt-4o"), 404, "model_not_found", "gpt-4o")


def test_openai_client_raises_typed_errors(serve_app: ServeApp) -> None:
    import openai

    client = serve_app.client()
    with pytest.raises(openai.NotFoundError) as excinfo:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert excinfo.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError, match="outside the configured media roots"):
        client.chat.completions.create(model=LNV, messages=video_message("file:///etc/hostname"))
    with pytest.raises(openai.AuthenticationError):
        serve_app.client(api_key="wrong").models.list()


async def _burst(app: ServeApp, n: int) -> list[httpx.Response]:
    headers = {"Authorization": f"Bearer {app.api_key}"}
    limits = httpx.Limits(max_connections=n)
    async with httpx.AsyncClient(base_url=app.base_url, headers=headers, timeout=120, limits=limits) as http:
        payload = body(app, max_tokens=TEST_LIMITS["max_tokens"])
        return list(await asyncio.gather(*(http.post("/v1/chat/completions", json=payload) for _ in range(n))))


def test_overload_is_answered_503_with_retry_after(serve_app: ServeApp) -> None:
    """More simultaneous requests than the media and model queues hold: the excess is refused at once."""
    statuses: list[int] = []
    for _attempt in range(3):  # bounded: the queues are far smaller than the burst
        responses = asyncio.run(_burst(serve_app, 64))
        statuses = [r.status_code for r in responses]
        assert set(statuses) <= {200, 503}, statuses
        refused = [r for r in responses if r.status_code == 503]
        for r in refused:
            assert_error(r, 503, "overloaded", "overloaded")
            assert int(r.headers["retry-after"]) >= 1
        if refused:
            break
    assert 503 in statuses and 200 in statuses, statuses
    assert_still_serving(serve_app)
