"""Request-level attacks on the served app, end to end over real HTTP (issue 8, item 3).

Each attack goes to the session app (``serve_configs/tiny.yaml`` with the test overrides of
``conftest.py``) as a client would send it; the answer must be a clean 4xx OpenAI error JSON
naming the reason, the next valid request must succeed, and each case adds a row to
``docs/reliability.md``.

SSRF: every target host is on the app's fetch allow-list, so each refusal comes from the check
of the address the host resolves to, not from the allow-list. The redirect cases need a first hop
the app may reach, and offline every server is on loopback: the app exempts exactly one address,
``127.0.0.2/32`` (``security.remote.allowed_networks``, a production option for internal media
servers), where a local server answers either a real clip (a control that must succeed) or a
redirect to 127.0.0.1, [::1], 10.0.0.1 or 169.254.169.254, which must be refused at the second
hop. 127.0.0.1 itself stays refused.
"""

from __future__ import annotations

import base64
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from serve_helpers import LNV, REDIRECT_HOST, TEST_LIMITS, ServeApp, video_message

SECTION = "Request attacks"


def _body(app: ServeApp, **changes: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"model": LNV, "messages": video_message(app.file_url("red_right.mp4")), "max_tokens": 2}
    out.update(changes)
    return out


def _video(app: ServeApp, url: str) -> dict[str, Any]:
    return _body(app, messages=video_message(url))


def _post(app: ServeApp, payload: dict[str, Any] | bytes, **kwargs: Any) -> httpx.Response:
    with app.http(timeout=60) as http:
        if isinstance(payload, bytes):
            return http.post("/v1/chat/completions", content=payload, **kwargs)
        return http.post("/v1/chat/completions", json=payload, **kwargs)


