"""The key plan: which source tensor fills which target parameter, decided before any is read.

A layout declares :class:`Rule` s (regular expressions over ``group:key`` names, each mapping to
a target name or dropping the tensor with a reason). :func:`make_plan` applies them to every
source tensor and checks the result against the target model's parameters (names and shapes,
from a model built on the ``meta`` device): every source tensor must be consumed (mapped or
dropped for a stated reason) and every target parameter filled exactly once, with the right
shape. Anything else refuses the conversion with the full list.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from videolmm.convert.shards import TensorRef
from videolmm.errors import ConfigError

_LIST_LIMIT = 40


@dataclass(frozen=True)
class Rule:
    """Map (or drop) the source tensors whose ``group:key`` name fully matches ``pattern``.

    Attributes:
        pattern: regular expression, matched with ``re.fullmatch``.
        target: replacement template for ``re.sub`` (``\\1`` ...), or None to drop the tensor.
        reason: why a dropped tensor is not needed (required when ``target`` is None).
    """

    pattern: str
    target: str | None
    reason: str = ""

    def __post_init__(self) -> None:
        if self.target is None and not self.reason:
            raise ValueError(f"rule {self.pattern!r} drops tensors without saying why")


@dataclass(frozen=True)
class Plan:
    """The outcome of applying the rules.

    Attributes:
        mapped: target name → source tensor.
        dropped: source tensors not carried over, with the reason.
        resized: target names whose rows are padded (vocabulary growth), target shape.
    """

    mapped: dict[str, TensorRef]
    dropped: tuple[tuple[TensorRef, str], ...]
    resized: dict[str, tuple[int, ...]] = field(default_factory=dict)


class ConversionRefused(ConfigError):
    """The source and target do not match; the message lists every problem."""


def _listing(title: str, items: Sequence[str]) -> str:
    shown = "\n".join(f"  - {item}" for item in items[:_LIST_LIMIT])
    more = f"\n  ... and {len(items) - _LIST_LIMIT} more" if len(items) > _LIST_LIMIT else ""
    return f"{title} ({len(items)}):\n{shown}{more}"


def make_plan(
    refs: Iterable[TensorRef],
    rules: Sequence[Rule],
    target_shapes: Mapping[str, tuple[int, ...]],
    *,
    optional_targets: Iterable[str] = (),
    row_resizable: Iterable[str] = (),
) -> Plan:
    """Apply ``rules`` to ``refs`` and check the result against ``target_shapes``.

    Args:
        refs: every source tensor.
        rules: first matching rule wins.
        target_shapes: the target model's parameter names and shapes.
        optional_targets: target names that may stay unfilled (tied weights).
        row_resizable: target names whose source may have fewer rows (the vocabulary grows when
            image/video/pad tokens are added); the other dimensions must match.

    Returns:
        The plan.

    Raises:
        ConversionRefused: unknown source tensors, missing or doubly-filled targets, or shape
            mismatches; the message lists all of them.
    """
    compiled = [(re.compile(rule.pattern), rule) for rule in rules]
    resizable = set(row_resizable)
    mapped: dict[str, TensorRef] = {}
    dropped: list[tuple[TensorRef, str]] = []
    resized: dict[str, tuple[int, ...]] = {}
    unknown: list[str] = []
    problems: list[str] = []
    misshapen: set[str] = set()
    for ref in refs:
        match = next(((regex, rule) for regex, rule in compiled if regex.fullmatch(ref.name)), None)
        if match is None:
            unknown.append(f"{ref.name} {list(ref.shape)}")
            continue
        regex, rule = match
        if rule.target is None:
            dropped.append((ref, rule.reason))
            continue
        target = regex.sub(rule.target, ref.name)
        if target in mapped:
            problems.append(f"{target} is filled by both {mapped[target].name} and {ref.name}")
            continue
        if target not in target_shapes:
            unknown.append(f"{ref.name} {list(ref.shape)} -> {target} (not a parameter of the target model)")
            continue
        want = tuple(target_shapes[target])
        if ref.shape != want:
            grows = target in resizable and ref.shape[1:] == want[1:] and ref.shape[0] <= want[0]
            if not grows:
                problems.append(f"{ref.name} has shape {list(ref.shape)} but {target} needs {list(want)}")
                misshapen.add(target)
                continue
            resized[target] = want
        mapped[target] = ref
    optional = set(optional_targets)
    missing = sorted(t for t in target_shapes if t not in mapped and t not in optional and t not in misshapen)
    sections = []
    if unknown:
        sections.append(_listing("unknown source tensors (no rule consumes them)", unknown))
    if missing:
        sections.append(_listing("target parameters no source tensor fills", missing))
    if problems:
        sections.append(_listing("mismatches", problems))
    if sections:
        header = "the checkpoint does not match this layout; nothing was written.\n"
        raise ConversionRefused(header + "\n".join(sections))
    return Plan(mapped=mapped, dropped=tuple(dropped), resized=resized)


__all__ = ["ConversionRefused", "Plan", "Rule", "make_plan"]
