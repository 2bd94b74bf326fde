"""Issue 15's media limits over real HTTP to the session app: a decode bomb inside the fps and
duration bounds refused from its packet index, the per-request decoded-bytes budget, a Pillow
decompression bomb and an EPS file as image URLs. Each is a clean OpenAI error in bounded time,
with no traceback text, and the next valid request is answered. (The HLS, ffconcat, SDP, image2
and 10,000 fps cases run with the hostile corpus in test_serve_hostile.py.)
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from hostile_media import write_clip, write_decode_bomb, write_png_bomb
from serve_helpers import TEST_LIMITS, TRAINED, ServeApp, data_url, video_message

SECTION = "Bounded media work"
#: Longest a refused request may take (the refusals come before decoding; 2 shared cores).
BOUND_S = 15.0


@pytest.fixture(scope="module")
def files(serve_app: ServeApp) -> dict[str, Path]:
    root = serve_app.media_root / "bounded"
    root.mkdir(exist_ok=True)
    return {
        # 900 frames at 240 fps: 3.75 s, inside every header bound; one keyframe, so uniform's last
        # frame needs all 900 decoded (max_decode_frames is 512)
        "gop_bomb": write_decode_bomb(root / "gop_bomb.mp4", num_frames=900, fps=240),
        "one_frame_128": write_clip(root / "one_frame_128.mp4", num_frames=1, width=128, height=128),
        "png_bomb": write_png_bomb(root / "png_bomb.png"),
        "eps": _eps(root / "eps.png"),
    }


def _eps(path: Path) -> Path:
    path.write_text("%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 16 16\nshowpage\n%%EOF\n")
    return path


def post(app: ServeApp, body: dict[str, Any]) -> tuple[int, dict[str, Any], float]:
    start = time.perf_counter()
    with app.http() as http:
        response = http.post("/v1/chat/completions", json={"model": TRAINED, "max_tokens": 2, **body})
    return response.status_code, response.json(), time.perf_counter() - start


def refused(app: ServeApp, body: dict[str, Any], status: int, code: str, phrases: tuple[str, ...]) -> str:
    """Assert a clean error (status, code, phrases, no traceback), bounded in time, then a valid 200."""
    got, answer, elapsed = post(app, body)
    assert got == status, answer
    error = answer["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == code, answer
    assert all(p in error["message"] for p in phrases), answer
    assert "Traceback" not in error["message"] and 'File "' not in error["message"], answer
    assert elapsed < BOUND_S, elapsed
    after, valid, _ = post(app, {"messages": video_message(app.file_url("red_right.mp4"))})
    assert after == 200 and valid["choices"][0]["message"]["content"] is not None, valid
    message = error["message"].replace(str(app.media_root) + "/", "")
    return f"HTTP {got} {error['type']}/{code} in {elapsed:.2f} s: {message}; next valid request: HTTP {after}"


def two_videos(url: str, frames: int) -> dict[str, Any]:
    video = {"type": "video_url", "video_url": {"url": url}}
    content = [video, video, {"type": "text", "text": "Same?"}]
    return {"messages": [{"role": "user", "content": content}], "media_io_kwargs": {"video": {"num_frames": frames}}}


def image(url: str) -> dict[str, Any]:
    content = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "What is it?"}]
    return {"messages": [{"role": "user", "content": content}]}


def test_decode_bound_from_the_packet_index(serve_app: ServeApp, files, reliability) -> None:
    limit = TEST_LIMITS["max_decode_frames"]
    phrases = ("messages[0].content[0].video_url.url", "need 900 frames decoded", f"the limit is {limit}")
    for label, url in (("file", files["gop_bomb"].as_uri()), ("data: URL", data_url(files["gop_bomb"], "video/mp4"))):
        observed = refused(serve_app, {"messages": video_message(url)}, 413, "too_large", phrases)
        reliability(
            SECTION,
            f"one-keyframe 900-frame clip at 240 fps, 3.75 s ({label})",
            "API",
            f"HTTP 413 too_large before decoding (max_decode_frames={limit}); then a valid request succeeds",
            observed,
        )


def test_decoded_bytes_budget_per_request(serve_app: ServeApp, files, reliability) -> None:
    url, frames = files["one_frame_128"].as_uri(), TEST_LIMITS["max_frames"]
    one = frames * 128 * 128 * 3
    status, answer, _ = post(serve_app, {**two_videos(url, frames), "messages": video_message(url)})
    assert status == 200, answer  # one video alone fits the budget
    phrases = (
        "messages[0].content[1].video_url.url",
        f"decoding {frames} frames of 128x128 needs {one} bytes",
        f"{2 * one} bytes with the request's other media; the limit is {TEST_LIMITS['max_decoded_bytes']}",
    )
    observed = refused(serve_app, two_videos(url, frames), 413, "too_large", phrases)
    reliability(
        SECTION,
        f"one-frame 128x128 clip sent twice with num_frames {frames}",
        "API",
        "HTTP 413 naming the second video and the bytes, before decoding it; then a valid request succeeds",
        f"one video alone: HTTP 200; two: {observed}",
    )


@pytest.mark.parametrize(
    ("name", "status", "code", "phrase"),
    [
        ("png_bomb", 413, "too_large", "declares too many pixels"),
        ("eps", 400, "invalid_media", "is not a readable image in an accepted format"),
    ],
)
def test_hostile_images(
    serve_app: ServeApp, files, name: str, status: int, code: str, phrase: str, reliability
) -> None:
    for label, url in (("file", files[name].as_uri()), ("data: URL", data_url(files[name], "image/png"))):
        observed = refused(serve_app, image(url), status, code, ("messages[0].content[0].image_url.url", phrase))
        what = "PNG declaring 20000x10000" if name == "png_bomb" else "EPS document named .png"
        reliability(
            SECTION,
            f"{what} as image_url ({label})",
            "API",
            f"HTTP {status} {code}: {phrase!r}, no traceback; then a valid request succeeds",
            observed,
        )