def _refusal(response: httpx.Response, status: int, code: str | None, *needles: str) -> str:
    """Assert a clean OpenAI error JSON; return ``"HTTP <status> <code>: <message>"`` for the report."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert error["type"] and error["message"], error
    if code is not None:
        assert error["code"] == code, error
    for needle in needles:
        assert needle in error["message"], error
    return f"HTTP {response.status_code} {error['code']}: {error['message']}"


def _still_serving(app: ServeApp) -> None:
    response = _post(app, _body(app))
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["role"] == "assistant"


# ----------------------------------------------------------------------------- a redirecting server


@pytest.fixture(scope="module")
def redirector(serve_app: ServeApp) -> Iterator[str]:
    """``http://127.0.0.2:PORT``: ``/clip.mp4`` is a real clip; ``/to-*`` redirect to refused targets."""
    clip = (serve_app.media_root / "red_right.mp4").read_bytes()
    app_port = serve_app.base_url.rsplit(":", 1)[1]
    routes: dict[str, tuple[int, dict[str, str], bytes]] = {
        "/clip.mp4": (200, {"Content-Type": "video/mp4"}, clip),
        "/to-clip": (302, {"Location": "/clip.mp4"}, b""),
        "/to-loopback": (302, {"Location": f"http://127.0.0.1:{app_port}/health"}, b""),
        "/to-ipv6-loopback": (307, {"Location": f"http://[::1]:{app_port}/health"}, b""),
        "/to-private": (301, {"Location": "http://10.0.0.1/clip.mp4"}, b""),
        "/to-metadata": (302, {"Location": "http://169.254.169.254/latest/meta-data/"}, b""),
        "/to-localhost": (302, {"Location": f"http://localhost:{app_port}/health"}, b""),
        # the fetch limits (remote.timeout_s, remote.max_redirects, limits.max_video_bytes)
        "/big.mp4": (200, {"Content-Type": "video/mp4"}, os.urandom(TEST_LIMITS["max_video_bytes"] + 1)),
        "/loop": (302, {"Location": "/loop"}, b""),
    }
    big_unannounced = os.urandom(TEST_LIMITS["max_video_bytes"] + 1)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path == "/slow.mp4":  # answers after the fetch deadline (bounded: one sleep)
                time.sleep(SLOW_S)
            if self.path == "/stream-big.mp4":  # no Content-Length: only counting the bytes can refuse it
                self.send_response(200)
                self.send_header("Content-Type", "video/mp4")
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(big_unannounced)
                return
            status, headers, payload = routes.get(self.path, (404, {}, b"missing"))
            if self.path == "/slow.mp4":
                status, headers, payload = routes["/clip.mp4"]
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - keep test output clean
            return

    server = ThreadingHTTPServer((REDIRECT_HOST, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://{REDIRECT_HOST}:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


# ----------------------------------------------------------------------------- SSRF


def _ssrf_cases(app: ServeApp) -> dict[str, tuple[str, str]]:
    """name → (URL, the address the refusal must name)."""
    port = app.base_url.rsplit(":", 1)[1]
    return {
        "SSRF to 127.0.0.1 (the app's own port)": (f"http://127.0.0.1:{port}/health", "resolves to 127.0.0.1"),
        "SSRF to [::1]": (f"http://[::1]:{port}/health", "resolves to ::1"),
        "SSRF to 10.0.0.0/8": ("http://10.0.0.1/clip.mp4", "resolves to 10.0.0.1"),
        "SSRF to 169.254.169.254 (cloud metadata)": (
            "http://169.254.169.254/latest/meta-data/iam/",
            "resolves to 169.254.169.254",
        ),
        "SSRF via a DNS name resolving to loopback (localhost, /etc/hosts)": (
            f"http://localhost:{port}/health",
            "'localhost' resolves to 127.0.0.1",
        ),
    }


SLOW_S = 6.0  # the slow route's delay, over the test app's remote.timeout_s (3 s)

SSRF = [
    "SSRF to 127.0.0.1 (the app's own port)",
    "SSRF to [::1]",
    "SSRF to 10.0.0.0/8",
    "SSRF to 169.254.169.254 (cloud metadata)",
    "SSRF via a DNS name resolving to loopback (localhost, /etc/hosts)",
]


@pytest.mark.parametrize("case", SSRF)
def test_ssrf_targets_are_refused_by_the_address_check(serve_app: ServeApp, case: str, reliability) -> None:
    cases = _ssrf_cases(serve_app)
    assert sorted(cases) == sorted(SSRF)
    url, needle = cases[case]
    host = httpx.URL(url).host
    assert serve_app.args.security.remote.allowed_hosts.count(host) == 1  # so the allow-list is not the reason
    observed = _refusal(_post(serve_app, _video(serve_app, url)), 400, "forbidden", needle, "non-public")
    _still_serving(serve_app)
    reliability(SECTION, case, "API", "400 forbidden naming the resolved address; next request 200", observed)


#: path on the redirecting server → (the host its Location names, the address that must be refused)
REDIRECTS = {
    "/to-loopback": ("127.0.0.1", "127.0.0.1"),
    "/to-ipv6-loopback": ("[::1]", "::1"),
    "/to-private": ("10.0.0.1", "10.0.0.1"),
    "/to-metadata": ("169.254.169.254", "169.254.169.254"),
    "/to-localhost": ("localhost", "127.0.0.1"),
}


def test_redirect_control_reaches_the_exempt_server(serve_app: ServeApp, redirector: str, reliability) -> None:
    """The first hop is really fetched: a redirect to a clip on the same exempt server is served."""
    response = _post(serve_app, _video(serve_app, f"{redirector}/to-clip"))
    assert response.status_code == 200, response.text
    usage = response.json()["usage"]
    assert usage["prompt_tokens"] > 0
    reliability(
        SECTION,
        f"control: redirect to a clip on the one exempt address ({REDIRECT_HOST}/32)",
        "API",
        "fetched through the redirect and answered 200",
        f"HTTP {response.status_code}, prompt_tokens={usage['prompt_tokens']}",
    )


@pytest.mark.parametrize("path", sorted(REDIRECTS))
def test_ssrf_via_a_redirect_is_refused_at_the_next_hop(
    serve_app: ServeApp, redirector: str, path: str, reliability
) -> None:
    host, target = REDIRECTS[path]
    response = _post(serve_app, _video(serve_app, f"{redirector}{path}"))
    observed = _refusal(response, 400, "forbidden", f"resolves to {target}", "non-public")
    assert REDIRECT_HOST not in observed.split("resolves to", 1)[1]  # the refused hop is the redirect target
    _still_serving(serve_app)
    reliability(
        SECTION,
        f"SSRF via a redirect ({REDIRECT_HOST} → {host})",
        "API",
        "400 forbidden at the redirect hop; next request 200",
        observed,
    )


#: path on the redirecting server → (status, error code, words the message must hold)
FETCH_LIMITS = {
    "/big.mp4": (413, "too_large", "bytes; the limit is"),
    "/stream-big.mp4": (413, "too_large", "larger than the limit"),
    "/slow.mp4": (400, "timeout", "took longer than"),
    "/loop": (400, "forbidden", "redirects"),
}


@pytest.mark.parametrize("path", sorted(FETCH_LIMITS))
def test_remote_fetch_limits_end_to_end(serve_app: ServeApp, redirector: str, path: str, reliability) -> None:
    """A download over the size limit (announced or not), slower than the deadline, or redirecting
    forever is refused with its error, and the next request succeeds."""
    status, code, needle = FETCH_LIMITS[path]
    remote = serve_app.args.security.remote
    assert SLOW_S > remote.timeout_s and remote.max_redirects < 10
    observed = _refusal(_post(serve_app, _video(serve_app, f"{redirector}{path}")), status, code, needle)
    _still_serving(serve_app)
    reliability(SECTION, f"remote fetch: {path}", "API", f"{status} {code}; next request 200", observed)


# ----------------------------------------------------------------------------- file://, data:, counts


def _input_cases(app: ServeApp) -> dict[str, tuple[dict[str, Any], int, str | None, tuple[str, ...]]]:
    root = app.media_root
    depth = "/".join([".."] * len(root.parts))
    big = base64.b64encode(os.urandom(TEST_LIMITS["max_data_url_bytes"] + 1024)).decode()
    image = {"type": "image_url", "image_url": {"url": app.file_url("square.png")}}
    images = [{"role": "user", "content": [image] * (TEST_LIMITS["max_images_per_request"] + 1) + [
        {"type": "text", "text": "What colour?"}]}]  # fmt: skip
    video = video_message(app.file_url("red_right.mp4"))[0]["content"]
    videos = [{"role": "user", "content": [video[0]] * (TEST_LIMITS["max_videos_per_request"] + 1) + [video[1]]}]
    return {
        "file:// traversal with ..": (
            _video(app, f"file://{root}/{depth}/etc/passwd"), 400, "forbidden", ("outside the configured media roots",)
        ),
        "file:// traversal percent-encoded (%2e%2e%2f)": (
            _video(app, f"file://{root}/%2e%2e%2f%2e%2e%2f{depth}/etc/passwd"), 400, "forbidden", ("outside",)
        ),
        "file:// symlink leaving the media root": (
            _video(app, app.file_url("escape.mp4")), 400, "forbidden", ("escape.mp4", "outside")
        ),
        "oversized data: URL": (
            _video(app, f"data:video/mp4;base64,{big}"), 413, "too_large", ("data URL", "limit")
        ),
        "too many frames (media_io_kwargs num_frames)": (
            _body(app, media_io_kwargs={"video": {"num_frames": TEST_LIMITS["max_frames"] + 1}}),
            400, None, ("num_frames",),
        ),
        "too many images": (_body(app, messages=images), 400, None, ("3 images",)),
        "too many videos": (_body(app, messages=videos), 400, None, ("3 videos",)),
        "unknown model": (_body(app, model="gpt-4o"), 404, "model_not_found", ("gpt-4o", LNV)),
        "prompt longer than the context": (
            _body(app, messages=video_message(app.file_url("red_right.mp4"), "word " * 1500)),
            400, "context_length_exceeded", ("tokens", "visual", "context of 4096"),
        ),
    }  # fmt: skip


INPUTS = [
    "file:// traversal with ..",
    "file:// traversal percent-encoded (%2e%2e%2f)",
    "file:// symlink leaving the media root",
    "oversized data: URL",
    "too many frames (media_io_kwargs num_frames)",
    "too many images",
    "too many videos",
    "unknown model",
    "prompt longer than the context",
]


@pytest.mark.parametrize("case", INPUTS)
def test_hostile_request_gets_its_error_then_the_next_request_succeeds(
    serve_app: ServeApp, case: str, reliability
) -> None:
    cases = _input_cases(serve_app)
    assert sorted(cases) == sorted(INPUTS)
    payload, status, code, needles = cases[case]
    observed = _refusal(_post(serve_app, payload), status, code, *needles)
    _still_serving(serve_app)
    expected = " ".join(str(x) for x in (status, code) if x)
    reliability(SECTION, case, "API", f"{expected} naming the reason; next request 200", observed)


def test_prompt_longer_than_the_context_names_the_token_counts(serve_app: ServeApp) -> None:
    """The refusal's numbers are the real ones: prompt + max_tokens over the model's 4096 positions."""
    import re

    question = "word " * 1500
    response = _post(
        serve_app, _body(serve_app, messages=video_message(serve_app.file_url("red_right.mp4"), question))
    )
    message = response.json()["error"]["message"]
    match = re.search(
        r"the prompt is (\d+) tokens \((\d+) visual\) and max_new_tokens is (\d+): (\d+) tokens", message
    )
    assert match, message
    prompt, visual, wanted, total = (int(g) for g in match.groups())
    assert (wanted, total) == (2, prompt + 2) and prompt > 4096 - 2 and visual > 0
    # the same question, shortened, fits: the counts are what decided
    ok = _post(serve_app, _body(serve_app, messages=video_message(serve_app.file_url("red_right.mp4"), "word " * 100)))
    assert ok.status_code == 200, ok.text
    assert ok.json()["usage"]["prompt_tokens"] < 4096


# ----------------------------------------------------------------------------- body and headers


def test_invalid_json_is_a_400(serve_app: ServeApp, reliability) -> None:
    response = _post(
        serve_app, b'{"model": "tiny-llava-next-video", "messages": [', headers={"content-type": "application/json"}
    )
    observed = _refusal(response, 400, "invalid_json", "not valid JSON")
    _still_serving(serve_app)
    reliability(SECTION, "invalid JSON body", "API", "400 invalid_json; next request 200", observed)


CONTENT_TYPES = {
    "text/plain": "text/plain",  # a browser's CORS-simple request
    "form-urlencoded": "application/x-www-form-urlencoded",  # curl -d without -H
    "multipart": "multipart/form-data; boundary=x",
    "missing": None,
}


@pytest.mark.parametrize("kind", sorted(CONTENT_TYPES))
def test_wrong_content_type_is_a_415(serve_app: ServeApp, kind: str, reliability) -> None:
    import json

    raw = json.dumps(_body(serve_app)).encode()  # a valid body: only the declared type is wrong
    value = CONTENT_TYPES[kind]
    with serve_app.http() as http:
        request = http.build_request("POST", "/v1/chat/completions", content=raw)
        if value is None:
            request.headers.pop("content-type", None)  # httpx sets none for raw content
        else:
            request.headers["content-type"] = value
        response = http.send(request)
    observed = _refusal(response, 415, "unsupported_media_type", "application/json")
    _still_serving(serve_app)
    reliability(
        SECTION, f"wrong Content-Type ({kind})", "API", "415 unsupported_media_type; next request 200", observed
    )


def test_wrong_method_is_a_405_error_json(serve_app: ServeApp, reliability) -> None:
    with serve_app.http() as http:
        response = http.get("/v1/chat/completions")
    observed = _refusal(response, 405, "method_not_allowed", "GET /v1/chat/completions")
    reliability(SECTION, "GET on the POST route", "API", "405 method_not_allowed error JSON", observed)


# ----------------------------------------------------------------------------- API key


def _key_cases(app: ServeApp) -> dict[str, dict[str, str]]:
    wrong_same_length = app.api_key[:-1] + ("x" if app.api_key[-1] != "x" else "y")
    return {
        "API key missing": {},
        "API key wrong, same length": {"Authorization": f"Bearer {wrong_same_length}"},
        "API key wrong, shorter (a prefix of the key)": {"Authorization": f"Bearer {app.api_key[:4]}"},
        "API key wrong, longer (the key plus a suffix)": {"Authorization": f"Bearer {app.api_key}0"},
        "API key in the wrong scheme (Basic)": {"Authorization": f"Basic {app.api_key}"},
    }


KEYS = [
    "API key missing",
    "API key wrong, same length",
    "API key wrong, shorter (a prefix of the key)",
    "API key wrong, longer (the key plus a suffix)",
    "API key in the wrong scheme (Basic)",
]


@pytest.mark.parametrize("case", KEYS)
def test_missing_or_wrong_api_key_is_a_401(serve_app: ServeApp, case: str, reliability) -> None:
    import openai

    cases = _key_cases(serve_app)
    assert sorted(cases) == sorted(KEYS)
    with httpx.Client(base_url=serve_app.base_url, headers=cases[case], timeout=30) as http:
        response = http.post("/v1/chat/completions", json=_body(serve_app))
    observed = _refusal(response, 401, "invalid_api_key", "API key")
    # every wrong key gets the same answer: nothing tells a prefix or a length apart
    assert response.json()["error"]["message"] == "missing or invalid API key: send 'Authorization: Bearer <key>'"
    if case == "API key wrong, same length":
        with pytest.raises(openai.AuthenticationError):  # the openai client sees the same refusal
            serve_app.client(api_key=cases[case]["Authorization"].split(" ", 1)[1]).models.list()
    _still_serving(serve_app)
    reliability(SECTION, case, "API", "401 invalid_api_key, one message for every wrong key", observed)


def test_api_key_is_compared_in_constant_time(reliability) -> None:
    """No timing assertion: the comparison is ``hmac.compare_digest`` on bytes, not ``==``."""
    import dis

    from videolmm.serve import security

    calls = [
        (ins.opname, ins.argval) for ins in dis.get_instructions(security.api_key_matches) if ins.opname != "CACHE"
    ]
    names = [arg for op, arg in calls if op in ("LOAD_GLOBAL", "LOAD_ATTR", "LOAD_METHOD")]
    compares = [arg for op, arg in calls if op == "COMPARE_OP"]
    assert "hmac" in names and "compare_digest" in names, names
    assert security.hmac.compare_digest is __import__("hmac").compare_digest  # the real one, not a shadow
    assert not any("==" in str(c) for c in compares), compares  # the token never meets ==
    reliability(
        SECTION,
        "API key comparison is constant-time",
        "API",
        "hmac.compare_digest, no == on the token",
        f"api_key_matches loads {[n for n in names if n in ('hmac', 'compare_digest')]}; compare ops: {compares}",
    )


# ----------------------------------------------------------------------------- the bounds behind the cases


@pytest.mark.parametrize(
    ("text_config", "context"),
    [
        ({"max_position_embeddings": 4096}, 4096),
        ({"max_position_embeddings": 4096, "rope_scaling": {"type": "linear", "factor": 2.0}}, 8192),
        ({"max_position_embeddings": 4096, "rope_parameters": {"rope_type": "linear", "factor": 2.5}}, 10240),
        ({"max_position_embeddings": 4096, "factor": 2.0}, 8192),  # flat, as some LLaVA-NeXT-Video configs have it
        ({}, None),
    ],
)
def test_context_length_counts_rope_scaling(text_config: dict[str, Any], context: int | None) -> None:
    """A scaled checkpoint (LLaVA-NeXT-Video's Vicuna: 4096 × 2) is not refused at 4096 tokens."""
    from types import SimpleNamespace

    from videolmm.models.engine import Engine

    engine = SimpleNamespace(config=SimpleNamespace(text_config=SimpleNamespace(**text_config)))
    assert Engine.context_length.fget(engine) == context


def test_allowed_networks_cannot_exempt_metadata_addresses() -> None:
    from pydantic import ValidationError

    from videolmm.serve.config import RemoteFetchConfig

    assert RemoteFetchConfig(allowed_networks=("10.1.2.3/32",)).allowed_networks == ("10.1.2.3/32",)
    for bad, reason in [
        ("169.254.0.0/16", "169.254.169.254"),
        ("fd00:ec2::/64", "fd00:ec2::254"),
        ("10.0.0.1/8", "host bits"),
        ("not-a-network", "does not appear to be"),
    ]:
        with pytest.raises(ValidationError, match=reason):
            RemoteFetchConfig(allowed_networks=(bad,))
