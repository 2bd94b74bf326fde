"""What a source layout is: how to recognise an original checkpoint and what to turn it into.

A layout (one module per original code base) reads the original ``config.json`` and decides
the target configuration, model class, processor (tokenizer included), weight sources and key
rules (:class:`Prepared`). The driver (:mod:`videolmm.convert.run`) does the rest the
same way for every layout: plan, refuse or stream the weights, save, write the manifest.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from videolmm.convert.plan import Rule
from videolmm.convert.shards import Progress, TensorRef
from videolmm.errors import ConfigError

#: Dtypes ``--dtype`` accepts; ``auto`` keeps every tensor's own dtype.
DTYPES = ("auto", "bfloat16", "float16", "float32")


@dataclass(frozen=True)
class ConvertOptions:
    """One conversion's inputs and knobs.

    Attributes:
        input: the original checkpoint directory (``config.json``, tokenizer, weight shards).
        output: the directory to create.
        vision_tower: a local copy of the vision tower the config names (its ``config.json``),
            when it is not a known hub id or a local path already (LLaVA-NeXT layouts).
        video_tower: a local copy of the LanguageBind video tower (LLaVA-Hound; weights and config).
        image_tower: a local copy of the LanguageBind image tower (LLaVA-Hound).
        dtype: ``auto`` (keep each tensor's dtype) or a dtype to cast floating tensors to.
        max_shard_size: output shard size limit (``5GB``, ``500MB``, ...).
        overwrite: replace an existing, non-empty output directory.
        hashes: record SHA-256 of every source and output file in the manifest.
        rope_factor: linear RoPE factor for Vicuna-based LLaVA-NeXT-Video (default 2.0, as
            transformers' converter and the seed demo at 32 frames); 0 disables it.
    """

    input: Path
    output: Path
    vision_tower: Path | None = None
    video_tower: Path | None = None
    image_tower: Path | None = None
    dtype: str = "auto"
    max_shard_size: str = "5GB"
    overwrite: bool = False
    hashes: bool = True
    rope_factor: float | None = None

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype={self.dtype!r}: expected one of {DTYPES}")


@dataclass(frozen=True)
class Source:
    """Weight files read under one group name (``checkpoint``, ``video_tower``, ...).

    Attributes:
        group: the name rules see as ``group:key``.
        root: the directory the files come from.
        files: the weight files, in shard order.
    """

    group: str
    root: Path
    files: tuple[Path, ...]


@dataclass(frozen=True)
class Prepared:
    """Everything a layout decides before any weight is read.

    Attributes:
        family: the videolmm family that loads the result.
        config: the target transformers config.
        model_class: the target model class (built on the meta device for the key plan).
        processor: the target processor, tokenizer included.
        generation_config: the target generation config.
        sources: weight sources.
        rules: key rules (first match wins).
        row_resizable: targets whose rows grow with the vocabulary.
        added_tokens: token → id added to the tokenizer (plus the pad token).
        original_vocab: the original embedding rows.
        settings: every choice the layout made, with where it came from (for the manifest).
        checkpoint_defaults: engine defaults the original config declares, written to the converted
            checkpoint's ``videolmm.json`` (:data:`videolmm.models.spec.CHECKPOINT_DEFAULTS`), e.g.
            LLaVA-Video's ``force_sample``; empty writes no file.
    """

    family: str
    config: Any
    model_class: Any
    processor: Any
    generation_config: Any
    sources: tuple[Source, ...]
    rules: tuple[Rule, ...]
    row_resizable: tuple[str, ...] = ()
    added_tokens: Mapping[str, int] = field(default_factory=dict)
    original_vocab: int = 0
    settings: Mapping[str, Any] = field(default_factory=dict)
    checkpoint_defaults: Mapping[str, Any] = field(default_factory=dict)


class SourceLayout(ABC):
    """One original code base's checkpoint layout. Subclass per layout.

    Attributes:
        name: the ``--source`` name.
        aliases: published checkpoint ids that name this layout too.
        family: the videolmm family of the converted checkpoint.
        description: one line for ``videolmm convert --help`` and the docs.
    """

    name: str = ""
    aliases: tuple[str, ...] = ()
    family: str = ""
    description: str = ""

    @abstractmethod
    def detect(self, original: Mapping[str, Any]) -> bool:
        """Whether an original ``config.json`` is of this layout."""

    @abstractmethod
    def prepare(self, original: Mapping[str, Any], options: ConvertOptions, progress: Progress) -> Prepared:
        """Decide the target config, classes, processor, sources and rules.

        Raises:
            ConfigError: the checkpoint uses a setting the target cannot reproduce.
        """

    def check_refs(self, refs: Sequence[TensorRef]) -> None:  # noqa: B027 - optional hook, no-op by default
        """Refuse tensors that signal an unsupported variant before the plan is made (no-op here)."""


def llm_rules(lm_prefix: str) -> tuple[Rule, ...]:
    """Rules for a LLaVA-style language model (``model.layers...``, ``lm_head``) → transformers 5's
    composite layout (``model.language_model...``, ``lm_head``), plus the RoPE buffer drop."""
    return (
        Rule(r"checkpoint:.*\.rotary_emb\.inv_freq", None, "RoPE frequency buffer; transformers recomputes it"),
        Rule(r"checkpoint:model\.(embed_tokens|layers|norm)(\..+)", rf"{lm_prefix}\1\2"),
        Rule(r"checkpoint:lm_head\.weight", "lm_head.weight"),
    )


def projector_rules() -> tuple[Rule, ...]:
    """``mm_projector`` (``mlp2x_gelu``: Linear, GELU, Linear) → ``multi_modal_projector.linear_{1,2}``."""
    return (
        Rule(r"checkpoint:model\.mm_projector\.0\.(weight|bias)", r"model.multi_modal_projector.linear_1.\1"),
        Rule(r"checkpoint:model\.mm_projector\.2\.(weight|bias)", r"model.multi_modal_projector.linear_2.\1"),
    )


#: Where the LLaVA-NeXT code base (``llava_arch``) keeps its vision tower's weights.
LLAVA_NEXT_VISION_PREFIX = r"checkpoint:model\.vision_tower\.vision_tower\."


def llava_next_rules() -> tuple[Rule, ...]:
    """The full rule set for a LLaVA-NeXT-code-base checkpoint (LLaVA-NeXT-Video, LLaVA-Video):
    vision tower, ``mm_projector``, ``image_newline`` and the language model."""
    return (
        Rule(
            LLAVA_NEXT_VISION_PREFIX + r"vision_model\.embeddings\.position_ids", None, "position-id buffer; rebuilt"
        ),
        Rule(LLAVA_NEXT_VISION_PREFIX + r"vision_model\.(.+)", r"model.vision_tower.\1"),
        *projector_rules(),
        Rule(r"checkpoint:model\.image_newline", "model.image_newline"),
        *llm_rules("model.language_model."),
    )


def require(original: Mapping[str, Any], key: str, allowed: Sequence[Any], default: Any = None) -> Any:
    """``original[key]`` (or ``default``), refusing values the target cannot reproduce."""
    value = original.get(key, default)
    if value not in allowed:
        raise ConfigError(f"config.json {key}={value!r} is not supported (supported: {list(allowed)})")
    return value


__all__ = [
    "DTYPES",
    "ConvertOptions",
    "Prepared",
    "Source",
    "SourceLayout",
    "llm_rules",
    "projector_rules",
    "require",
]
