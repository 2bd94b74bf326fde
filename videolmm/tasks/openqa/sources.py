"""Where the judged open-ended QA tasks read their questions and videos, resolved at call time.

lmms-eval 0.7.3 reads a task's dataset location from its static YAML and gives ``process_docs``
no task arguments, so each task here loads a one-row stub (``source.jsonl`` next to its YAML) and
its ``process_docs`` (:func:`load_docs`) swaps in the real questions, found through the
environment when lmms-eval builds the task (never at import):

* a local copy in the seed's own layout, when the source's ``root_env`` variable is set;
* else the dataset repository the seed publishes on the Hugging Face hub, when there is one;
* else a :class:`SourceError` saying what to set.

A task YAML that overrides ``dataset_path`` / ``dataset_kwargs`` with real rows (in the seed's
row schema) is honoured too: those rows are normalised instead (see ``docs/tasks.md``).

Every doc comes out in one schema: ``id``, ``question``, ``answer``, ``video`` (as the source
names it), ``video_root`` (where it is resolved; may be empty), ``caption`` and ``dataset``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from videolmm.errors import MediaNotFound

logger = logging.getLogger(__name__)

#: The stub row's marker column.
STUB_COLUMN = "videolmm_source"
#: Video extensions Video-LLaVA's ``run_inference_video_qa.py`` tries, in its order.
VIDEO_LLAVA_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv")
_MODAL_TOKENS = ("<video>", "<image>")


class SourceError(RuntimeError):
    """A task's questions cannot be found or read (the message says what to set)."""


@dataclass(frozen=True)
class QASource:
    """One dataset of a judged QA task and how the seed lays it out.

    Attributes:
        name: the dataset's short name (recorded in each doc).
        layout: ``"video_llava"`` (``test_q.json`` + ``test_a.json`` + a video folder) or
            ``"hound"`` (LLaVA-Hound's ``*.qa*.jsonl`` with ``conversations`` and frame folders).
        files: annotation files, relative to the data root.
        video_dir: the video folder, relative to the data root.
        root_env: the variable naming the local data root.
        video_root_env: a variable that overrides the video folder (absolute path), if any.
        hub_repo: the hub dataset repository the seed publishes, if any.
        origin: where the seed distributes the data (for error messages and docs).
        needs_caption: every row must carry a ground-truth ``caption`` (caption-grounded judging).
    """

    name: str
    layout: Literal["video_llava", "hound"]
    files: tuple[str, ...]
    video_dir: str
    root_env: str
    video_root_env: str | None = None
    hub_repo: str | None = None
    origin: str = ""
    needs_caption: bool = False


def _read_json_rows(path: Path) -> list[dict[str, Any]]:
    """A JSON array file or a JSON-lines file, as a list of dicts."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc}") from exc
    try:
        if path.suffix == ".jsonl":
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            rows = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SourceError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise SourceError(f"{path}: expected a list of objects")
    return rows


def _hub_root(source: QASource) -> Path:
    """Download the annotation files from the seed's hub repository; return the snapshot folder."""
    from huggingface_hub import hf_hub_download

    paths = []
    for name in source.files:
        try:
            paths.append(Path(hf_hub_download(repo_id=source.hub_repo, filename=name, repo_type="dataset")))
        except Exception as exc:  # offline, not cached, auth, network: all say the same thing to the user
            raise SourceError(
                f"{source.name}: cannot load {name} from the hub dataset {source.hub_repo} "
                f"({type(exc).__name__}: {exc}); set {source.root_env} to a local copy"
            ) from exc
    depth = len(Path(source.files[0]).parts)
    return paths[0].parents[depth - 1]


def data_root(source: QASource, env: Mapping[str, str] | None = None) -> Path:
    """The local data root, or the hub snapshot holding the annotation files.

    Raises:
        SourceError: no local copy is configured and the seed publishes none on the hub.
    """
    env = os.environ if env is None else env
    local = env.get(source.root_env)
    if local:
        return Path(local).expanduser()
    if source.hub_repo:
        return _hub_root(source)
    raise SourceError(
        f"{source.name}: set {source.root_env} to a local copy of the data ({source.origin}); "
        "the seeds publish no hub dataset for it"
    )


def video_root(source: QASource, root: Path | None, env: Mapping[str, str] | None = None) -> str:
    """Where the source's videos are: ``video_root_env`` if set, else ``<root>/<video_dir>``, else ``""``."""
    env = os.environ if env is None else env
    if source.video_root_env and env.get(source.video_root_env):
        return str(Path(env[source.video_root_env]).expanduser())
    return str(root / source.video_dir) if root is not None else ""


def _strip_modal_tokens(text: str) -> str:
    # LLaVA-Hound inference/inference_utils.py remove_special_tokens: drop <video>/<image>, strip.
    for token in _MODAL_TOKENS:
        if token in text:
            text = text.replace(token, "").strip()
    return text


def _video_llava_docs(
    questions: Sequence[Mapping[str, Any]], answers: Sequence[Mapping[str, Any]] | None
) -> Iterator[dict[str, Any]]:
    """Join ``test_q.json`` and ``test_a.json`` by position, as Video-LLaVA's inference does."""
    if answers is not None and len(answers) != len(questions):
        raise SourceError(f"test_q has {len(questions)} questions but test_a has {len(answers)} answers")
    for i, q in enumerate(questions):
        a = answers[i] if answers is not None else q
        if "question_id" in q and "question_id" in a and q["question_id"] != a["question_id"]:
            raise SourceError(f"row {i}: question_id {q['question_id']!r} != answer's {a['question_id']!r}")
        missing = [k for k, row in (("video_name", q), ("question", q), ("answer", a)) if k not in row]
        if missing:
            raise SourceError(f"row {i} lacks {', '.join(missing)}: {dict(q)}")
        yield {
            "id": str(q.get("question_id", i)),
            "question": str(q["question"]),
            "answer": str(a["answer"]),
            "video": str(q["video_name"]),
            "caption": None,
        }


