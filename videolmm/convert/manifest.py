"""``conversion_manifest.json``: what a conversion read, decided and wrote."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MANIFEST_NAME = "conversion_manifest.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class FileRecord:
    """One file read or written.

    Attributes:
        path: path relative to its root (the input, a tower directory or the output).
        group: ``checkpoint``, ``video_tower``, ``image_tower`` or ``output``.
        bytes: file size.
        sha256: hex digest, or None when hashing was turned off.
    """

    path: str
    group: str
    bytes: int
    sha256: str | None = None


@dataclass(frozen=True)
class ConversionManifest:
    """The record a conversion leaves next to the converted weights.

    Attributes:
        source_layout: the layout converted from (``llava_next_video``, ...).
        source: what ``--source`` said (a layout name or a published checkpoint id).
        input: the original checkpoint directory.
        family: the videolmm family that loads the output.
        model_type: the output config's ``model_type``.
        architectures: the output config's ``architectures``.
        dtype: ``auto`` or the dtype tensors were cast to.
        source_tensors: tensors read per source group.
        mapped: tensors carried into the output (= output parameters written).
        target_parameters: parameters of the output model (tied ones included).
        dropped: tensors not carried over, each with the reason.
        resized: parameters whose rows grew with the vocabulary: ``[source rows, output rows]``.
        added_tokens: tokens added to the tokenizer and their ids.
        vocab: ``{"original": rows, "converted": rows}``.
        settings: every configuration choice and where it came from.
        source_files: files read.
        output_files: weight files written.
        videolmm_version: the converter's version.
        format_version: this manifest's format.
    """

    source_layout: str
    source: str
    input: str
    family: str
    model_type: str
    architectures: list[str]
    dtype: str
    source_tensors: dict[str, int]
    mapped: int
    target_parameters: int
    dropped: list[dict[str, str]] = field(default_factory=list)
    resized: dict[str, list[int]] = field(default_factory=dict)
    added_tokens: dict[str, int] = field(default_factory=dict)
    vocab: dict[str, int] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    source_files: list[FileRecord] = field(default_factory=list)
    output_files: list[FileRecord] = field(default_factory=list)
    videolmm_version: str = ""
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)

    def write(self, directory: Path) -> Path:
        """Write ``conversion_manifest.json`` into ``directory``."""
        path = Path(directory) / MANIFEST_NAME
        path.write_text(json.dumps(self.to_dict(), indent=2, default=str) + "\n", encoding="utf-8")
        return path


def read_manifest(directory: Path) -> Mapping[str, Any]:
    """The manifest of a converted checkpoint as a dict."""
    return json.loads((Path(directory) / MANIFEST_NAME).read_text())


__all__ = ["FORMAT_VERSION", "MANIFEST_NAME", "ConversionManifest", "FileRecord", "read_manifest"]
