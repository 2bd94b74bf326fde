"""An optional on-disk cache of decoded, sampled frames, shared across runs and processes.

A second evaluation run over the same videos with the same decoder and sampler settings reads the
frames back instead of decoding them. Opt in with ``VIDEOLMM_FRAME_CACHE=DIR`` (read when an engine
is built), the ``frame_cache=DIR`` model argument of the lmms-eval models, or by setting
``engine.frame_cache = FrameCache(DIR)``.

**Key.** SHA-256 over the cache format version, the *file identity* and the settings:

* a file: its resolved path, size and ``st_mtime_ns`` (editing or replacing the file changes it);
* container bytes: a SHA-256 of the bytes;
* a frames directory: its resolved path and every entry's name, size and ``st_mtime_ns``;
* the registry name of the decoder, the sampler's name and every :class:`SamplingSpec` field.

In-memory image lists are never cached (they have no identity cheaper than their pixels).

**Entries.** One uncompressed ``.npz`` per key under ``DIR/<key[:2]>/``: the ``(T, H, W, 3)``
uint8 array and the :class:`Frames` metadata as UTF-8 JSON bytes (loaded with
``allow_pickle=False``: nothing is unpickled). An entry is written to a temporary file in the same
directory and published with ``os.replace``, so readers see a whole entry or none, and concurrent
writers of one key simply replace each other's identical entry.

**Size bound.** After each write the cache evicts least-recently-used entries (by access time,
which a hit refreshes explicitly, so ``noatime`` mounts work) until the total is at most
``max_bytes``. Eviction tolerates entries that another process removed or replaced meanwhile. An
unreadable entry is logged, removed and treated as a miss.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from videolmm.media.base import VideoDecoder, load_frames
from videolmm.media.sampling import Sampler
from videolmm.types import Frames, SamplingSpec, VideoSource

logger = logging.getLogger(__name__)

#: Environment variable naming the cache directory; unset or empty disables the cache.
ENV_VAR = "VIDEOLMM_FRAME_CACHE"
#: Environment variable for the size bound, in bytes (default :data:`DEFAULT_MAX_BYTES`).
ENV_MAX_BYTES = "VIDEOLMM_FRAME_CACHE_MAX_BYTES"
#: Default size bound: 8 GiB.
DEFAULT_MAX_BYTES = 8 << 30
#: Bumped whenever the key or the entry layout changes.
FORMAT_VERSION = 1
_SUFFIX = ".npz"
_TMP_PREFIX = ".tmp-"
_STALE_TMP_SECONDS = 3600.0


@dataclass(frozen=True)
class CacheStats:
    """Counters of one :class:`FrameCache` object (this process only).

    Attributes:
        hits: loads answered from disk.
        misses: loads that had to decode (cacheable sources only).
        bypassed: loads of sources that cannot be cached (in-memory images).
        writes: entries written.
        evictions: entries removed to respect the size bound.
        errors: unreadable entries found (removed and treated as misses).
    """

    hits: int = 0
    misses: int = 0
    bypassed: int = 0
    writes: int = 0
    evictions: int = 0
    errors: int = 0


def source_identity(source: VideoSource) -> dict[str, Any] | None:
    """What identifies a source's content cheaply, or None when it cannot be cached.

    Args:
        source: a path, container bytes, a frames directory or an image sequence.

    Returns:
        A JSON-able dict (see the module docstring), or None for in-memory image sequences and
        paths that do not exist (decoding them raises the usual MediaNotFound).
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            resolved = path.resolve(strict=True)
            st = resolved.stat()
        except FileNotFoundError:
            return None  # the decoder raises its own MediaNotFound
        if resolved.is_dir():
            entries = []
            with os.scandir(resolved) as it:
                for entry in sorted(it, key=lambda e: e.name):
                    try:
                        est = entry.stat()
                    except FileNotFoundError:  # a dangling symlink, or removed meanwhile
                        entries.append([entry.name, None, None])
                        continue
                    entries.append([entry.name, est.st_size, est.st_mtime_ns])
            return {"kind": "dir", "path": str(resolved), "entries": entries}
        return {"kind": "file", "path": str(resolved), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if isinstance(source, (bytes, bytearray, memoryview)):
        view = memoryview(source)
        return {"kind": "bytes", "sha256": hashlib.sha256(view).hexdigest(), "size": view.nbytes}
    return None


def cache_key(identity: dict[str, Any], *, decoder: str, sampler: str, spec: SamplingSpec) -> str:
    """The hex SHA-256 key of one (source, decoder, sampler, spec) combination."""
    payload = {
        "version": FORMAT_VERSION,
        "source": identity,
        "decoder": decoder,
        "sampler": sampler,
        "spec": asdict(spec),
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


def _frames_meta(frames: Frames) -> dict[str, Any]:
    return {
        "indices": list(frames.indices),
        "timestamps": list(frames.timestamps),
        "fps": frames.fps,
        "duration": frames.duration,
        "source": frames.source,
        "num_source_frames": frames.num_source_frames,
        "frame_time": frames.frame_time,
        "decoder": frames.decoder,
        "sampler": frames.sampler,
    }


def _frames_from(array: np.ndarray, meta: dict[str, Any]) -> Frames:
    return Frames(
        array=array,
        indices=tuple(int(i) for i in meta["indices"]),
        timestamps=tuple(float(t) for t in meta["timestamps"]),
        fps=float(meta["fps"]),
        duration=float(meta["duration"]),
        source=str(meta["source"]),
        num_source_frames=int(meta["num_source_frames"]),
        frame_time=meta["frame_time"],
        decoder=str(meta["decoder"]),
        sampler=str(meta["sampler"]),
    )


class FrameCache:
    """A size-bounded directory of decoded frames (see the module docstring).

    Safe to share between threads and between processes pointing at the same directory.

    Args:
        root: the cache directory (created when missing).
        max_bytes: size bound over all entries; the least recently used are evicted beyond it.
    """

    def __init__(self, root: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_bytes <= 0:
            raise ValueError(f"frame cache max_bytes must be positive, got {max_bytes}")
        self.root = Path(root).expanduser()
        self.max_bytes = int(max_bytes)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._stats = CacheStats()

    @classmethod
    def from_env(cls) -> FrameCache | None:
        """The cache ``VIDEOLMM_FRAME_CACHE`` names (bounded by ``VIDEOLMM_FRAME_CACHE_MAX_BYTES``), or None."""
        root = os.environ.get(ENV_VAR, "").strip()
        if not root:
            return None
        raw = os.environ.get(ENV_MAX_BYTES, "").strip()
        try:
            max_bytes = int(raw) if raw else DEFAULT_MAX_BYTES
        except ValueError:
            raise ValueError(f"{ENV_MAX_BYTES}={raw!r} is not an integer number of bytes") from None
        return cls(root, max_bytes=max_bytes)

    # ------------------------------------------------------------------ stats

    @property
    def stats(self) -> CacheStats:
        """This object's counters so far."""
        return self._stats

    def add_stats(self, other: CacheStats) -> None:
        """Add counters kept elsewhere (a decode process's copy of this cache) to this object's."""
        self._count(**asdict(other))

    def _count(self, **deltas: int) -> None:
        with self._lock:
            values = asdict(self._stats)
            for name, delta in deltas.items():
                values[name] += delta
            self._stats = CacheStats(**values)

    # ------------------------------------------------------------------ entries

    def path_for(self, key: str) -> Path:
        """Where the entry for ``key`` lives."""
        return self.root / key[:2] / f"{key}{_SUFFIX}"

    def get(self, key: str) -> Frames | None:
        """The cached frames for ``key``, or None (a missing or unreadable entry)."""
        path = self.path_for(key)
        try:
            with np.load(path, allow_pickle=False) as data:
                array = data["array"]
                meta = json.loads(data["meta"].tobytes().decode("utf-8"))
            frames = _frames_from(array, meta)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
            logger.warning("frame cache: removing unreadable entry %s (%s: %s)", path, type(exc).__name__, exc)
            self._count(errors=1)
            _unlink_quietly(path)
            return None
        try:
            now = time.time()
            os.utime(path, (now, path.stat().st_mtime))  # LRU clock, independent of mount options
        except FileNotFoundError:
            pass  # evicted by another process right after we read it: the frames are still good
        return frames

    def put(self, key: str, frames: Frames) -> Path:
        """Write an entry atomically, then enforce the size bound. Returns the entry's path."""
        path = self.path_for(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = np.frombuffer(json.dumps(_frames_meta(frames)).encode("utf-8"), dtype=np.uint8)
        fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, suffix=_SUFFIX, dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                np.savez(handle, array=frames.array, meta=meta)
            os.replace(tmp, path)
        except BaseException:
            _unlink_quietly(Path(tmp))
            raise
        self._count(writes=1)
        self.evict()
        return path

    def evict(self) -> int:
        """Remove least-recently-used entries until the total is within ``max_bytes``; returns how many."""
        entries: list[tuple[float, int, Path]] = []
        total = 0
        now = time.time()
        for sub in _scandir_quietly(self.root):
            if not sub.is_dir(follow_symlinks=False):
                continue
            for entry in _scandir_quietly(Path(sub.path)):
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if entry.name.startswith(_TMP_PREFIX):
                    if now - st.st_mtime > _STALE_TMP_SECONDS:  # a writer that died mid-write
                        _unlink_quietly(Path(entry.path))
                    continue
                if entry.name.endswith(_SUFFIX):
                    entries.append((st.st_atime, st.st_size, Path(entry.path)))
                    total += st.st_size
        removed = 0
        for _, size, path in sorted(entries, key=lambda e: e[0]):
            if total <= self.max_bytes:
                break
            if _unlink_quietly(path):
                removed += 1
            total -= size
        if removed:
            self._count(evictions=removed)
        return removed

    def total_bytes(self) -> int:
        """Bytes held by complete entries now."""
        total = 0
        for path in self.root.glob(f"*/*{_SUFFIX}"):
            if path.name.startswith(_TMP_PREFIX):
                continue
            try:
                total += path.stat().st_size
            except FileNotFoundError:
                continue
        return total

    # ------------------------------------------------------------------ load

    def read_through(
        self,
        source: VideoSource,
        *,
        decoder_name: str,
        sampler_name: str,
        spec: SamplingSpec,
        decode: Callable[[], Frames],
        check: Callable[[Frames], None] | None = None,
    ) -> Frames:
        """The cached frames for these settings, else ``decode()``'s, written to the cache.

        Args:
            source: any video source (image sequences bypass the cache: ``decode()`` every time).
            decoder_name: the decoder's registry name (part of the key).
            sampler_name: the sampler's registry name (part of the key).
            spec: sampling numbers (part of the key).
            decode: produces the frames on a miss.
            check: called on a hit before the frames are returned (e.g. size limits); may raise.

        Returns:
            The frames, decoded now or read back (bit-identical either way).
        """
        identity = source_identity(source)
        if identity is None:
            self._count(bypassed=1)
            return decode()
        key = cache_key(identity, decoder=decoder_name, sampler=sampler_name, spec=spec)
        cached = self.get(key)
        if cached is not None:
            self._count(hits=1)
            if check is not None:
                check(cached)
            return cached
        self._count(misses=1)
        frames = decode()
        self.put(key, frames)
        return frames

    def load_frames(
        self,
        source: VideoSource,
        *,
        decoder_name: str,
        decoder: VideoDecoder,
        sampler: Sampler,
        spec: SamplingSpec,
        sampler_name: str,
    ) -> Frames:
        """:func:`~videolmm.media.base.load_frames` through the cache, for one explicit decoder and sampler.

        :class:`~videolmm.media.loader.FrameLoader` does the same by registry name, under size limits.

        Args:
            source: any video source (image sequences bypass the cache).
            decoder_name: the decoder's registry name (part of the key).
            decoder: the decoder to use on a miss.
            sampler: the sampler to use on a miss.
            spec: sampling numbers (part of the key).
            sampler_name: the sampler's registry name (part of the key).

        Returns:
            The frames, decoded now or read back (bit-identical either way).
        """
        return self.read_through(
            source,
            decoder_name=decoder_name,
            sampler_name=sampler_name,
            spec=spec,
            decode=lambda: load_frames(source, decoder=decoder, sampler=sampler, spec=spec, sampler_name=sampler_name),
        )


def _scandir_quietly(folder: Path) -> list[os.DirEntry[str]]:
    """``os.scandir`` as a list; a folder removed meanwhile is empty."""
    try:
        with os.scandir(folder) as it:
            return list(it)
    except FileNotFoundError:
        return []


def _unlink_quietly(path: Path) -> bool:
    """Remove a file another process may already have removed; True when this call removed it."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


__all__ = ["DEFAULT_MAX_BYTES", "ENV_MAX_BYTES", "ENV_VAR", "CacheStats", "FrameCache", "cache_key", "source_identity"]
