"""Ray Serve's throughput-optimized settings (docs/serving.md, "Lower latency"): the app behaves the same.

These run when the session cluster runs on them (``make test-serve-throughput``, which CI runs after
``make test``; ``VIDEOLMM_TEST_RAY_MODE=throughput``), where every other test of tests/serve runs on
them too. Under those settings Serve calls between deployments go by value over gRPC: the ingress pins
the MediaDecoder → model path to references, so the frames still skip the ingress; each ingress replica
also serves HTTP on its own port (direct ingress), past the proxy.
"""

from __future__ import annotations

import httpx
import pytest
from serve_helpers import LNV, TRAINED, ServeApp, video_message


@pytest.fixture()
def direct(serve_app: ServeApp) -> str:
    if serve_app.direct_url is None:
        pytest.skip("the session cluster runs Ray's default settings: `make test-serve-throughput` runs this")
    return serve_app.direct_url


ROUTES = [("red_right.mp4", "model_replica"), ("sharp.mp4", "media_deployment")]


@pytest.mark.parametrize(("clip", "decoded_in"), ROUTES)
def test_direct_port_answers_as_the_proxy_does(serve_app: ServeApp, direct: str, clip: str, decoded_in: str) -> None:
    body = {"model": TRAINED, "messages": video_message(serve_app.file_url(clip)), "max_tokens": 6}
    answers = {}
    for name, base in (("proxy", serve_app.base_url), ("direct", direct)):
        with serve_app.http(base_url=base) as http:
            response = http.post("/v1/chat/completions", json=body)
        assert response.status_code == 200, (name, response.text)
        info = response.json()["videolmm"]
        assert info["decoded_in"] == decoded_in, (name, info)  # the media route is taken either way
        answers[name] = (response.json()["choices"][0]["message"]["content"], info["frames"])
    assert answers["direct"] == answers["proxy"]


def test_direct_port_keeps_the_api_key_and_streams(serve_app: ServeApp, direct: str) -> None:
    body = {"model": LNV, "messages": video_message(serve_app.file_url("sharp.mp4")), "max_tokens": 8}
    refused = httpx.post(f"{direct}/v1/chat/completions", json=body, timeout=60)
    assert refused.status_code == 401, refused.text
    client = serve_app.client(base_url=f"{direct}/v1")
    whole = client.chat.completions.create(**body).choices[0].message.content
    deltas = [
        chunk.choices[0].delta.content
        for chunk in client.chat.completions.create(**body, stream=True)
        if chunk.choices and chunk.choices[0].delta.content
    ]
    assert len(deltas) >= 2 and "".join(deltas) == whole
