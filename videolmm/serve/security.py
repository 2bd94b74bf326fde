"""Where media may come from, and who may ask: API keys, file roots, data URLs, remote fetching.

Threats handled (each refusal is a :class:`~videolmm.serve.errors.ServeError` naming the URL and
the reason):

* **SSRF.** ``http(s)://`` fetching is off by default. When on, the host must be allow-listed,
  and *every* address it resolves to must be public: loopback, private, link-local, shared
  (100.64/10), reserved, multicast and cloud-metadata addresses are refused. IPv6 forms that
  carry an IPv4 address are unwrapped and the IPv4 address checked too: IPv4-mapped
  (``::ffff:a.b.c.d``), IPv4-translated (``::ffff:0:a.b.c.d``), IPv4-compatible (``::a.b.c.d``),
  NAT64 (``64:ff9b::/96``), 6to4 and Teredo; the local-use NAT64 prefix ``64:ff9b:1::/48`` is
  refused whole. Only listed ports are reached (443 by default). The connection goes to the
  address that was checked (the ``Host`` header and TLS SNI carry the name), so a DNS answer
  cannot change between check and connect. Redirects are followed by hand, each hop checked the
  same way; environment proxies are ignored.
* **Path traversal.** ``file://`` URLs must fall under a configured media root, both as written
  (``..`` normalised) and after resolving symlinks; only regular files are read.
* **Resource exhaustion.** Size limits on data URLs, files and downloads (checked before reading
  and while streaming), a deadline on the whole fetch. Downloads ask for ``Accept-Encoding:
  identity`` and refuse a compressed body, so the limits count the bytes the decoder will get.
* **Timing.** API keys are compared in constant time.

Media roots are meant to be directories API clients cannot write to; a local user who can swap
path components for symlinks between the check and the decoder's open is outside this model.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import ipaddress
import os
import socket
import stat
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

from pydantic import SecretStr

from videolmm.serve.errors import bad_request, too_large

if TYPE_CHECKING:
    import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Cloud metadata endpoints (AWS/GCP/Azure/OpenStack, ECS task metadata, Alibaba, AWS IPv6).
#: All are non-global anyway; listed so that the intent survives any change in ``is_global``.
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254")
)
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
#: IPv6 ranges whose low 32 bits are an IPv4 address the packet reaches (RFC 4291 compatible,
#: RFC 2765 translated, RFC 6052 well-known NAT64 prefix); IPv4-mapped is ``ipv4_mapped``.
_IPV4_IN_LOW_BITS = tuple(ipaddress.IPv6Network(n) for n in ("::/96", "::ffff:0:0:0/96", "64:ff9b::/96"))
#: RFC 8215 local-use NAT64 prefix: where the IPv4 address sits depends on the operator's prefix
#: length, so no address in it is treated as public.
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")
_CHUNK = 1 << 16


# ---------------------------------------------------------------------------------------------
# API key
# ---------------------------------------------------------------------------------------------


def api_key_matches(authorization: str | None, expected: SecretStr | None) -> bool:
    """Whether an ``Authorization`` header carries the expected bearer key (constant-time compare).

    Args:
        authorization: the header value, e.g. ``"Bearer sk-..."``; None when absent.
        expected: the configured key; None means no key is required.

    Returns:
        True when no key is required or the header's bearer token equals the key.
    """
    if expected is None:
        return True
    if not authorization:
        return False
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(token.strip().encode(), expected.get_secret_value().encode())


# ---------------------------------------------------------------------------------------------
# Addresses
# ---------------------------------------------------------------------------------------------


def _embedded(ip: IPAddress) -> list[IPAddress]:
    """IPv4 addresses an IPv6 address carries (mapped, translated, compatible, NAT64, 6to4, Teredo)."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return []
    out: list[IPAddress] = []
    if ip.ipv4_mapped is not None:
        out.append(ip.ipv4_mapped)
    if any(ip in network for network in _IPV4_IN_LOW_BITS):
        out.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    if ip.sixtofour is not None:
        out.append(ip.sixtofour)
    if ip.teredo is not None:
        out.extend(ip.teredo)
    return out


def is_public_address(ip: IPAddress) -> bool:
    """True only for globally routable unicast addresses that are not metadata endpoints.

    Args:
        ip: an IPv4 or IPv6 address.

    Returns:
        False for loopback, private, link-local, shared, reserved, unspecified, multicast and
        metadata addresses, for IPv6 forms that embed such an IPv4 address, and for the local-use
        NAT64 prefix.
    """
    if isinstance(ip, ipaddress.IPv6Address) and ip in _LOCAL_NAT64:
        return False
    for inner in _embedded(ip):
        if not is_public_address(inner):
            return False
    return ip.is_global and not ip.is_multicast and ip not in METADATA_ADDRESSES


