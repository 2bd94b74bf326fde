"""Where a request's media are decoded (:mod:`videolmm.serve.routing`): no or small local media in the
model replica (one Serve hop fewer), anything larger, remote or unsized in the MediaDecoder.

The router's decisions are checked without Ray; the session app (``inline_decode_max_bytes`` 8 KiB)
shows both routes end to end, plain and streamed."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from serve_helpers import INLINE_MAX_BYTES, LNV, ServeApp, video_message

from videolmm.serve.jobs import ChatJob, MediaRef
from videolmm.serve.routing import DecodeRouter, data_url_bytes


def job(*urls: str) -> ChatJob:
    media = tuple(MediaRef("video", u, f"messages[0].content[{i}].video_url.url") for i, u in enumerate(urls))
    return ChatJob(request_id="r", model_id="m", question="q", media=media)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "small.mp4").write_bytes(b"\0" * 1000)
    (tmp_path / "large.mp4").write_bytes(b"\0" * 5000)
    return tmp_path


def router(root: Path, limit: int = 4096, decode_in: str = "media_deployment") -> DecodeRouter:
    return DecodeRouter(decode_in, limit, (str(root),))  # type: ignore[arg-type]


def test_no_media_goes_straight_to_the_model_replica(root: Path) -> None:
    for limit in (4096, 0):  # even with inline decoding off: there is nothing to decode
        route = router(root, limit).route(job())
        assert (route.where, route.reason, route.inline) == ("model_replica", "no media", True)


def test_small_local_media_are_decoded_in_the_model_replica(root: Path) -> None:
    route = router(root).route(job((root / "small.mp4").as_uri()))
    assert (route.where, route.reason, route.source_bytes) == ("model_replica", "small media", 1000)


def test_large_media_and_the_sum_of_several_go_to_the_media_decoder(root: Path) -> None:
    route = router(root).route(job((root / "large.mp4").as_uri()))
    assert (route.where, route.reason, route.source_bytes) == ("media_deployment", "large media", 5000)
    small = (root / "small.mp4").as_uri()
    assert router(root, 2500).route(job(small, small)).inline
    assert router(root, 2500).route(job(small, small, small)).where == "media_deployment"  # 3000 > 2500


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://example.com/a.mp4", "remote media"),  # not sized without fetching
        ("file:///etc/hostname", "unsized media"),  # outside the media roots: the MediaDecoder refuses it
        ("file:///nowhere/missing.mp4", "unsized media"),
        ("data:video/mp4,plain", "unsized media"),  # not base64: the MediaDecoder refuses it
        ("ftp://host/a.mp4", "unsized media"),
    ],
)
def test_what_cannot_be_sized_cheaply_goes_to_the_media_decoder(root: Path, url: str, reason: str) -> None:
    route = router(root).route(job(url))
    assert (route.where, route.reason) == ("media_deployment", reason)


def test_data_urls_are_sized_by_their_payload(root: Path) -> None:
    small = "data:video/mp4;base64," + base64.b64encode(b"x" * 3000).decode()
    large = "data:video/mp4;base64," + base64.b64encode(b"x" * 6000).decode()
    assert data_url_bytes(small) == 3000
    assert router(root).route(job(small)).inline
    assert router(root).route(job(large)).where == "media_deployment"


def test_inline_decoding_off_and_decode_in_model_replica(root: Path) -> None:
    small = (root / "small.mp4").as_uri()
    assert router(root, 0).route(job(small)).where == "media_deployment"
    route = router(root, 0, decode_in="model_replica").route(job((root / "large.mp4").as_uri()))
    assert (route.where, route.reason) == ("model_replica", "configured")


def test_a_symlink_is_sized_by_its_target_inside_the_roots(root: Path) -> None:
    (root / "link.mp4").symlink_to(root / "large.mp4")
    assert router(root).route(job((root / "link.mp4").as_uri())).source_bytes == 5000


# ------------------------------------------------------------------------------ end to end


def test_both_routes_answer_in_the_session_app(serve_app: ServeApp) -> None:
    small, large = serve_app.media_root / "red_right.mp4", serve_app.media_root / "sharp.mp4"
    assert small.stat().st_size <= INLINE_MAX_BYTES < large.stat().st_size
    with serve_app.http() as http:
        for name, where in (("red_right.mp4", "model_replica"), ("sharp.mp4", "media_deployment")):
            body = {"model": LNV, "messages": video_message(serve_app.file_url(name)), "max_tokens": 2}
            response = http.post("/v1/chat/completions", json=body)
            assert response.status_code == 200, response.text
            info = response.json()["videolmm"]
            assert info["decoded_in"] == where, name
            assert len(info["frames"]) == 1 and info["timings"]["decode"] > 0
        text_only = {"model": LNV, "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 2}
        response = http.post("/v1/chat/completions", json=text_only)
        assert response.status_code == 200, response.text
        assert response.json()["videolmm"]["decoded_in"] == "model_replica"


def test_a_refusal_on_the_inline_route_is_the_media_decoders(serve_app: ServeApp) -> None:
    """The model replica decodes with the same pipeline: a broken small file is refused as before (400)."""
    broken = "data:video/mp4;base64," + base64.b64encode(b"not a video at all" * 10).decode()
    body = {"model": LNV, "messages": video_message(broken), "max_tokens": 2}
    with serve_app.http() as http:
        response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_media" and error["param"].endswith("video_url.url")


def test_the_streamed_finish_chunk_says_where_the_media_were_decoded(serve_app: ServeApp) -> None:
    body = {"model": LNV, "messages": video_message(serve_app.file_url("sharp.mp4")), "max_tokens": 3, "stream": True}
    with serve_app.http() as http, http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        events = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")]
    infos = [e["videolmm"] for e in events if "videolmm" in e]
    assert len(infos) == 1 and infos[0]["decoded_in"] == "media_deployment"
