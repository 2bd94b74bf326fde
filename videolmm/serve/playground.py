"""``GET /playground``: a page to try the served models in a browser, on the same ingress.

One self-contained page: the HTML, CSS and plain JavaScript in ``videolmm/serve/static/`` (package
data; no CDN, no build step, works offline) are put together once per ingress replica, with the
limits a browser must respect before it sends anything (sizes of ``data:`` URLs and bodies, frame
and token bounds) embedded as JSON. The page holds no secret and is served without the API key;
the API calls it makes (``/v1/models``, ``/v1/chat/completions``) carry the key, which it asks for
when the API answers 401 and keeps in ``sessionStorage``.

The response's Content-Security-Policy allows exactly the page's own inline script and style (by
hash), API calls to this origin, and frames drawn from the person's own files (``blob:``/``data:``).
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from importlib import resources

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from videolmm.serve.config import LimitsConfig

#: Where the page is served.
PATH = "/playground"

#: The limits the page checks before sending (every one is also enforced by the API).
PUBLIC_LIMITS = (
    "max_request_bytes",
    "max_data_url_bytes",
    "max_video_bytes",
    "max_image_bytes",
    "max_frames",
    "max_tokens",
    "max_videos_per_request",
    "max_images_per_request",
)


@dataclass(frozen=True)
class Page:
    """The rendered page and the headers it is served with."""

    html: str
    headers: dict[str, str]


def _static(name: str) -> str:
    return resources.files("videolmm.serve").joinpath("static", name).read_text(encoding="utf-8")


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def page_config(limits: LimitsConfig) -> dict[str, object]:
    """What the page is told about the server: its public limits."""
    return {"limits": {name: getattr(limits, name) for name in PUBLIC_LIMITS}}


def render(limits: LimitsConfig) -> Page:
    """The page with its CSS, JavaScript and :func:`page_config` inlined, and its security headers."""
    style, script = _static("playground.css"), _static("playground.js")
    # "<" escaped: nothing in the JSON can close the script element it sits in
    config = json.dumps(page_config(limits), separators=(",", ":")).replace("<", "\\u003c")
    html = (
        _static("playground.html")
        .replace("/*STYLE*/", style)
        .replace("/*SCRIPT*/", script)
        .replace("/*CONFIG*/", config)
    )
    csp = "; ".join(
        [
            "default-src 'none'",
            f"script-src {_sha256(script)}",
            f"style-src {_sha256(style)}",
            "connect-src 'self'",
            "img-src 'self' blob: data:",
            "media-src 'self' blob: data:",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )
    headers = {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }
    return Page(html, headers)


def mount_playground(app: FastAPI, limits: LimitsConfig) -> None:
    """Add ``GET /playground`` to ``app`` (no API key: the page holds no secret)."""
    page = render(limits)

    @app.get(PATH, include_in_schema=False)
    async def playground() -> HTMLResponse:
        return HTMLResponse(page.html, headers=page.headers)


__all__ = ["PATH", "PUBLIC_LIMITS", "Page", "mount_playground", "page_config", "render"]