# ---------------------------------------------------------------------------------------------
# data: URLs
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataUrl:
    """A decoded ``data:`` URL.

    Attributes:
        mime: the declared media type (may be empty).
        data: the payload.
    """

    mime: str
    data: bytes


def parse_data_url(url: str, *, max_bytes: int, param: str) -> DataUrl:
    """Decode a base64 ``data:`` URL, refusing it before decoding when it is too large.

    Args:
        url: ``data:<mime>;base64,<payload>``.
        max_bytes: largest decoded payload accepted.
        param: the request field, for error messages.

    Raises:
        ServeError: 400 when malformed or not base64; 413 when over ``max_bytes``.
    """
    header, sep, payload = url.partition(",")
    if not sep or not header.lower().startswith("data:"):
        raise bad_request(f"{param}: malformed data URL (expected data:<type>;base64,<payload>)", param=param)
    params = header[5:].split(";")
    if "base64" not in (p.strip().lower() for p in params[1:]):
        raise bad_request(f"{param}: only base64 data URLs are supported", param=param)
    payload = payload.strip()
    estimated = len(payload) * 3 // 4
    if estimated > max_bytes + 2:
        raise too_large(f"{param}: data URL payload is ~{estimated} bytes; the limit is {max_bytes}", param=param)
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise bad_request(f"{param}: data URL payload is not valid base64 ({exc})", param=param) from exc
    if len(data) > max_bytes:
        raise too_large(f"{param}: data URL payload is {len(data)} bytes; the limit is {max_bytes}", param=param)
    if not data:
        raise bad_request(f"{param}: data URL payload is empty", param=param)
    return DataUrl(mime=params[0].strip().lower(), data=data)


# ---------------------------------------------------------------------------------------------
# file:// URLs
# ---------------------------------------------------------------------------------------------


class MediaRoots:
    """The directories ``file://`` URLs may point into.

    Args:
        roots: directory paths; each is resolved (symlinks followed) once, here.
    """

    def __init__(self, roots: Sequence[str | os.PathLike[str]]) -> None:
        self.roots = tuple(Path(r).expanduser().resolve() for r in roots)

    def _inside(self, path: Path) -> bool:
        return any(path == root or path.is_relative_to(root) for root in self.roots)

    def resolve(self, url: str, *, max_bytes: int, param: str) -> Path:
        """The real path of a ``file://`` URL under a media root.

        Args:
            url: ``file:///abs/path`` (percent-encoding allowed; host empty or ``localhost``).
            max_bytes: largest file accepted.
            param: the request field, for error messages.

        Returns:
            The resolved path of a regular file inside a root.

        Raises:
            ServeError: 400 when file URLs are disabled, the path leaves the roots (as written or
                through a symlink), does not exist or is not a regular file; 413 when too large.
        """
        if not self.roots:
            raise bad_request(f"{param}: file:// URLs are disabled on this server (no media_roots)", param=param)
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise bad_request(f"{param}: file URL must not name a host ({parts.netloc!r})", param=param)
        raw = unquote(parts.path)
        if not raw or "\x00" in raw or not os.path.isabs(raw):
            raise bad_request(f"{param}: file URL needs an absolute path", param=param)
        outside = bad_request(f"{param}: {raw} is outside the configured media roots", param=param, code="forbidden")
        if not self._inside(Path(os.path.normpath(raw))):
            raise outside
        try:
            real = Path(raw).resolve(strict=True)
        except FileNotFoundError:
            raise bad_request(f"{param}: {raw}: no such file", param=param) from None
        except (OSError, RuntimeError) as exc:  # symlink loops, permissions
            raise bad_request(f"{param}: {raw}: cannot be resolved ({exc})", param=param) from exc
        if not self._inside(real):
            raise outside
        info = real.stat()
        if not stat.S_ISREG(info.st_mode):
            raise bad_request(f"{param}: {raw} is not a regular file", param=param)
        if info.st_size > max_bytes:
            raise too_large(f"{param}: {raw} is {info.st_size} bytes; the limit is {max_bytes}", param=param)
        return real


# ---------------------------------------------------------------------------------------------
# http(s):// URLs
# ---------------------------------------------------------------------------------------------

#: ``async (host, port) -> [address, ...]``.
Resolver = Callable[[str, int], Awaitable[list[str]]]


