"""``decode_in: model_replica``: the app without the MediaDecoder deployment answers what the
default app (decoding in MediaDecoder) answers, and refuses what it refuses, with the same errors.

A second app is deployed into the session's Serve instance (its own route prefix) from the same
validated args with only ``decode_in`` changed, and removed at the end."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest
from serve_helpers import STARTUP_TIMEOUT_S, TRAINED, ServeApp, video_message

PREFIX = "/colocated"


@pytest.fixture(scope="module")
def colocated(serve_app: ServeApp) -> Iterator[str]:
    """Base URL of the same app with ``decode_in: model_replica`` (small CPU shares: 2 shared cores)."""
    from ray import serve

    from videolmm.serve.app import build_app
    from videolmm.serve.config import ServeArgs

    raw = serve_app.args.model_dump(mode="json")
    raw["security"]["api_key"] = serve_app.api_key  # SecretStr dumps masked
    raw["decode_in"] = "model_replica"
    raw["models"] = [m for m in raw["models"] if m["model_id"] == TRAINED]
    raw["max_models_per_replica"] = 1
    for key in ("ingress_deployment", "model_deployment"):
        raw[key]["ray_actor_options"]["num_cpus"] = 0.05
    args = ServeArgs.model_validate(raw)
    deploy = threading.Thread(target=serve.run, args=(build_app(args),), daemon=True,
                              kwargs={"name": "colocated", "route_prefix": PREFIX})  # fmt: skip
    deploy.start()
    deploy.join(timeout=STARTUP_TIMEOUT_S)
    assert not deploy.is_alive(), f"the colocated app did not start: {serve.status()}"
    assert "MediaDecoder" not in serve.status().applications["colocated"].deployments
    try:
        yield serve_app.base_url + PREFIX
    finally:
        serve.delete("colocated")


def post(serve_app: ServeApp, base: str, body: dict) -> httpx.Response:
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {serve_app.api_key}"}, timeout=120) as http:
        return http.post("/v1/chat/completions", json=body)


@pytest.mark.parametrize("clip", ["red_right.mp4", "blue up.mp4"])
def test_decoding_in_the_model_replica_gives_the_same_answer(serve_app: ServeApp, colocated: str, clip: str) -> None:
    body = {"model": TRAINED, "messages": video_message(serve_app.file_url(clip)), "max_tokens": 4}
    here, there = post(serve_app, serve_app.base_url, body), post(serve_app, colocated, body)
    assert here.status_code == there.status_code == 200, (here.text, there.text)
    a, b = here.json(), there.json()
    assert b["choices"][0]["message"]["content"] == a["choices"][0]["message"]["content"]
    assert b["videolmm"]["frames"] == a["videolmm"]["frames"]
    assert b["videolmm"]["timings"]["decode"] > 0


@pytest.mark.parametrize("name", ["notes.txt", "escape.mp4", "missing.mp4"])
def test_decoding_in_the_model_replica_refuses_the_same_media(serve_app: ServeApp, colocated: str, name: str) -> None:
    body = {"model": TRAINED, "messages": video_message(serve_app.file_url(name)), "max_tokens": 2}
    here, there = post(serve_app, serve_app.base_url, body), post(serve_app, colocated, body)
    assert 400 <= here.status_code < 500
    assert there.status_code == here.status_code
    assert there.json()["error"] == here.json()["error"]
