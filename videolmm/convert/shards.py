"""Streaming weight I/O: read source shards one tensor at a time, write output shards as they fill.

A conversion never holds two copies of the model: source files are memory-mapped
(``safetensors.safe_open``; ``torch.load(mmap=True)`` for ``.bin``) and read tensor by tensor,
and the writer keeps at most one output shard (``max_shard_bytes``) in memory before it goes
to disk. Shapes and dtypes are known before any tensor is read, so a conversion can be
planned and refused before it writes anything.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from videolmm.errors import ConfigError

#: Called with one line of progress text.
Progress = Callable[[str], None]

SAFETENSORS_INDEX = "model.safetensors.index.json"
BIN_INDEX = "pytorch_model.bin.index.json"
_HASH_CHUNK = 16 * 1024 * 1024


@dataclass(frozen=True)
class TensorRef:
    """One tensor of a source checkpoint, known by name, shape and dtype before it is read.

    Attributes:
        group: which source it belongs to (``checkpoint``, ``video_tower``, ...).
        key: the tensor's name in its file.
        shape: its shape.
        dtype: its dtype as a torch name (``bfloat16``, ``float16``, ``float32``, ...).
        file: the file holding it.
    """

    group: str
    key: str
    shape: tuple[int, ...]
    dtype: str
    file: Path

    @property
    def name(self) -> str:
        """``group:key``, the namespaced name the conversion rules match."""
        return f"{self.group}:{self.key}"


_SAFETENSORS_DTYPES = {
    "BF16": "bfloat16",
    "F16": "float16",
    "F32": "float32",
    "F64": "float64",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U8": "uint8",
    "BOOL": "bool",
}


def weight_files(directory: Path) -> list[Path]:
    """The weight files of a checkpoint directory, in shard order.

    Order of preference: the safetensors index, ``*.safetensors``, the ``.bin`` index,
    ``pytorch_model*.bin`` / ``model*.bin``.

    Raises:
        ConfigError: the directory holds no weights, or its index names a missing file.
    """
    for index_name, pattern in ((SAFETENSORS_INDEX, "*.safetensors"), (BIN_INDEX, "*.bin")):
        index = directory / index_name
        if index.is_file():
            weight_map = json.loads(index.read_text()).get("weight_map", {})
            files = [directory / name for name in sorted(set(weight_map.values()))]
            missing = [str(f) for f in files if not f.is_file()]
            if missing:
                raise ConfigError(f"{index}: names shard(s) that do not exist: {missing}")
            return files
        found = sorted(p for p in directory.glob(pattern) if _is_weight_file(p))
        if found:
            return found
    raise ConfigError(f"{directory}: no weight files (*.safetensors or pytorch_model*.bin)")


def _is_weight_file(path: Path) -> bool:
    if path.suffix == ".safetensors":
        return True
    return path.name.startswith(("pytorch_model", "model")) and path.suffix == ".bin"


class WeightFile:
    """One open weight file: names, shapes and dtypes up front, tensors on demand.

    Use as a context manager. ``.safetensors`` files are read through ``safe_open``; ``.bin``
    files through ``torch.load(mmap=True, weights_only=True)`` (a legacy, non-zip ``.bin``
    cannot be memory-mapped and is loaded whole, with a progress note).
    """

    def __init__(self, path: Path, group: str, progress: Progress | None = None) -> None:
        self.path = Path(path)
        self.group = group
        self._progress = progress
        self._safe: Any = None
        self._tensors: dict[str, Any] | None = None

    def __enter__(self) -> WeightFile:
        if self.path.suffix == ".safetensors":
            from safetensors import safe_open

            try:
                self._safe = safe_open(str(self.path), framework="pt", device="cpu")
            except Exception as exc:  # safetensors raises its own error types; name the file
                raise ConfigError(f"{self.path}: not a readable safetensors file ({exc})") from exc
        else:
            self._tensors = _load_bin(self.path, self._progress)
        return self

    def __exit__(self, *exc: object) -> None:
        self._safe = None
        self._tensors = None

    def _bin(self) -> dict[str, Any]:
        if self._tensors is None:
            raise RuntimeError(f"{self.path}: use WeightFile as a context manager before reading it")
        return self._tensors

    def refs(self) -> list[TensorRef]:
        """Every tensor of the file, in file order."""
        if self._safe is not None:
            out = []
            for key in self._safe.keys():
                sl = self._safe.get_slice(key)
                dtype = _SAFETENSORS_DTYPES.get(sl.get_dtype(), sl.get_dtype().lower())
                out.append(TensorRef(self.group, key, tuple(int(d) for d in sl.get_shape()), dtype, self.path))
            return out
        return [
            TensorRef(self.group, k, tuple(int(d) for d in v.shape), str(v.dtype).removeprefix("torch."), self.path)
            for k, v in self._bin().items()
        ]

    def get(self, key: str) -> Any:
        """The tensor ``key`` (a fresh CPU tensor)."""
        if self._safe is not None:
            return self._safe.get_tensor(key)
        return self._bin()[key]


def _load_bin(path: Path, progress: Progress | None) -> dict[str, Any]:
    import torch

    try:
        data = torch.load(str(path), map_location="cpu", mmap=True, weights_only=True)
    except RuntimeError as exc:
        if "mmap" not in str(exc):
            raise ConfigError(f"{path}: not a readable PyTorch weight file ({exc})") from exc
        if progress:
            progress(f"{path.name}: legacy (non-zip) .bin cannot be memory-mapped; loading it whole")
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle and zip errors come in many types; name the file
        raise ConfigError(f"{path}: not a readable PyTorch weight file ({type(exc).__name__}: {exc})") from exc
    if isinstance(data, dict) and "state_dict" in data and isinstance(data["state_dict"], dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise ConfigError(f"{path}: expected a state dict (a mapping of names to tensors)")
    return data


def list_refs(files: list[Path], group: str, progress: Progress | None = None) -> list[TensorRef]:
    """Names, shapes and dtypes of every tensor in ``files`` (reads headers only).

    Raises:
        ConfigError: a tensor name appears in two files.
    """
    refs: list[TensorRef] = []
    seen: dict[str, Path] = {}
    for path in files:
        with WeightFile(path, group, progress) as handle:
            for ref in handle.refs():
                if ref.key in seen:
                    raise ConfigError(f"tensor {ref.key!r} appears in both {seen[ref.key]} and {path}")
                seen[ref.key] = path
                refs.append(ref)
    return refs


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 16 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def parse_size(text: str | int) -> int:
    """``"5GB"`` → bytes (decimal units, as ``save_pretrained``'s ``max_shard_size``)."""
    if isinstance(text, int):
        return text
    units = {"KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "B": 1}
    value = text.strip().upper()
    for unit, factor in units.items():
        if value.endswith(unit):
            number = value[: -len(unit)].strip()
            try:
                return int(float(number) * factor)
            except ValueError:
                break
    raise ConfigError(f"max shard size {text!r}: expected a number with a unit, e.g. 5GB or 500MB")


class ShardWriter:
    """Write tensors into safetensors shards of at most ``max_shard_bytes`` (one tensor larger
    than that gets a shard of its own), then name them the way ``save_pretrained`` does.

    Args:
        out_dir: the output checkpoint directory.
        max_shard_bytes: shard size limit.
        progress: progress callback.
    """

    def __init__(self, out_dir: Path, max_shard_bytes: int, progress: Progress | None = None) -> None:
        self.out_dir = Path(out_dir)
        self.max_shard_bytes = max_shard_bytes
        self._progress = progress
        self._pending: dict[str, Any] = {}
        self._pending_bytes = 0
        self._written: list[tuple[Path, list[str], int]] = []
        self.total_bytes = 0

    def add(self, key: str, tensor: Any) -> None:
        """Queue one tensor; flushes the current shard first when it would overflow."""
        size = tensor.numel() * tensor.element_size()
        if self._pending and self._pending_bytes + size > self.max_shard_bytes:
            self._flush()
        self._pending[key] = tensor.contiguous()
        self._pending_bytes += size
        self.total_bytes += size

    def _flush(self) -> None:
        from safetensors.torch import save_file

        path = self.out_dir / f".shard-{len(self._written):05d}.tmp"
        save_file(self._pending, str(path), metadata={"format": "pt"})
        self._written.append((path, list(self._pending), self._pending_bytes))
        if self._progress:
            self._progress(f"wrote shard {len(self._written)} ({self._pending_bytes / 1e6:.1f} MB)")
        self._pending = {}
        self._pending_bytes = 0

    def close(self) -> list[Path]:
        """Flush, rename the shards to their final names and write the index when sharded.

        Returns:
            The final shard paths.
        """
        if self._pending:
            self._flush()
        count = len(self._written)
        if count == 0:
            raise ConfigError("no tensors were written")
        names = (
            ["model.safetensors"]
            if count == 1
            else [f"model-{i + 1:05d}-of-{count:05d}.safetensors" for i in range(count)]
        )
        weight_map: dict[str, str] = {}
        final = []
        for (tmp, keys, _), name in zip(self._written, names, strict=True):
            target = self.out_dir / name
            os.replace(tmp, target)
            final.append(target)
            weight_map.update({k: name for k in keys})
        if count > 1:
            index = {"metadata": {"total_size": self.total_bytes}, "weight_map": dict(sorted(weight_map.items()))}
            (self.out_dir / SAFETENSORS_INDEX).write_text(json.dumps(index, indent=2) + "\n")
        return final


__all__ = [
    "BIN_INDEX",
    "SAFETENSORS_INDEX",
    "Progress",
    "ShardWriter",
    "TensorRef",
    "WeightFile",
    "list_refs",
    "parse_size",
    "sha256_file",
    "weight_files",
]
