"""Where a request's media are decoded: the MediaDecoder deployment, or the model replica itself.

With ``decode_in: model_replica`` every request is decoded in the model replica. With
``decode_in: media_deployment`` (the default) a request goes through the MediaDecoder unless its
decode is too small to be worth a hop (``inline_decode_max_bytes``): a request without media, or
whose media are all local (``file://`` under a media root, or ``data:`` URLs) and together at most
that many encoded bytes, is sent straight to the model replica, which decodes it with the same
:class:`~videolmm.serve.decode.MediaPipeline` (same limits, same errors). A Serve hop costs more
than decoding a few kilobytes of video (docs/benchmarks.md, Serve); either way the decoded frames
cross processes at most once.

The decision reads only the URL and, for ``file://``, the file's size (``stat``, no bytes read): the
ingress never opens untrusted media. Anything it cannot size cheaply (``http(s)://``, a path it
cannot resolve, a malformed URL) goes to the MediaDecoder, which answers it exactly as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from videolmm.serve.errors import ServeError
from videolmm.serve.jobs import ChatJob
from videolmm.serve.security import MediaRoots

Where = Literal["media_deployment", "model_replica"]


@dataclass(frozen=True)
class Route:
    """Where one request is decoded, and why (logged with the request id).

    Attributes:
        where: ``media_deployment`` (the MediaDecoder) or ``model_replica``.
        reason: ``configured``, ``no media``, ``small media``, ``large media``, ``remote media`` or
            ``unsized media``.
        source_bytes: the encoded bytes of the request's media when they were sized, else None.
    """

    where: Where
    reason: str
    source_bytes: int | None = None

    @property
    def inline(self) -> bool:
        """Whether the model replica decodes this request."""
        return self.where == "model_replica"


def data_url_bytes(url: str) -> int | None:
    """The decoded size of a base64 ``data:`` URL's payload, estimated from its length (None: not base64)."""
    header, sep, payload = url.partition(",")
    if not sep or "base64" not in header.lower():
        return None
    return len(payload.strip()) * 3 // 4


class DecodeRouter:
    """Decide, per request, where its media are decoded.

    Args:
        decode_in: the app's ``decode_in``.
        inline_max_bytes: ``inline_decode_max_bytes``: local media up to this many encoded bytes in
            all are decoded in the model replica; 0 sends every request with media to the MediaDecoder.
        media_roots: ``security.media_roots`` (``file://`` URLs are sized only under them).
    """

    def __init__(self, decode_in: Where, inline_max_bytes: int, media_roots: tuple[str, ...]) -> None:
        self.decode_in = decode_in
        self.inline_max_bytes = inline_max_bytes
        self.roots = MediaRoots(media_roots)

    def route(self, job: ChatJob) -> Route:
        """Where ``job`` is decoded (never raises: an input it cannot size goes to the MediaDecoder)."""
        if self.decode_in == "model_replica":
            return Route("model_replica", "configured")
        if not job.media:
            return Route("model_replica", "no media", 0)
        if self.inline_max_bytes <= 0:
            return Route("media_deployment", "configured")
        total = 0
        for ref in job.media:
            size = self._size(ref.url, ref.param)
            if size is None:
                scheme = ref.url.split(":", 1)[0].lower()
                return Route("media_deployment", "remote media" if scheme in ("http", "https") else "unsized media")
            total += size
            if total > self.inline_max_bytes:
                return Route("media_deployment", "large media", total)
        return Route("model_replica", "small media", total)

    def _size(self, url: str, param: str) -> int | None:
        scheme = url.split(":", 1)[0].lower() if ":" in url else ""
        if scheme == "data":
            return data_url_bytes(url)
        if scheme == "file":
            try:  # the same policy check the decoder makes; a refusal is left to the MediaDecoder's answer
                return self.roots.resolve(url, max_bytes=1 << 62, param=param).stat().st_size
            except (ServeError, OSError):
                return None
        return None


__all__ = ["DecodeRouter", "Route", "data_url_bytes"]
