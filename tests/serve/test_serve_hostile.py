"""Hostile media (issue 8) through the served API: each case is a clean 4xx OpenAI error (or, for
the documented partial cases, a 200), the replicas survive, and the next valid request succeeds.

The corpus is written under the session app's media root (the app reads files per request), its
escape symlink pointing outside every root. Each case is sent as a ``file://`` URL; a few also as
``data:`` URLs. Each case × route is a row of docs/reliability.md.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from hostile_media import CASES, HostileCase, build_corpus
from serve_helpers import TRAINED, ServeApp, data_url, video_message

SECTION = "Hostile media"
#: Where the API answers differently from the core's typed error: (status, code, phrase).
API_OVERRIDES: dict[str, tuple[int, str, str]] = {
    "hours_claimed": (413, "too_large", "video lasts 10800.0 s"),  # the app's duration limit
    "symlink_outside": (400, "forbidden", "outside the configured media roots"),
    "frames_dir_non_image": (400, "invalid_request", "is not a regular file"),  # no directories over HTTP
    "frames_dir_fake_png": (400, "invalid_request", "is not a regular file"),
    "decode_bomb": (413, "too_large", "the video declares 10000 fps; the limit is 240 fps"),  # max_source_fps
}
DATA_URL_CASES = [
    "random_bytes", "truncated_mid_moov", "huge_resolution", "audio_only", "hls_playlist", "concat_script",
    "sdp_description", "decode_bomb",
]  # fmt: skip
#: Longest a hostile request may take to be answered (2 shared cores; the refusals take milliseconds).
BOUND_S = 15.0
QUESTION = "What colour is the moving square? Answer with one word."  # the demo task's wording


@pytest.fixture(scope="module")
def hostile(serve_app: ServeApp, tmp_path_factory: pytest.TempPathFactory) -> dict[str, HostileCase]:
    """The corpus inside the media root; the symlink's target in a directory outside every root."""
    cases = build_corpus(serve_app.media_root / "hostile", outside=tmp_path_factory.mktemp("hostile-outside"))
    assert list(cases) == CASES
    return cases


def replica_logs(app: ServeApp) -> set[str]:
    """One log file per replica ever started (a restarted replica gets a new id, hence a new file)."""
    return {p.name for p in app.ray_tmp.glob("**/logs/serve/replica_*.log")}


def app_health() -> dict[str, str]:
    """The app's and each deployment's status, from Serve."""
    from ray import serve

    app = serve.status().applications["videolmm"]
    return {"app": str(app.status), **{name: str(d.status) for name, d in app.deployments.items()}}


def healthy(health: dict[str, str]) -> bool:
    """App running, every deployment serving (autoscaling the media replicas up or down is fine)."""
    state = {k: v.rsplit(".", 1)[-1] for k, v in health.items()}  # "DeploymentStatus.HEALTHY" -> "HEALTHY"
    serving = {"HEALTHY", "UPSCALING", "DOWNSCALING"}
    return state.pop("app") == "RUNNING" and set(state.values()) <= serving


@pytest.fixture(scope="module")
def replicas_before(serve_app: ServeApp, hostile: dict[str, HostileCase]) -> set[str]:
    """The replicas once the app is healthy and answers (an earlier test may have restarted one).

    Not while a deployment is upscaling: its new replica's log file could appear after the snapshot.
    """
    deadline = time.monotonic() + 120
    while not healthy(app_health()) or any(v.endswith("UPSCALING") for v in app_health().values()):
        assert time.monotonic() < deadline, f"the app is not healthy: {app_health()}"
        time.sleep(1)
    assert post(serve_app, serve_app.file_url("red_right.mp4"))[0] == 200
    logs = replica_logs(serve_app)
    assert logs, "no replica logs found"
    return logs


def post(app: ServeApp, url: str) -> tuple[int, dict[str, Any]]:
    with app.http() as http:
        response = http.post(
            "/v1/chat/completions", json={"model": TRAINED, "messages": video_message(url, QUESTION), "max_tokens": 4}
        )
    return response.status_code, response.json()


def expectation(case: HostileCase) -> tuple[int, str, tuple[str, ...]]:
    if case.name in API_OVERRIDES:
        status, code, phrase = API_OVERRIDES[case.name]
        return status, code, (phrase,)
    if case.outcome == "partial":
        return 200, "", ()
    return 400, "invalid_media", case.reasons


def check(app: ServeApp, case: HostileCase, url: str, label: str) -> str:
    """Send one hostile URL, assert the answer (in bounded time), then assert a valid request still succeeds."""
    start = time.perf_counter()
    status, body = post(app, url)
    elapsed = time.perf_counter() - start
    assert elapsed < BOUND_S, (case.name, elapsed)
    want_status, want_code, phrases = expectation(case)
    assert status == want_status, (case.name, status, body)
    if status == 200:
        text = body["choices"][0]["message"]["content"]
        observed = f"HTTP 200, {body['usage']['prompt_tokens']} prompt tokens, answer {text!r}"
    else:
        error = body["error"]
        assert set(error) == {"message", "type", "param", "code"}, body
        assert error["type"] == "invalid_request_error" and error["code"] == want_code, body
        assert error["param"] == "messages[0].content[0].video_url.url", body
        assert any(p in error["message"] for p in phrases), body
        # the message names the input: the file, or the decoded data URL's bytes
        assert (case.path.name if label == "file" else "<bytes:") in error["message"], body
        message = error["message"].replace(str(case.path.parent) + "/", "")
        observed = f"HTTP {status} {error['type']}/{error['code']} in {elapsed:.2f} s: {message}"
    after, valid = post(app, app.file_url("red_right.mp4"))
    assert after == 200 and valid["choices"][0]["message"]["content"] is not None, valid
    return f"{observed}; next valid request: HTTP {after}"


def expected_text(case: HostileCase) -> str:
    status, code, phrases = expectation(case)
    if status == 200:
        return f"HTTP 200 (partial: {case.reasons[0]})"
    return f"HTTP {status} {code}: " + " / ".join(repr(p) for p in phrases)


@pytest.mark.parametrize("name", CASES)
def test_api_file_url(serve_app: ServeApp, hostile, replicas_before, name: str, reliability) -> None:
    case = hostile[name]
    observed = check(serve_app, case, case.path.as_uri(), "file")
    reliability(SECTION, name, "API", expected_text(case) + "; then a valid request succeeds", observed)


@pytest.mark.parametrize("name", DATA_URL_CASES)
def test_api_data_url(serve_app: ServeApp, hostile, replicas_before, name: str, reliability) -> None:
    case = hostile[name]
    observed = check(serve_app, case, data_url(case.path, "video/mp4"), "data")
    reliability(
        SECTION, f"{name} (data: URL)", "API", expected_text(case) + "; then a valid request succeeds", observed
    )


def test_no_replica_restarted(serve_app: ServeApp, hostile, replicas_before: set[str], reliability) -> None:
    """After every hostile request: the same replicas (no new log file = no restart), all healthy."""
    for name in CASES:  # each once more, back to back, then a valid one
        post(serve_app, hostile[name].path.as_uri())
    status, _ = post(serve_app, serve_app.file_url("red_right.mp4"))
    assert status == 200
    after = replica_logs(serve_app)
    assert after == replicas_before, f"replicas changed: {sorted(after ^ replicas_before)}"
    health = app_health()
    assert healthy(health), health
    reliability(
        SECTION,
        "every case, twice, then a valid request",
        "API",
        "no replica restarted; app RUNNING, deployments serving; valid request HTTP 200",
        f"{len(after)} replica logs before and after (same set); {health}; valid request HTTP {status}",
    )
