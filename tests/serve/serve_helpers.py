"""Shared constants and helpers of the serve tests (the fixtures are in this folder's conftest.py)."""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
TINY_YAML = REPO / "serve_configs" / "tiny.yaml"
LNV = "tiny-llava-next-video"
VL = "tiny-video-llava"
TRAINED = "trained-llava-next-video"  # the trained tiny checkpoint (issue 3), for parity
QWEN2 = "tiny-llava-video-qwen2"  # issue 5's families, served by name
QWEN2_FRAMES = 16  # force_sample frame count for QWEN2 (the family's default of 64 is over TEST_LIMITS)
HOUND = "tiny-llava-hound"
STATIC = "tiny-llava-next-video-static"  # LNV's checkpoint on the static scheduler (@serve.batch)
LNV34B = "tiny-llava-next-video-34b"  # the 34B's layout (Yi ids, 4,096 positions): 32 frames at its seed defaults
BROKEN = "tiny-broken-weights"  # LNV's config files without weights: passes the build check, fails to load
API_KEY = "sk-videolmm-test-key"
STARTUP_TIMEOUT_S = 240
#: A loopback address the test app exempts (``allowed_networks``) for a redirecting test server.
REDIRECT_HOST = "127.0.0.2"
#: IPv6 literals the test app allow-lists (issue 15.10): each wraps a non-public IPv4 address, so each
#: must be refused by the address check (NAT64, IPv4-translated, IPv4-compatible, local-use NAT64).
NAT64_HOSTS = ("64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "::ffff:0:7f00:1", "::a00:1", "64:ff9b:1::808:808")

#: The test app's ``inline_decode_max_bytes``: the 64-px clips go to the model replica, sharp.mp4 to the MediaDecoder.
INLINE_MAX_BYTES = 8192

#: Limits small enough that test files cross them (the clips are 64 px, 16 frames at 8 fps, 2 s).
TEST_LIMITS = {
    "max_request_bytes": 1 << 20,
    "max_data_url_bytes": 192 << 10,
    "max_video_bytes": 256 << 10,
    "max_image_bytes": 256 << 10,
    "max_duration_s": 4.0,
    "max_frame_pixels": 128 * 128,
    "max_frames": 32,
    "max_videos_per_request": 2,
    "max_images_per_request": 2,
    "max_tokens": 64,
    "max_source_frames": 2000,  # issue 15's media bounds (test_serve_media_hardening)
    "max_decode_frames": 512,
    "max_decoded_bytes": 2 << 20,  # two 128x128 videos of 32 frames (3 MiB) cross it; one does not
    "decode_timeout_s": 30,
    "max_prompt_chars": 16384,
    "max_inflight_bytes": 3 << 20,  # three stalled 1 MiB bodies fill it (test_serve_hardening)
}

#: Ray Serve's settings for the session cluster, chosen by ``VIDEOLMM_TEST_RAY_MODE`` (``make test`` runs
#: ``default``; ``make test-serve-throughput`` runs tests/serve again on ``throughput``, the settings
#: docs/serving.md recommends). Read by Ray's processes at start-up. The last two only make tests
#: quicker and their logs readable at once: no 30-s drain when a test deletes an app; request logs unbuffered.
RAY_MODES = {
    "default": {},
    "throughput": {
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "0",
        "RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE": "1",
    },
}
#: where Serve's direct ingress gives ingress replicas their HTTP ports (RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT)
DIRECT_INGRESS_PORTS = range(30000, 30100)


@dataclass(frozen=True)
class ServeApp:
    """The running test app.

    Attributes:
        base_url: ``http://127.0.0.1:PORT``.
        api_key: the bearer key the app requires.
        media_root: the app's media root (file:// URLs must point in here).
        args: the validated ``ServeArgs`` the app was built from.
        ray_tmp: the Ray temp dir (its ``session_*/logs/serve`` holds the replica logs).
        metrics_port: the node's Prometheus metrics port.
        ray_mode: Ray Serve's settings the cluster runs with (:data:`RAY_MODES`).
        direct_url: ``http://127.0.0.1:PORT`` of the ingress replica's own HTTP server (direct ingress,
            ``throughput`` mode); None in ``default`` mode.
    """

    base_url: str
    api_key: str
    media_root: Path
    args: Any
    ray_tmp: Path
    metrics_port: int
    ray_mode: str = "default"
    direct_url: str | None = None

    def client(self, **kwargs: Any) -> Any:
        """A real ``openai.OpenAI`` client for the app (no automatic retries unless asked)."""
        from openai import OpenAI

        kwargs.setdefault("api_key", self.api_key)
        kwargs.setdefault("max_retries", 0)
        kwargs.setdefault("timeout", 60)
        kwargs.setdefault("base_url", f"{self.base_url}/v1")
        return OpenAI(**kwargs)

    def http(self, **kwargs: Any) -> httpx.Client:
        """A raw HTTP client with the API key set (for status codes and headers)."""
        headers = {"Authorization": f"Bearer {self.api_key}", **kwargs.pop("headers", {})}
        kwargs.setdefault("base_url", self.base_url)
        return httpx.Client(headers=headers, timeout=kwargs.pop("timeout", 60), **kwargs)

    def file_url(self, name: str) -> str:
        """``file://`` URL of a file in the media root."""
        return (self.media_root / name).as_uri()

    def logs(self) -> dict[str, list[str]]:
        """The Serve replicas' log texts by deployment name (one text per replica ever started)."""
        out: dict[str, list[str]] = {}
        for path in self.ray_tmp.glob("ray/session_*/logs/serve/replica_videolmm_*.log"):
            deployment = path.name.removeprefix("replica_videolmm_").split("_", 1)[0]
            out.setdefault(deployment, []).append(path.read_text(errors="replace"))
        return out

    def wait_for_log(
        self, deployment: str, patterns: dict[str, re.Pattern[str]], timeout_s: float = 30
    ) -> tuple[str, re.Match[str]] | None:
        """The key and match of the first of ``patterns`` in ``deployment``'s logs, polled up to ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            texts = self.logs().get(deployment, [])
            for key, pattern in patterns.items():
                for text in texts:
                    if match := pattern.search(text):
                        return key, match
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.5)


def video_message(url: str, question: str = "What colour is the moving square?") -> list[dict[str, Any]]:
    """One user message: a video, then the question (lmms-eval's openai model sends this shape)."""
    return [
        {
            "role": "user",
            "content": [{"type": "video_url", "video_url": {"url": url}}, {"type": "text", "text": question}],
        }
    ]


def data_url(path: Path, mime: str) -> str:
    """A base64 ``data:`` URL of a file."""
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"


@contextmanager
def admitted_stream(
    http: httpx.Client, body: dict[str, Any], max_refusals: int = 20
) -> Iterator[tuple[httpx.Response, int]]:
    """A streamed chat completion once the app takes it, and how many tries were refused first.

    A 503 ``overloaded`` (backpressure, by design, from other requests in flight) is tried again after
    its Retry-After, up to ``max_refusals`` times; any other answer than 200 fails the test.
    """
    for refused in range(max_refusals + 1):
        with http.stream("POST", "/v1/chat/completions", json=body) as response:
            if response.status_code != 503 or refused == max_refusals:
                assert response.status_code == 200, response.read()
                yield response, refused
                return
            assert json.loads(response.read())["error"]["code"] == "overloaded"
            retry_after = float(response.headers.get("retry-after", "1"))
        time.sleep(retry_after)


def leave_mid_stream(app: ServeApp, model: str = LNV, tries: int = 5) -> str:
    """Stream a 64-token answer, leave after its first text; the request id whose cancel the model replica logged.

    The cancel races the rest of the generation (about 0.15 s for the tiny model): the client's close
    must reach the model replica through the proxy and the ingress before the last token. An attempt
    whose answer the replica logged as finished lost that race and is tried again with a new id.
    """
    body = {"model": model, "messages": video_message(app.file_url("red_right.mp4")), "max_tokens": 64, "stream": True}
    for _ in range(tries):
        rid = f"vlmm-cancel-{uuid.uuid4().hex}"
        with app.http(headers={"x-request-id": rid}) as http, admitted_stream(http, body) as (response, _):
            for line in response.iter_lines():
                if line.startswith("data: {") and json.loads(line[6:])["choices"][0]["delta"].get("content"):
                    break  # leave mid-stream: the connection closes here
        ends = {"cancelled": rf"{rid}.*request cancelled", "finished": rf"{rid}.*generated \d+ tokens"}
        ended = app.wait_for_log("ModelServer", {key: re.compile(rx) for key, rx in ends.items()})
        assert ended is not None, f"{rid}: the model replica logged neither a cancel nor an answer within 30 s"
        if ended[0] == "cancelled":
            return rid
    raise AssertionError(f"{tries} streams left after their first text all finished before the cancel arrived")
