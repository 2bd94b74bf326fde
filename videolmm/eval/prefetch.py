"""Decoding evaluation requests ahead of generation, from the spec alone, while the model loads.

:class:`EarlyMedia` decodes exactly as the engine does (:meth:`Engine.decode
<videolmm.models.engine.Engine.decode>` over the same spec-derived media settings, registry and frame
cache) but needs no weights, so decoding can start before the engine exists.

:class:`DecodePipeline` decodes a call's requests in order, in a thread pool, ahead of the
consumer (the generation loop), which takes them batch by batch:

- ``prefetch`` batches ahead while generation runs (0: each batch only when it is asked for), one
  more each time generation had to wait although decoding keeps up on average (measured: decode
  seconds per decode thread against generation seconds; a wait then comes from uneven decode costs,
  which depth absorbs), up to ``4 * prefetch`` and only while the frames waiting stay under
  ``preload_bytes``; when decoding is slower than generation, more depth cannot help and none is
  added;
- while the model still loads, further ahead, as long as the decoded, not yet consumed frames stay
  under ``preload_bytes`` (``prefetch > 0`` only);
- ``workers`` decodes at once while generation runs; ``burst`` (every core by default) while
  nothing generates: during the load and whenever the consumer is blocked on a batch, so the cores
  generation leaves idle decode; while the model loads, ``load_workers`` (default ``burst``) decodes
  at once, through ``load_decode`` when given (the eval model's decode processes,
  :mod:`videolmm.eval.forked`: one per process, so that they take the requests in order);
- requests about the same media (several questions per video) share one decode; the frames are
  dropped once the last request that needs them has been handed over.

It measures the time the consumer was blocked (``wait_s``; the first batch's apart) and the
decodes finished while the model loaded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from videolmm.load import host, resolve_spec
from videolmm.media.cache import FrameCache
from videolmm.media.loader import FrameLoader
from videolmm.models.engine import DecodedRequest, Engine
from videolmm.models.spec import EngineSpec
from videolmm.types import Frames, MediaSettings, Request

#: Default bound on decoded, not yet consumed frames while the model loads (bytes).
PRELOAD_BYTES = 2 << 30


class EarlyMedia:
    """The engine's decoding, from the spec (no weights): same media settings, registry and cache.

    Attributes:
        registry: the plugin host's registry (decoders, samplers).
        media: the resolved media settings (explicit value → ``videolmm.json`` → family default).
        frame_cache: the frame cache ``frame_cache=`` / ``VIDEOLMM_FRAME_CACHE`` names, or None.
    """

    def __init__(self, spec: EngineSpec, *, pm: Any = None) -> None:
        self.registry = host(pm)[0]
        self.media: MediaSettings = resolve_spec(spec, pm=pm).media
        self.frame_cache = FrameCache(spec.frame_cache) if spec.frame_cache else FrameCache.from_env()

    def media_for(self, request: Request) -> MediaSettings:
        """The media settings a request runs with (its own override, else the spec's)."""
        return request.media or self.media

    def load_video(self, source: Any, media: MediaSettings | None = None) -> Frames:
        """Decode and sample one video source through the frame cache, as the engine does."""
        return FrameLoader(self.registry, cache=self.frame_cache).load(source, media or self.media)

    def decode(self, request: Request | DecodedRequest) -> DecodedRequest:
        """:meth:`Engine.decode` itself (it uses only ``media_for`` and ``load_video``): a failure is
        recorded in the result, never raised."""
        return Engine.decode(self, request)  # type: ignore[arg-type]


def frames_bytes(item: DecodedRequest) -> int:
    """Bytes of a decoded request's frames and images."""
    return sum(v.array.nbytes for v in item.videos) + sum(getattr(i, "nbytes", 0) for i in item.images)


def deeper(depth: int, prefetch: int, decode_s: float, generate_s: float) -> int:
    """The prefetch depth after generation waited on a batch (not the first).

    Args:
        depth: the depth now.
        prefetch: the configured depth (0: no decoding ahead, kept).
        decode_s: decode seconds so far per decode thread.
        generate_s: generation seconds so far (the consumer's time between batches).

    Returns:
        ``depth + 1`` (at most ``4 * prefetch``) when decoding keeps up on average, i.e. the wait came
        from uneven decode costs that more depth absorbs; else ``depth`` (decoding is the bottleneck).
    """
    if prefetch <= 0 or decode_s >= generate_s:
        return depth
    return min(depth + 1, 4 * prefetch)


class DecodePipeline:
    """Decodes ``requests`` ahead of a consumer that takes them in batches (see the module doc).

    Use as a context manager (the pool is shut down on exit); decoding starts at construction.

    Attributes:
        wait_s: time :meth:`batches` blocked on a batch not yet decoded.
        first_wait_s: the part of ``wait_s`` spent on the first batch.
        decodes: decodes made (shared ones counted once).
        decoded_during_load: decodes finished before :meth:`loaded` was called.
    """

    def __init__(
        self,
        decode: Callable[[Any], DecodedRequest],
        requests: Sequence[Any],
        *,
        batch_size: int,
        prefetch: int,
        workers: int,
        burst: int | None = None,
        load_decode: Callable[[Any], DecodedRequest] | None = None,
        load_workers: int | None = None,
        media_key: Callable[[Any], Hashable | None] = lambda _: None,
        preload_bytes: int = PRELOAD_BYTES,
        loading: bool = True,
    ) -> None:
        self._decode = decode
        self._load_decode = load_decode or decode
        self._requests = list(requests)
        self._bs = max(1, int(batch_size))
        self._prefetch = self.depth = max(0, int(prefetch))
        self._workers = max(1, int(workers))
        self._burst = max(self._workers, int(burst or self._workers))
        self._load_workers = max(1, int(load_workers or self._burst))
        self._preload_bytes = int(preload_bytes)
        self._keys = [media_key(r) for r in self._requests]
        self._last_use = {k: i for i, k in enumerate(self._keys) if k is not None}
        self._cond = threading.Condition()
        # guarded by _cond:
        self._shared: dict[Hashable, int] = {}  # media key -> the index whose decode it shares
        self._source: dict[int, int] = {}  # request index -> index of the decode it uses
        self._done: dict[int, DecodedRequest] = {}
        self._errors: dict[int, BaseException] = {}
        self._sizes: dict[int, int] = {}
        self._held = 0  # bytes decoded and not yet released
        self._next = 0
        self._inflight = 0
        self._asked = 0  # the batch the consumer asks for (or generates)
        self._waiting = False
        self._loading = loading
        self.wait_s = 0.0
        self.first_wait_s = 0.0
        self.decodes = 0
        self.decoded_during_load = 0
        self.decode_busy_s = 0.0  # decode seconds summed over decodes
        self.generate_s = 0.0  # consumer time between taking a batch and asking for the next
        threads = max(self._burst, self._load_workers)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="videolmm-decode")
        with self._cond:
            self._pump()

    # -- the consumer side -------------------------------------------------------------

    def loaded(self) -> None:
        """The model is loaded: from now on decode ``prefetch`` batches ahead with ``workers`` threads."""
        with self._cond:
            self._loading = False

    def batches(self) -> Iterator[list[DecodedRequest]]:
        """Yield the decoded requests batch by batch, in order, waiting where a batch is not ready."""
        n = len(self._requests)
        handed: float | None = None
        for b, start in enumerate(range(0, n, self._bs)):
            span = range(start, min(start + self._bs, n))
            asked = time.perf_counter()
            with self._cond:
                if handed is not None:
                    self.generate_s += asked - handed
                self._asked = b
                self._pump()
                if not self._ready(span):
                    began = time.perf_counter()
                    self._waiting = True
                    self._pump()
                    while not self._ready(span):
                        self._cond.wait()
                    self._waiting = False
                    waited = time.perf_counter() - began
                    self.wait_s += waited
                    if b == 0:
                        self.first_wait_s += waited
                    else:
                        per_thread = self.decode_busy_s / self._workers
                        self.depth = deeper(self.depth, self._prefetch, per_thread, self.generate_s)
                batch = [self._take(i) for i in span]
                self._release(span)
                self._pump()
            handed = time.perf_counter()
            yield batch

    def _ready(self, span: range) -> bool:
        return all(i in self._source and self._source[i] in self._done for i in span)

    def _take(self, i: int) -> DecodedRequest:
        j = self._source[i]
        if j in self._errors:
            raise self._errors[j]
        done = self._done[j]
        if j == i:
            return done
        return DecodedRequest(self._requests[i], done.videos, done.images, done.error, decode_seconds=0.0)

    def _release(self, span: range) -> None:
        """Drop the frames no later request needs."""
        end = span[-1]
        for i in span:
            j = self._source.pop(i)
            key = self._keys[i]
            if key is not None and self._last_use[key] > end:
                continue
            if key is not None:
                self._shared.pop(key, None)
            self._done.pop(j, None)
            self._held -= self._sizes.pop(j, 0)

    # -- the decoding side -----------------------------------------------------------------

    def _pump(self) -> None:
        """Submit what the rules allow (called with ``_cond`` held)."""
        n = len(self._requests)
        while self._next < n:
            i = self._next
            key = self._keys[i]
            if key is not None and key in self._shared:
                self._source[i] = self._shared[key]
                self._next += 1
                continue
            # nothing generates: every allowed thread decodes (while the model loads, ``load_workers``)
            limit = self._load_workers if self._loading else self._burst if self._waiting else self._workers
            if self._inflight >= limit:
                return
            ahead = i // self._bs - self._asked
            if ahead > self._prefetch:
                room = self._held < self._preload_bytes  # past `prefetch` only while the frames fit
                if not (room and (self._loading and self._prefetch > 0 or ahead <= self.depth)):
                    return
            if key is not None:
                self._shared[key] = i
            self._source[i] = i
            self._inflight += 1
            self.decodes += 1
            self._next += 1
            self._pool.submit(self._run, i, self._load_decode if self._loading else self._decode)

    def _run(self, i: int, decode: Callable[[Any], DecodedRequest]) -> None:
        out: DecodedRequest | None = None
        error: BaseException | None = None
        began = time.perf_counter()
        try:
            out = decode(self._requests[i])
        except BaseException as exc:  # decode records failures itself; anything else reaches the consumer
            error = exc
        with self._cond:
            self._inflight -= 1
            self.decode_busy_s += time.perf_counter() - began
            if out is not None:
                self._done[i] = out
                self._sizes[i] = frames_bytes(out)
                self._held += self._sizes[i]
            else:
                self._errors[i] = error if error is not None else RuntimeError(f"decode of request {i} gave nothing")
                self._done[i] = DecodedRequest(self._requests[i])
            if self._loading:
                self.decoded_during_load += 1
            self._pump()
            self._cond.notify_all()

    def close(self) -> None:
        """Stop submitting and wait for the decodes in flight."""
        with self._cond:
            self._next = len(self._requests)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> DecodePipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["PRELOAD_BYTES", "DecodePipeline", "EarlyMedia", "deeper", "frames_bytes"]
