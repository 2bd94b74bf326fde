"""Security checks without Ray: API keys, address classes, data URLs, media roots, and the remote
fetcher against a real HTTP server on loopback (its redirects, size limits, deadline and IP pinning,
ports, encodings); then the issue-15.10 refusals over real HTTP through the shared session app."""

from __future__ import annotations

import asyncio
import base64
import gzip
import ipaddress
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from serve_helpers import LNV, NAT64_HOSTS, REDIRECT_HOST, TEST_LIMITS, video_message

from videolmm.serve.config import ModelConfig, ServeArgs
from videolmm.serve.decode import MediaPipeline
from videolmm.serve.errors import ServeError
from videolmm.serve.jobs import MediaRef
from videolmm.serve.security import (
    FetchPolicy,
    MediaRoots,
    RemoteFetcher,
    api_key_matches,
    is_public_address,
    parse_data_url,
    parse_ports,
)

# ----------------------------------------------------------------------------------- API key


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        ("Bearer s3cret", True),
        ("bearer s3cret ", True),
        ("Bearer s3cre", False),
        ("Bearer s3cret2", False),
        ("Basic s3cret", False),
        ("s3cret", False),
        ("", False),
        (None, False),
    ],
)
def test_api_key_matches(header: str | None, ok: bool) -> None:
    assert api_key_matches(header, SecretStr("s3cret")) is ok
    assert api_key_matches(header, None) is True  # no key configured: everything passes


# ----------------------------------------------------------------------------------- addresses


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("127.8.9.10", False),
        ("::1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # cloud metadata (link-local)
        ("169.254.170.2", False),  # ECS task metadata
        ("100.100.100.200", False),  # Alibaba metadata (shared 100.64/10)
        ("fd00:ec2::254", False),  # AWS IPv6 metadata
        ("fe80::1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("::ffff:127.0.0.1", False),  # IPv4-mapped loopback
        ("::ffff:8.8.8.8", True),
        ("2002:7f00:1::", False),  # 6to4 wrapping 127.0.0.1
        ("2002:a00:1::", False),  # 6to4 wrapping 10.0.0.1
        # issue 15.10: forms Python's is_global calls global although they reach the IPv4 inside
        ("64:ff9b::7f00:1", False),  # NAT64 (RFC 6052) of 127.0.0.1
        ("64:ff9b::a9fe:a9fe", False),  # NAT64 of 169.254.169.254
        ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
        ("64:ff9b::808:808", True),  # NAT64 of 8.8.8.8: public
        ("64:ff9b:1::808:808", False),  # local-use NAT64 prefix (RFC 8215): refused whole
        ("64:ff9b:1:7f00:1::", False),
        ("::127.0.0.1", False),  # IPv4-compatible
        ("::10.0.0.1", False),
        ("::ffff:0:127.0.0.1", False),  # IPv4-translated (RFC 2765)
        ("::ffff:0:169.254.169.254", False),
        ("::ffff:0:8.8.8.8", True),
        ("::ffff:10.0.0.1", False),  # IPv4-mapped, written the other way
    ],
)
def test_only_public_unicast_addresses_pass(address: str, public: bool) -> None:
    assert is_public_address(ipaddress.ip_address(address)) is public


# ----------------------------------------------------------------------------------- data URLs


def test_data_url_roundtrip_and_refusals() -> None:
    payload = b"\x00\x01video bytes"
    url = f"data:video/mp4;base64,{base64.b64encode(payload).decode()}"
    parsed = parse_data_url(url, max_bytes=1024, param="p")
    assert (parsed.mime, parsed.data) == ("video/mp4", payload)
    with pytest.raises(ServeError) as too_big:
        parse_data_url(f"data:video/mp4;base64,{base64.b64encode(b'x' * 4096).decode()}", max_bytes=1024, param="p")
    assert too_big.value.error.status == 413
    for bad, reason in [
        ("data:video/mp4,rawbytes", "base64"),
        ("data:video/mp4;base64,@@@@", "base64"),
        ("data:video/mp4;base64", "malformed"),
        ("data:video/mp4;base64,", "empty"),
    ]:
        with pytest.raises(ServeError, match=reason) as excinfo:
            parse_data_url(bad, max_bytes=1024, param="p")
        assert excinfo.value.error.status == 400


# ----------------------------------------------------------------------------------- media roots


