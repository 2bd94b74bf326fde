"""``videomme_local``: lmms-eval's built-in ``videomme`` task run on a local file in Video-MME's schema.

The prompt (``videomme_doc_to_text``), answer extraction and scoring
(``videomme_process_results``, ``videomme_aggregate_results``) are lmms-eval's own, referenced from
the YAML by module path. Three things differ, all here:

* the questions come from ``$VIDEOLMM_VIDEOMME_DATA`` (a .parquet / .json / .jsonl / .csv file in
  the schema of the hub dataset ``lmms-eval/Video-MME``), read when the task is built;
* the video path is resolved as lmms-eval's ``videomme_doc_to_visual`` resolves it
  (``$HF_HOME/videomme/data/<videoID>.mp4``, then ``.MP4``, then ``.mkv``; the folder can be moved
  with ``$VIDEOLMM_VIDEOMME_VIDEO_ROOT``), but a missing video is returned as a path, so it fails
  only its own sample, where lmms-eval's function calls ``sys.exit`` and ends the run;
* a ``model_failures`` count is reported next to lmms-eval's score (a failed sample still counts
  as a wrong answer in ``videomme_perception_score``, as in lmms-eval).
"""

from __future__ import annotations

import os
from typing import Any

from videolmm.tasks.openqa.scoring import is_model_failure
from videolmm.tasks.openqa.sources import STUB_COLUMN, SourceError

DATA_ENV = "VIDEOLMM_VIDEOMME_DATA"
VIDEO_ROOT_ENV = "VIDEOLMM_VIDEOMME_VIDEO_ROOT"
_BUILDERS = {".parquet": "parquet", ".json": "json", ".jsonl": "json", ".csv": "csv"}


def video_folder() -> str:
    """``$VIDEOLMM_VIDEOMME_VIDEO_ROOT``, else lmms-eval's ``$HF_HOME/videomme/data``."""
    override = os.environ.get(VIDEO_ROOT_ENV)
    if override:
        return os.path.expanduser(override)
    hf_home = os.path.expanduser(os.getenv("HF_HOME", "~/.cache/huggingface/"))
    return os.path.join(hf_home, "videomme", "data")


def load_docs(dataset: Any) -> Any:
    """lmms-eval ``process_docs``: the stub becomes the rows of ``$VIDEOLMM_VIDEOMME_DATA``."""
    if STUB_COLUMN not in dataset.column_names:
        return dataset  # a YAML override already points at real rows
    path = os.environ.get(DATA_ENV)
    if not path:
        raise SourceError(
            f"videomme_local: set {DATA_ENV} to a local file in Video-MME's schema (e.g. videomme/test-*.parquet "
            "of the hub dataset lmms-eval/Video-MME); for the hub dataset itself run the `videomme` task"
        )
    path = os.path.expanduser(path)
    builder = _BUILDERS.get(os.path.splitext(path)[1].lower())
    if builder is None:
        raise SourceError(f"{DATA_ENV}={path!r}: expected one of {', '.join(sorted(_BUILDERS))}")
    if not os.path.isfile(path):
        raise SourceError(f"{DATA_ENV}={path!r}: no such file")
    import datasets

    return datasets.load_dataset(builder, data_files=path, split="train")


def doc_to_visual(doc: dict[str, Any]) -> list[str]:
    """``<video folder>/<videoID>`` + ``.mp4``, ``.MP4`` or ``.mkv`` (lmms-eval's order); ``.mp4`` if none exists."""
    stem = os.path.join(video_folder(), str(doc["videoID"]))
    for ext in (".mp4", ".MP4", ".mkv"):
        if os.path.exists(stem + ext):
            return [stem + ext]
    return [stem + ".mp4"]


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, Any]:
    """lmms-eval's ``videomme_process_results``, plus a ``model_failures`` record."""
    from lmms_eval.tasks.videomme.utils import videomme_process_results

    prediction = results[0] if results else ""
    failed = is_model_failure(prediction)
    record = {"question_id": doc.get("question_id"), "failed": failed, "error": prediction if failed else None}
    return {**videomme_process_results(doc, results), "model_failures": record}


def model_failures(items: list[dict[str, Any]]) -> int:
    """How many samples have no model answer (scored wrong by lmms-eval's metric, counted here)."""
    return sum(1 for it in items if it.get("failed"))
