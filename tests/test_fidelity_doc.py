"""docs/fidelity.md names real tests: every ``tests/FILE.py::test_name`` in its tables exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "fidelity.md"
NODE = re.compile(r"`(tests/[\w/]+\.py)::([\w:]+)(?:\[[^\]]*\])?`")


def table_rows(text: str) -> list[str]:
    """The body rows of every Markdown table (header and separator rows left out)."""
    rows, previous = [], ""
    for line in text.splitlines():
        if line.startswith("|") and not re.fullmatch(r"\|[-| ]+\|", line) and not previous.startswith("|"):
            previous = line  # a header row
            continue
        if line.startswith("|") and not re.fullmatch(r"\|[-| ]+\|", line):
            rows.append(line)
        previous = line
    return rows


def defined(path: Path) -> set[str]:
    """``name`` for module-level tests and ``Class::name`` for methods."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names.update(
                f"{node.name}::{item.name}"
                for item in node.body
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
            )
    return names


def test_every_named_test_exists() -> None:
    nodes = NODE.findall(DOC.read_text())
    assert len(nodes) > 20
    missing = [f"{f}::{n}" for f, n in nodes if not (ROOT / f).is_file() or n not in defined(ROOT / f)]
    assert missing == []


def test_every_row_names_a_test_or_is_a_marked_placeholder() -> None:
    rows = table_rows(DOC.read_text())
    assert len(rows) >= 26
    bare = [row[:80] for row in rows if not NODE.search(row) and "placeholder" not in row]
    assert bare == []


def test_one_row_per_issue_16_item_and_per_family_behaviour() -> None:
    rows = table_rows(DOC.read_text())
    items = {int(m.group(1)) for row in rows if (m := re.match(r"\| (\d+) \|", row))}
    assert items == set(range(1, 11))
    per_family = {
        (cells[1].strip("` "), cells[2].strip()) for row in rows if (cells := row.split("|"))[1].startswith(" `")
    }
    for family in ("llava_next_video", "llava_video_qwen2", "video_llava", "llava_hound"):
        for behaviour in ("frame indices", "prompt strings", "tokens per frame", "pooling order"):
            assert (family, behaviour) in per_family, (family, behaviour)