@pytest.fixture()
def roots(tmp_path: Path) -> tuple[MediaRoots, Path, Path]:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "a.mp4").write_bytes(b"x" * 10)
    (root / "dir").mkdir()
    (outside / "secret.mp4").write_bytes(b"y" * 10)
    (root / "link_out.mp4").symlink_to(outside / "secret.mp4")
    (root / "link_in.mp4").symlink_to(root / "a.mp4")
    (root / "dirlink").symlink_to(outside)
    return MediaRoots([root]), root, outside


def _status(fn: Callable[..., object], *args: object, **kwargs: object) -> tuple[int, str]:
    with pytest.raises(ServeError) as excinfo:
        fn(*args, **kwargs)
    return excinfo.value.error.status, excinfo.value.error.message


def test_media_roots_accept_files_inside(roots: tuple[MediaRoots, Path, Path]) -> None:
    mr, root, _ = roots
    assert mr.resolve((root / "a.mp4").as_uri(), max_bytes=100, param="p") == (root / "a.mp4").resolve()
    assert mr.resolve((root / "link_in.mp4").as_uri(), max_bytes=100, param="p") == (root / "a.mp4").resolve()
    assert mr.resolve(f"file://localhost{root}/a.mp4", max_bytes=100, param="p") == (root / "a.mp4").resolve()


def test_media_roots_refuse_escapes_and_non_files(roots: tuple[MediaRoots, Path, Path]) -> None:
    mr, root, outside = roots
    refusals = {
        f"file://{root}/../outside/secret.mp4": "outside the configured media roots",
        (root / "link_out.mp4").as_uri(): "outside",
        (root / "dirlink" / "secret.mp4").as_uri(): "outside",
        (outside / "secret.mp4").as_uri(): "outside",
        (outside / "does-not-exist.mp4").as_uri(): "outside",  # existence outside the roots is not revealed
        (root / "missing.mp4").as_uri(): "no such file",
        (root / "dir").as_uri(): "not a regular file",
        f"file://evil.example{root}/a.mp4": "must not name a host",
        "file:relative/a.mp4": "absolute path",
        f"file://{root}/a%00.mp4": "absolute path",
    }
    for url, reason in refusals.items():
        status, message = _status(mr.resolve, url, max_bytes=100, param="p")
        assert status == 400 and reason in message, (url, message)
    status, message = _status(mr.resolve, (root / "a.mp4").as_uri(), max_bytes=5, param="p")
    assert status == 413 and "10 bytes" in message
    status, message = _status(MediaRoots([]).resolve, (root / "a.mp4").as_uri(), max_bytes=100, param="p")
    assert status == 400 and "disabled" in message


# ----------------------------------------------------------------------------------- remote fetching


