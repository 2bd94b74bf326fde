"""The media deployment's work, without Ray: fetch → check limits → decode and sample with the core.

:class:`MediaPipeline` resolves each URL of a :class:`~videolmm.serve.jobs.ChatJob` under the
security policy, decodes videos with the core's :class:`~videolmm.media.loader.FrameLoader` (the
registered decoder and sampler, the model's defaults; the app's limits as its
:class:`~videolmm.media.loader.MediaLimits`, checked on the header and the sampler's selection
before any frame is decoded) and images with the core's ``open_image`` (Pillow limited to the
accepted formats), and returns the core's :class:`~videolmm.models.engine.DecodedRequest`, so the
model deployment runs exactly the in-process engine path from there.

Bounded work per request: every video and image of a request is charged to one
:class:`~videolmm.media.loader.DecodeBudget` (``max_decoded_bytes``, F·H·W·3 summed, refused before
decoding), and the whole decode runs under one :class:`~videolmm.media.deadline.Deadline`
(``decode_timeout_s``) that the decoder loops check between packets and frames. The decoding thread
is awaited until it has stopped, even when the caller goes away (the deadline is then cancelled,
and the work stops at its next packet): the replica's ``max_ongoing_requests`` bounds the work
really running. Untrusted bytes never reach decord's bundled 2021 FFmpeg: a model configured with
``decoder: decord`` is read with ``keyframe`` here (:data:`SERVE_DECODERS`; decord's pixels, from
the allow-listed PyAV, stoppable at the deadline).

The model's media defaults are the family's, overridden by the model config, the same rule
:func:`videolmm.models.spec.resolve` applies for the model's engine (the same function), and
computed here without loading the model or the processor: a media replica never imports
transformers. A job that carries its model's :class:`~videolmm.media.resize.FrameResize`
(``media_resize``; the ingress asks the model deployment for it) has its sampled frames resized
and cropped to the model's input size here, as the model's processor would (torch, bit-exact): the
frames cross to the model replica at that size.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from videolmm.errors import DecodeTimeout, MediaError, MediaTooLarge
from videolmm.load import resolve_spec
from videolmm.media.cache import FrameCache
from videolmm.media.deadline import Deadline, deadline_scope
from videolmm.media.images import image_rgb, open_image
from videolmm.media.loader import DecodeBudget, FrameLoader, MediaLimitExceeded, MediaLimits
from videolmm.models.engine import DecodedRequest, error_text
from videolmm.serve.config import ModelConfig, ServeArgs
from videolmm.serve.errors import ApiError, ServeError, bad_request, too_large, unprocessable
from videolmm.serve.jobs import ChatJob, MediaRef
from videolmm.serve.security import FetchPolicy, MediaRoots, RemoteFetcher, parse_data_url, parse_ports
from videolmm.types import Frames, MediaSettings, Request

# Serve attaches the request id and replica to records of "ray.serve" and its children.
logger = logging.getLogger("ray.serve.videolmm.decode")

Source = Path | bytes
#: Container decoders replaced in Serve: decord's bundled FFmpeg (2021) never sees untrusted bytes,
#: and its C++ batch decode cannot stop at a deadline; ``keyframe`` returns decord's pixels.
SERVE_DECODERS = {"decord": "keyframe"}


def decode_timeout(message: str, *, param: str | None = None) -> ServeError:
    """504: decoding the request's media passed ``limits.decode_timeout_s`` and was stopped."""
    return ServeError(ApiError(504, message, type="timeout_error", code="decode_timeout", param=param))


def model_media_settings(model: ModelConfig, *, pm: Any = None) -> MediaSettings:
    """A model's default decoder, sampler and sampling numbers, from the one resolver of defaults.

    Args:
        model: the served model.
        pm: the plugin manager (registry and family detection); None is the process-wide one.

    Returns:
        What the model's engine puts in ``engine.settings.media`` (:func:`videolmm.models.spec.resolve`).
    """
    return resolve_spec(model.engine, pm=pm).media