async def resolve_host(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (the system resolver, without blocking the loop)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


@dataclass(frozen=True)
class FetchPolicy:
    """What :class:`RemoteFetcher` may fetch.

    Attributes:
        allowed_hosts: exact host names, or ``*.example.com`` for subdomains of example.com.
        allowed_schemes: ``http`` and/or ``https``.
        timeout_s: deadline for the whole fetch, redirects included.
        max_redirects: redirects followed; each target is checked like the first URL.
        address_allowed: the address check; :func:`is_public_address` in every configuration a
            YAML can express.
        exempt_networks: networks whose addresses pass although non-public (``allowed_networks``,
            e.g. an internal media server); metadata addresses never pass.
        allowed_ports: ports that may be connected to, each an ``int`` or a ``range``; checked on
            every hop (443 only by default).
    """

    allowed_hosts: tuple[str, ...] = ()
    allowed_schemes: tuple[str, ...] = ("https",)
    timeout_s: float = 10.0
    max_redirects: int = 3
    address_allowed: Callable[[IPAddress], bool] = is_public_address
    exempt_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    allowed_ports: tuple[int | range, ...] = (443,)

    def port_allowed(self, port: int) -> bool:
        """Whether ``port`` is on the list."""
        return any(port == p if isinstance(p, int) else port in p for p in self.allowed_ports)

    def address_ok(self, ip: IPAddress) -> bool:
        """Whether a resolved address may be connected to."""
        if ip in METADATA_ADDRESSES:
            return False
        return self.address_allowed(ip) or any(ip in network for network in self.exempt_networks)

    def host_allowed(self, host: str) -> bool:
        """Whether ``host`` (lower-case, no trailing dot) is on the allow-list."""
        for pattern in self.allowed_hosts:
            if pattern.startswith("*."):
                if host.endswith(pattern[1:]) and host != pattern[2:]:
                    return True
            elif host == pattern:
                return True
        return False


@dataclass(frozen=True)
class _Target:
    url: str
    scheme: Literal["http", "https"]
    host: str
    port: int
    netloc: str


class RemoteFetcher:
    """Fetch ``http(s)://`` media under a :class:`FetchPolicy`.

    Args:
        policy: hosts, schemes, deadline, redirects and the address check.
        resolver: ``async (host, port) -> [address, ...]``; the system resolver by default.
    """

    def __init__(self, policy: FetchPolicy, resolver: Resolver | None = None) -> None:
        self.policy = policy
        self._resolve = resolver or resolve_host

    def _target(self, url: str, param: str) -> _Target:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in self.policy.allowed_schemes:
            allowed = ", ".join(self.policy.allowed_schemes) or "none"
            raise bad_request(
                f"{param}: scheme {scheme!r} is not allowed for remote media (allowed: {allowed})",
                param=param,
                code="forbidden",
            )
        if parts.username is not None or parts.password is not None:
            raise bad_request(f"{param}: URLs with credentials are not allowed", param=param, code="forbidden")
        host = (parts.hostname or "").lower().rstrip(".")
        if not host:
            raise bad_request(f"{param}: URL has no host", param=param)
        if not self.policy.host_allowed(host):
            raise bad_request(f"{param}: host {host!r} is not on the allow-list", param=param, code="forbidden")
        try:
            port = parts.port or (443 if scheme == "https" else 80)
        except ValueError as exc:
            raise bad_request(f"{param}: invalid port in URL ({exc})", param=param) from exc
        if not self.policy.port_allowed(port):
            allowed = ", ".join(_port_text(p) for p in self.policy.allowed_ports) or "none"
            raise bad_request(
                f"{param}: port {port} is not allowed for remote media (allowed: {allowed})",
                param=param,
                code="forbidden",
            )
        return _Target(url=url, scheme=scheme, host=host, port=port, netloc=parts.netloc)  # type: ignore[arg-type]

    async def _checked_address(self, target: _Target, param: str) -> str:
        try:
            addresses = await self._resolve(target.host, target.port)
        except (OSError, UnicodeError) as exc:
            raise bad_request(f"{param}: cannot resolve host {target.host!r} ({exc})", param=param) from exc
        if not addresses:
            raise bad_request(f"{param}: host {target.host!r} resolves to no address", param=param)
        for text in addresses:
            ip = ipaddress.ip_address(text.split("%", 1)[0])
            if not self.policy.address_ok(ip):
                raise bad_request(
                    f"{param}: host {target.host!r} resolves to {ip}, a non-public address; refused",
                    param=param,
                    code="forbidden",
                )
        return addresses[0]

    async def fetch(self, url: str, *, max_bytes: int, param: str) -> bytes:
        """Download ``url`` under the policy.

        Args:
            url: an ``http://`` or ``https://`` URL.
            max_bytes: largest body accepted.
            param: the request field, for error messages.

        Returns:
            The response body.

        Raises:
            ServeError: 400 when refused by the policy, unreachable, not 200, or too slow;
                413 when the body is larger than ``max_bytes``.
        """
        try:
            return await asyncio.wait_for(self._fetch(url, max_bytes, param), timeout=self.policy.timeout_s)
        except asyncio.TimeoutError:
            raise bad_request(
                f"{param}: fetching {url} took longer than {self.policy.timeout_s:g} s", param=param, code="timeout"
            ) from None

    async def _fetch(self, url: str, max_bytes: int, param: str) -> bytes:
        import httpx

        current = url
        async with httpx.AsyncClient(follow_redirects=False, trust_env=False, timeout=self.policy.timeout_s) as client:
            for _hop in range(self.policy.max_redirects + 1):
                target = self._target(current, param)
                address = await self._checked_address(target, param)
                host_in_url = f"[{address}]" if ":" in address else address
                parts = urlsplit(current)
                netloc = f"{host_in_url}:{target.port}"
                pinned = urlunsplit((target.scheme, netloc, parts.path or "/", parts.query, ""))
                request = client.build_request(
                    "GET",
                    pinned,
                    headers={
                        "Host": target.netloc,
                        "Accept": "*/*",
                        "Accept-Encoding": "identity",  # the size limits count what the decoder gets
                        "User-Agent": "videolmm-serve",
                    },
                    extensions={"sni_hostname": target.host},
                )
                try:
                    response = await client.send(request, stream=True)
                except httpx.HTTPError as exc:
                    raise bad_request(
                        f"{param}: fetching {current} failed ({type(exc).__name__}: {exc})", param=param
                    ) from exc
                try:
                    if response.status_code in _REDIRECTS and "location" in response.headers:
                        current = urljoin(current, response.headers["location"])
                        continue
                    if response.status_code != 200:
                        raise bad_request(
                            f"{param}: fetching {current} returned HTTP {response.status_code}", param=param
                        )
                    return await _read_limited(response, max_bytes, f"{param}: {current}", param)
                finally:
                    await response.aclose()
        raise bad_request(
            f"{param}: more than {self.policy.max_redirects} redirects fetching {url}", param=param, code="forbidden"
        )


def _port_text(port: int | range) -> str:
    return str(port) if isinstance(port, int) else f"{port.start}-{port.stop - 1}"


def parse_ports(spec: Sequence[int | str]) -> tuple[int | range, ...]:
    """``[443, "8000-8999"]`` → ``(443, range(8000, 9000))``.

    Raises:
        ValueError: a port or range is malformed or outside 1-65535 (the message names it).
    """
    out: list[int | range] = []
    for item in spec:
        text = str(item).strip()
        low, dash, high = text.partition("-")
        try:
            first, last = int(low), int(high) if dash else int(low)
        except ValueError:
            raise ValueError(f"allowed_ports: {item!r} is neither a port nor a 'low-high' range") from None
        if not 1 <= first <= last <= 65535:
            raise ValueError(f"allowed_ports: {item!r} is outside 1-65535 or an empty range")
        out.append(first if first == last else range(first, last + 1))
    return tuple(out)


async def _read_limited(response: httpx.Response, max_bytes: int, label: str, param: str) -> bytes:
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise too_large(f"{label} is {declared} bytes; the limit is {max_bytes}", param=param)
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):  # asked for identity; a compressed body would dodge the limits
        raise bad_request(
            f"{label}: the server sent Content-Encoding {encoding[:40]!r} although identity was asked",
            param=param,
        )
    chunks: list[bytes] = []
    total = 0
    async for chunk in response.aiter_raw(_CHUNK):  # the bytes as sent: nothing inflates them
        total += len(chunk)
        if total > max_bytes:
            raise too_large(f"{label} is larger than the limit of {max_bytes} bytes", param=param)
        chunks.append(chunk)
    return b"".join(chunks)


__all__ = [
    "METADATA_ADDRESSES",
    "DataUrl",
    "FetchPolicy",
    "MediaRoots",
    "RemoteFetcher",
    "Resolver",
    "api_key_matches",
    "is_public_address",
    "parse_data_url",
    "parse_ports",
    "resolve_host",
]