def _hound_docs(rows: Iterable[Mapping[str, Any]]) -> Iterator[dict[str, Any]]:
    """LLaVA-Hound rows: ``conversations[0]`` is the question (modal tokens removed), ``[1]`` the answer."""
    for i, row in enumerate(rows):
        turns = row.get("conversations")
        if turns:
            question, answer = _strip_modal_tokens(str(turns[0]["value"])), str(turns[1]["value"])
        elif "question" in row and "answer" in row:
            question, answer = _strip_modal_tokens(str(row["question"])), str(row["answer"])
        else:
            raise SourceError(f"row {i} has neither conversations nor question/answer: {dict(row)}")
        if "video" not in row:
            raise SourceError(f"row {i} lacks video: {dict(row)}")
        yield {
            "id": str(row.get("id", row.get("idx", i))),
            "question": question,
            "answer": answer,
            "video": str(row["video"]),
            "caption": None if row.get("caption") is None else str(row["caption"]),
        }


def normalise(
    source: QASource,
    rows: Sequence[Mapping[str, Any]],
    answers: Sequence[Mapping[str, Any]] | None = None,
    *,
    videos: str = "",
) -> list[dict[str, Any]]:
    """Rows in the seed's schema → docs in the tasks' schema (see the module docstring).

    Args:
        source: the dataset the rows belong to.
        rows: question rows (Video-LLaVA ``test_q.json``, merged rows, or LLaVA-Hound rows).
        answers: Video-LLaVA's ``test_a.json`` rows, joined by position; None when ``rows`` carry answers.
        videos: the video folder recorded in each doc (``video_root``).

    Raises:
        SourceError: a row lacks a field, the two files disagree, or a caption is missing.
    """
    docs = list(_video_llava_docs(rows, answers) if source.layout == "video_llava" else _hound_docs(rows))
    if source.needs_caption:
        lacking = [d["id"] for d in docs if not d["caption"]]
        if lacking:
            raise SourceError(f"{source.name}: {len(lacking)} row(s) lack the caption the judge needs: {lacking[:5]}")
    return [{**d, "video_root": videos, "dataset": source.name} for d in docs]


def read_source(source: QASource, env: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """The source's docs, from the local copy or the hub (see :func:`data_root`).

    A hub snapshot holds the annotation files only: when no video root is configured and the
    snapshot has no extracted frames, a warning says so (each sample would fail on its video).
    """
    root = data_root(source, env)
    tables = [_read_json_rows(root / f) for f in source.files]
    answers = tables[1] if len(tables) > 1 else None
    videos = video_root(source, root, env)
    local = (os.environ if env is None else env).get(source.root_env)
    if not local and videos and not os.path.isdir(videos):
        hint = f"set {source.video_root_env} to" if source.video_root_env else "extract them into"
        logger.warning(
            "%s: the questions come from the hub dataset %s, but its videos are not at %s; download and "
            "extract them and %s that folder (or pass video_root in lmms_eval_specific_kwargs)",
            source.name, source.hub_repo, videos, hint,
        )  # fmt: skip
    return normalise(source, tables[0], answers, videos=videos)


def load_docs(dataset: Any, source: QASource) -> Any:
    """lmms-eval ``process_docs``: the stub becomes the source's docs; real rows are normalised.

    Args:
        dataset: the ``datasets.Dataset`` lmms-eval loaded from the task's YAML.
        source: the task's source.
    """
    import datasets

    if STUB_COLUMN in dataset.column_names:
        docs = read_source(source)
    else:
        local = os.environ.get(source.root_env)
        videos = video_root(source, Path(local).expanduser() if local else None)
        docs = normalise(source, list(dataset), videos=videos)
    if not docs:
        raise SourceError(f"{source.name}: no questions found")
    return datasets.Dataset.from_list(docs)


def resolve_video(doc: Mapping[str, Any], kwargs: Mapping[str, Any] | None, extensions: Sequence[str] = ()) -> str:
    """The path of a doc's video (file or frame folder), resolved now.

    ``lmms_eval_specific_kwargs["video_root"]`` (a task argument) wins over the doc's
    ``video_root``. With ``extensions`` (Video-LLaVA's layout names videos without one), the
    first candidate that exists is returned.

    Raises:
        MediaNotFound: with ``extensions``, when no candidate exists (the message lists them).
        SourceError: a relative video with no video root configured.
    """
    video = str(doc["video"])
    root = str((kwargs or {}).get("video_root") or doc.get("video_root") or "")
    if not os.path.isabs(video):
        if not root:
            raise SourceError(
                f"{doc.get('dataset')}: no video root for {video!r}: set the source's data-root variable "
                "or lmms_eval_specific_kwargs.video_root (docs/tasks.md)"
            )
        video = os.path.join(root, video)
    if not extensions:
        return video
    candidates = [video + ext for ext in extensions]
    for path in candidates:
        if os.path.exists(path):
            return path
    raise MediaNotFound(video + ".*", f"none of {', '.join(os.path.basename(c) for c in candidates)} exists")


__all__ = [
    "STUB_COLUMN",
    "VIDEO_LLAVA_EXTENSIONS",
    "QASource",
    "SourceError",
    "data_root",
    "load_docs",
    "normalise",
    "read_source",
    "resolve_video",
    "video_root",
]