class _Handler(BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
    seen_hosts: list[str] = []
    seen_encodings: list[str | None] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.seen_hosts.append(self.headers.get("Host", ""))
        self.seen_encodings.append(self.headers.get("Accept-Encoding"))
        if self.path == "/slow":
            time.sleep(2)
        if self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for _ in range(8):
                chunk = b"z" * 1024
                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
            return
        status, headers, payload = self.routes.get(self.path, (404, {}, b"missing"))
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - silence the server
        return


@pytest.fixture(scope="module")
def http_server() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    port = server.server_address[1]
    _Handler.routes = {
        "/clip.mp4": (200, {}, b"v" * 2000),
        "/redirect": (302, {"Location": "/clip.mp4"}, b""),
        "/to-other-host": (302, {"Location": f"http://notlisted.example:{port}/clip.mp4"}, b""),
        "/to-metadata": (302, {"Location": "http://169.254.169.254/latest/meta-data/"}, b""),
        "/loop": (302, {"Location": "/loop"}, b""),
        "/to-port-22": (302, {"Location": "http://127.0.0.1:22/clip.mp4"}, b""),
        "/gzip": (200, {"Content-Encoding": "gzip"}, gzip.compress(b"\0" * (1 << 20))),  # 1 KB → 1 MB
        "/big": (200, {}, b"b" * 5000),
    }
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield port
    server.shutdown()
    server.server_close()


def _loopback_ok(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """The production check, plus loopback so that the local test server is reachable."""
    return ip.is_loopback or is_public_address(ip)


def _fetcher(**kwargs: object) -> RemoteFetcher:
    policy = {
        "allowed_hosts": ("localhost", "127.0.0.1", "169.254.169.254"),
        "allowed_schemes": ("http",),
        "timeout_s": 1.0,
        "max_redirects": 2,
        "address_allowed": _loopback_ok,
        "allowed_ports": (80, range(1024, 65536)),
        **kwargs,
    }
    return RemoteFetcher(FetchPolicy(**policy))  # type: ignore[arg-type]


def _fetch(fetcher: RemoteFetcher, url: str, max_bytes: int = 4096) -> bytes:
    return asyncio.run(fetcher.fetch(url, max_bytes=max_bytes, param="p"))


def test_fetch_follows_checked_redirects_and_pins_the_address(http_server: int) -> None:
    _Handler.seen_hosts.clear()
    assert _fetch(_fetcher(), f"http://localhost:{http_server}/redirect") == b"v" * 2000
    # connected to the resolved address, but the Host header still names the host
    assert _Handler.seen_hosts == [f"localhost:{http_server}"] * 2


@pytest.mark.parametrize(
    ("path", "status", "reason"),
    [
        ("/to-other-host", 400, "not on the allow-list"),
        ("/to-metadata", 400, "non-public"),
        ("/loop", 400, "more than 2 redirects"),
        ("/big", 413, "5000 bytes"),
        ("/chunked", 413, "larger than the limit"),
        ("/slow", 400, "longer than 1 s"),
        ("/nothing", 400, "HTTP 404"),
    ],
)
def test_fetch_refusals(http_server: int, path: str, status: int, reason: str) -> None:
    got, message = _status(_fetch, _fetcher(), f"http://127.0.0.1:{http_server}{path}")
    assert (got, reason in message) == (status, True), message


def test_fetch_refuses_loopback_under_the_production_check(http_server: int) -> None:
    fetcher = _fetcher(address_allowed=is_public_address)
    for host in ("127.0.0.1", "localhost"):
        status, message = _status(_fetch, fetcher, f"http://{host}:{http_server}/clip.mp4")
        assert status == 400 and "non-public" in message


def test_fetch_refuses_schemes_credentials_and_unlisted_hosts(http_server: int) -> None:
    fetcher = _fetcher()
    for url, reason in [
        (f"https://localhost:{http_server}/clip.mp4", "scheme 'https' is not allowed"),
        (f"http://user:pw@localhost:{http_server}/clip.mp4", "credentials"),
        ("http://example.com/clip.mp4", "not on the allow-list"),
        ("http://sub.localhost/clip.mp4", "not on the allow-list"),
    ]:
        status, message = _status(_fetch, fetcher, url)
        assert status == 400 and reason in message, (url, message)


def test_wildcard_hosts() -> None:
    policy = FetchPolicy(allowed_hosts=("*.example.com", "cdn.test"))
    assert policy.host_allowed("a.example.com") and policy.host_allowed("a.b.example.com")
    assert not policy.host_allowed("example.com") and not policy.host_allowed("badexample.com")
    assert policy.host_allowed("cdn.test") and not policy.host_allowed("x.cdn.test")


def test_remote_fetching_is_off_by_default(tiny_llava_next_video: Path) -> None:
    args = ServeArgs(models=(ModelConfig(model_id="m", pretrained=str(tiny_llava_next_video)),))
    assert args.security.remote.enabled is False
    pipeline = MediaPipeline(args)
    assert pipeline.fetcher is None
    for url, reason in [("https://example.com/a.mp4", "disabled"), ("ftp://x/a.mp4", "unsupported URL scheme")]:
        status, message = _status(asyncio.run, pipeline.source(MediaRef("video", url, "p")))
        assert status == 400 and reason in message


# ----------------------------------------------------------------------------------- ports, encodings (15.10)


def test_parse_ports() -> None:
    assert parse_ports([443, "8443", " 8000-8999 "]) == (443, 8443, range(8000, 9000))
    for bad in ("0", "65536", "9-8", "http", "1-x"):
        with pytest.raises(ValueError, match="allowed_ports"):
            parse_ports([bad])
    assert FetchPolicy().allowed_ports == (443,) and not FetchPolicy().port_allowed(80)


def test_fetch_refuses_ports_off_the_list_on_every_hop(http_server: int) -> None:
    status, message = _status(_fetch, _fetcher(allowed_ports=(443,)), f"http://127.0.0.1:{http_server}/clip.mp4")
    assert (status, message) == (400, f"p: port {http_server} is not allowed for remote media (allowed: 443)")
    status, message = _status(_fetch, _fetcher(), f"http://127.0.0.1:{http_server}/to-port-22")
    assert status == 400 and "port 22 is not allowed" in message and "1024-65535" in message


def test_fetch_asks_for_identity_and_refuses_a_compressed_body(http_server: int) -> None:
    _Handler.seen_encodings.clear()
    assert _fetch(_fetcher(), f"http://127.0.0.1:{http_server}/clip.mp4") == b"v" * 2000
    assert _Handler.seen_encodings == ["identity"]
    # 1 KB of gzip that would inflate to 1 MB under a 4 KB limit: refused, never inflated
    status, message = _status(_fetch, _fetcher(), f"http://127.0.0.1:{http_server}/gzip", max_bytes=1 << 21)
    assert status == 400 and "Content-Encoding 'gzip' although identity was asked" in message


def test_remote_fetch_config_ports() -> None:
    from videolmm.serve.config import RemoteFetchConfig

    assert RemoteFetchConfig().allowed_ports == (443,)
    assert parse_ports(RemoteFetchConfig(allowed_ports=(443, "8000-8100")).allowed_ports)[1] == range(8000, 8101)
    with pytest.raises(ValueError, match="allowed_ports: '70000'"):
        RemoteFetchConfig(allowed_ports=("70000",))


# ----------------------------------------------------------------------------------- over HTTP (session app)

SECTION = "Request attacks"


def _app_refusal(app: Any, url: str) -> tuple[int, dict[str, Any]]:
    body = {"model": LNV, "messages": video_message(url), "max_tokens": 2}
    with app.http(timeout=60) as http:
        response = http.post("/v1/chat/completions", json=body)
    return response.status_code, response.json()["error"]


def test_ipv6_wrapped_private_addresses_and_ports_are_refused_over_http(serve_app: Any, reliability) -> None:
    """Each NAT64 / translated / compatible host is allow-listed in the app, so the address check refuses it."""
    remote = serve_app.args.security.remote
    for host in NAT64_HOSTS:
        assert host in remote.allowed_hosts
        t0 = time.monotonic()
        status, error = _app_refusal(serve_app, f"http://[{host}]/clip.mp4")
        elapsed = time.monotonic() - t0
        assert (status, error["code"]) == (400, "forbidden"), error
        assert f"resolves to {host}, a non-public address" in error["message"], error
        reliability(
            SECTION,
            f"SSRF to an IPv6 form wrapping a non-public IPv4 address ([{host}])",
            "API",
            "400 forbidden naming the address (the IPv4 inside is checked)",
            f"HTTP {status} {error['code']} in {elapsed:.2f} s: {error['message']}",
        )
    status, error = _app_refusal(serve_app, f"http://{REDIRECT_HOST}:22/clip.mp4")  # an exempt host, a bad port
    assert (status, error["code"]) == (400, "forbidden") and "port 22 is not allowed" in error["message"], error
    reliability(
        SECTION,
        f"remote fetch to a port off the list ({REDIRECT_HOST}:22; the host and its network are allowed)",
        "API",
        "400 forbidden naming the port and the allowed ports",
        f"HTTP {status} {error['code']}: {error['message']}",
    )


def test_compressed_download_is_refused_over_http(serve_app: Any, reliability) -> None:
    clip = (serve_app.media_root / "red_right.mp4").read_bytes()
    seen: list[str | None] = []

    class Gzip(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            seen.append(self.headers.get("Accept-Encoding"))
            payload = gzip.compress(clip + b"\0" * (TEST_LIMITS["max_video_bytes"] * 4))  # inflates past the limit
            self.send_response(200)
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - silence the server
            return

    server = ThreadingHTTPServer((REDIRECT_HOST, 0), Gzip)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        status, error = _app_refusal(serve_app, f"http://{REDIRECT_HOST}:{server.server_address[1]}/clip.mp4")
    finally:
        server.shutdown()
        server.server_close()
    assert seen == ["identity"]
    assert status == 400 and "Content-Encoding 'gzip' although identity was asked" in error["message"], error
    reliability(
        SECTION,
        "remote fetch answered with a gzip body (4 KB that inflates past max_video_bytes)",
        "API",
        "the app asks Accept-Encoding: identity and refuses a compressed body (never inflated)",
        f"request sent Accept-Encoding={seen[0]!r}; HTTP {status} {error['code']}: {error['message']}",
    )