class MediaPipeline:
    """Turn a :class:`ChatJob` into a :class:`DecodedRequest` under the app's limits and policy.

    Args:
        args: the app's configuration (models, limits, security).
        fetcher: the remote fetcher; None builds one from ``security.remote`` when it is enabled.
        pm: plugin manager; None uses the shared one.
    """

    def __init__(self, args: ServeArgs, *, fetcher: RemoteFetcher | None = None, pm: Any = None) -> None:
        from videolmm.plugin.manager import get_plugin_manager, get_registry

        self.pm = pm or get_plugin_manager()
        self.registry = get_registry(self.pm)
        self.limits = args.limits
        self.roots = MediaRoots(args.security.media_roots)
        remote = args.security.remote
        if fetcher is None and remote.enabled:
            fetcher = RemoteFetcher(
                FetchPolicy(
                    allowed_hosts=remote.allowed_hosts,
                    allowed_schemes=remote.allowed_schemes,
                    timeout_s=remote.timeout_s,
                    max_redirects=remote.max_redirects,
                    exempt_networks=tuple(ipaddress.ip_network(n) for n in remote.allowed_networks),
                    allowed_ports=parse_ports(remote.allowed_ports),
                )
            )
        self.fetcher = fetcher
        self.models = {m.model_id: m for m in args.models}
        self._media: dict[str, MediaSettings] = {}
        self._loaders: dict[str, FrameLoader] = {}

    # -------------------------------------------------------------------------- settings

    def default_media(self, model_id: str) -> MediaSettings:
        """The model's default media settings (computed once per model)."""
        if model_id not in self._media:
            self._media[model_id] = model_media_settings(self.models[model_id], pm=self.pm)
        return self._media[model_id]

    def check_defaults(self) -> None:
        """Fail fast when a model's default frame count exceeds ``limits.max_frames``.

        Raises:
            ValueError: naming the model, its default and the limit.
        """
        for model_id in self.models:
            frames = self.default_media(model_id).sampling.num_frames
            if frames > self.limits.max_frames:
                raise ValueError(
                    f"model {model_id!r} samples {frames} frames by default, above limits.max_frames="
                    f"{self.limits.max_frames}: raise the limit or set num_frames for the model"
                )

    def media_for(self, job: ChatJob) -> MediaSettings:
        """The job's media settings: the model's, with ``media_io_kwargs`` applied and checked."""
        media = self.default_media(job.model_id)
        if media.decoder in SERVE_DECODERS:
            media = replace(media, decoder=SERVE_DECODERS[media.decoder])
        changes: dict[str, Any] = {}
        if job.num_frames is not None:
            changes["num_frames"] = job.num_frames
        if job.fps is not None:
            changes["fps"] = job.fps
        if changes:
            media = replace(media, sampling=replace(media.sampling, **changes))
        if media.sampling.num_frames > self.limits.max_frames:
            raise unprocessable(
                f"num_frames={media.sampling.num_frames} exceeds the limit of {self.limits.max_frames}",
                param="media_io_kwargs.video.num_frames",
            )
        return media

    # -------------------------------------------------------------------------- sources

    def _max_bytes(self, ref: MediaRef) -> int:
        return self.limits.max_video_bytes if ref.kind == "video" else self.limits.max_image_bytes

    async def source(self, ref: MediaRef) -> Source:
        """Resolve one URL to a checked local path or bytes.

        Raises:
            ServeError: refused by the policy (400) or too large (413).
        """
        scheme = ref.url.split(":", 1)[0].lower() if ":" in ref.url else ""
        if scheme == "data":
            limit = min(self.limits.max_data_url_bytes, self._max_bytes(ref))
            return parse_data_url(ref.url, max_bytes=limit, param=ref.param).data
        if scheme == "file":
            return self.roots.resolve(ref.url, max_bytes=self._max_bytes(ref), param=ref.param)
        if scheme in ("http", "https"):
            if self.fetcher is None:
                raise bad_request(
                    f"{ref.param}: remote media fetching is disabled on this server; send a data: URL, or a file:// "
                    "URL under a media root",
                    param=ref.param,
                    code="forbidden",
                )
            return await self.fetcher.fetch(ref.url, max_bytes=self._max_bytes(ref), param=ref.param)
        raise bad_request(
            f"{ref.param}: unsupported URL scheme {scheme!r} (use data:, file:// or http(s)://)", param=ref.param
        )

    # -------------------------------------------------------------------------- decoding

    def frame_loader(self, model_id: str) -> FrameLoader:
        """The core's loader for a model: its frame cache (``frame_cache:`` in the model entry, or
        ``VIDEOLMM_FRAME_CACHE``; a directory shared by replicas is shared by their caches) under the
        app's duration and frame-size limits (413 when crossed)."""
        if model_id not in self._loaders:
            lim = self.limits
            limits = MediaLimits(
                max_duration_s=lim.max_duration_s,
                max_frame_pixels=lim.max_frame_pixels,
                max_source_fps=lim.max_source_fps,
                max_source_frames=lim.max_source_frames,
                max_decode_frames=lim.max_decode_frames,
                max_decoded_bytes=lim.max_decoded_bytes,
            )
            root = self.models[model_id].engine.frame_cache
            cache = FrameCache(root) if root else FrameCache.from_env()
            self._loaders[model_id] = FrameLoader(self.registry, cache=cache, limits=limits)
        return self._loaders[model_id]

    def _video(
        self,
        source: Source,
        media: MediaSettings,
        ref: MediaRef,
        model_id: str,
        budget: DecodeBudget,
        deadline: Deadline,
    ) -> Frames:
        try:
            return self.frame_loader(model_id).load(source, media, budget=budget, deadline=deadline)
        except MediaLimitExceeded as exc:
            raise too_large(f"{ref.param}: {exc}", param=ref.param) from exc
        except DecodeTimeout as exc:
            raise decode_timeout(f"{ref.param}: {exc}", param=ref.param) from exc
        except MediaError as exc:  # the core's own MediaTooLarge (over MAX_FRAME_PIXELS) included: 400
            raise bad_request(f"{ref.param}: {error_text(exc)}", param=ref.param, code="invalid_media") from exc

    def _image(self, source: Source, ref: MediaRef, budget: DecodeBudget) -> np.ndarray:
        label = f"<bytes:{len(source)}>" if isinstance(source, bytes) else str(source)
        try:
            with open_image(source, label) as img:
                width, height = img.size
                if width * height > self.limits.max_frame_pixels:
                    raise too_large(
                        f"{ref.param}: image is {width}x{height}; the limit is {self.limits.max_frame_pixels} pixels",
                        param=ref.param,
                    )
                budget.charge(label, frames=1, width=width, height=height, what="image")
                return image_rgb(img, label)
        except MediaLimitExceeded as exc:
            raise too_large(f"{ref.param}: {exc}", param=ref.param) from exc
        except MediaTooLarge as exc:  # Pillow's decompression-bomb limit, before decoding
            raise too_large(f"{ref.param}: {error_text(exc)}", param=ref.param) from exc
        except MediaError as exc:
            raise bad_request(f"{ref.param}: {error_text(exc)}", param=ref.param, code="invalid_media") from exc

    def decode(
        self, job: ChatJob, media: MediaSettings, sources: list[Source], deadline: Deadline | None = None
    ) -> DecodedRequest:
        """Decode resolved sources (blocking; run it in a worker thread) under one budget and deadline.

        Args:
            job: the request.
            media: its media settings (:meth:`media_for`).
            sources: one resolved source per ``job.media`` entry.
            deadline: stops the decoders when passed or cancelled; None starts one of ``decode_timeout_s``.
        """
        start = time.perf_counter()
        deadline = deadline or Deadline(self.limits.decode_timeout_s)
        budget = DecodeBudget(self.limits.max_decoded_bytes)
        videos: list[Frames] = []
        images: list[np.ndarray] = []
        with deadline_scope(deadline):
            for ref, source in zip(job.media, sources, strict=True):
                if ref.kind == "video":
                    frames = self._video(source, media, ref, job.model_id, budget, deadline)
                    videos.append(job.resize.apply_frames(frames) if job.resize is not None else frames)
                else:
                    images.append(self._image(source, ref, budget))
        request = Request(
            question=job.question,
            videos=tuple(v.source for v in videos),
            images=tuple(f"<image:{i}>" for i in range(len(images))),
            generation=job.generation,
            media=media,
            request_id=job.request_id,
            system_prompt=job.system_prompt,
            turns=job.turns,
        )
        return DecodedRequest(request, tuple(videos), tuple(images), decode_seconds=time.perf_counter() - start)

    async def decode_async(self, job: ChatJob, media: MediaSettings, sources: list[Source]) -> DecodedRequest:
        """:meth:`decode` in a worker thread, awaited until the thread has stopped.

        When the caller is cancelled (the client went away), the deadline is cancelled, the
        decoder stops at its next packet or frame, and only then does the cancellation propagate:
        the request's slot stays taken while its work runs, and no decode outlives its request.
        """
        deadline = Deadline(self.limits.decode_timeout_s)
        work = asyncio.ensure_future(asyncio.to_thread(self.decode, job, media, sources, deadline))
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            deadline.cancel()
            while not work.done():
                try:
                    await asyncio.wait({work})
                except asyncio.CancelledError:  # cancelled again: the work is stopping; keep waiting
                    continue
            error = None if work.cancelled() else work.exception()
            outcome = type(work.result()).__name__ if error is None and not work.cancelled() else repr(error)
            if isinstance(error, ServeError):
                outcome = f"{error.error.status} {error.error.code}"
            logger.info("rid=%s caller went away; the decode has stopped (%s)", job.request_id, outcome)
            raise

    async def run(self, job: ChatJob) -> DecodedRequest:
        """Fetch, check and decode everything a job refers to.

        Raises:
            ServeError: the first refused or undecodable input (400/413/422), or 504 when decoding
                passed ``limits.decode_timeout_s``.
        """
        start = time.perf_counter()
        media = self.media_for(job)
        sources = [await self.source(ref) for ref in job.media]
        fetched = time.perf_counter() - start
        decoded = await self.decode_async(job, media, sources)
        logger.info(
            "rid=%s decoded %d video(s) %s and %d image(s) in %.3f s (fetch %.3f s)",
            job.request_id,
            len(decoded.videos),
            [v.num_frames for v in decoded.videos],
            len(decoded.images),
            decoded.decode_seconds,
            fetched,
        )
        return replace(decoded, decode_seconds=decoded.decode_seconds + fetched)


__all__ = ["SERVE_DECODERS", "MediaPipeline", "decode_timeout", "model_media_settings"]
