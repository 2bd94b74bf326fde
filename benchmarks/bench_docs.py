"""Shared by the benchmark scripts: replace one marked section of docs/benchmarks.md, keeping the rest."""

from __future__ import annotations

import re
from pathlib import Path

HEADER = "# Benchmarks\n\nMeasured results; each section says how to reproduce it.\n\n"


def write_section(path: Path, begin: str, end: str, section: str) -> Path:
    """Put ``section`` (which starts with ``begin`` and ends with ``end``) in place of the marked one.

    Args:
        path: the markdown file (created with a header when missing).
        begin, end: the section's marker lines.
        section: the new section text, markers included.

    Returns:
        ``path``. A file without the markers gets the section appended.
    """
    text = path.read_text() if path.exists() else HEADER
    if begin in text and end in text:
        pattern = re.escape(begin) + r".*?" + re.escape(end) + r"\n?"
        text = re.sub(pattern, lambda _: section, text, flags=re.S)  # a function: no escapes in section
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)
    return path
