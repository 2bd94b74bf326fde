"""msvd_qa, msrvtt_qa, tgif_qa: zero-shot open-ended video QA judged as Video-ChatGPT / Video-LLaVA do.

Data: Video-LLaVA's evaluation layout (``TRAIN_AND_VALIDATE.md``, "data for validating"), which it
distributes from Google Drive / Baidu, not the hub: ``$VIDEOLMM_ZEROSHOT_QA_ROOT`` is the folder
that holds ``MSVD_Zero_Shot_QA/``, ``MSRVTT_Zero_Shot_QA/`` and ``TGIF_Zero_Shot_QA/`` (Video-LLaVA's
``eval/GPT_Zero_Shot_QA``), each with ``test_q.json``, ``test_a.json`` and its videos in the folder
Video-LLaVA's ``scripts/v1_5/eval/run_qa_*.sh`` read (``videos``, ``videos/all``, ``mp4``).

Nothing here runs at import beyond defining functions; paths are read when lmms-eval builds the
task (``process_docs``) and when a doc's video is requested.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from videolmm.tasks.judge import records
from videolmm.tasks.judge.prompts import VIDEO_CHATGPT_QA
from videolmm.tasks.openqa.scoring import judged_results
from videolmm.tasks.openqa.sources import VIDEO_LLAVA_EXTENSIONS, QASource, load_docs, resolve_video

ROOT_ENV = "VIDEOLMM_ZEROSHOT_QA_ROOT"
_ORIGIN = (
    "Video-LLaVA TRAIN_AND_VALIDATE.md: eval/GPT_Zero_Shot_QA/<NAME>_Zero_Shot_QA with test_q.json, test_a.json "
    "and videos, from Google Drive / Baidu"
)


def _source(name: str, folder: str, videos: str) -> QASource:
    return QASource(
        name=name,
        layout="video_llava",
        files=(f"{folder}/test_q.json", f"{folder}/test_a.json"),
        video_dir=f"{folder}/{videos}",
        root_env=ROOT_ENV,
        origin=_ORIGIN,
    )


SOURCES = {
    "msvd_qa": _source("msvd_qa", "MSVD_Zero_Shot_QA", "videos"),
    "msrvtt_qa": _source("msrvtt_qa", "MSRVTT_Zero_Shot_QA", "videos/all"),
    "tgif_qa": _source("tgif_qa", "TGIF_Zero_Shot_QA", "mp4"),
}

msvd_qa_docs = partial(load_docs, source=SOURCES["msvd_qa"])
msrvtt_qa_docs = partial(load_docs, source=SOURCES["msrvtt_qa"])
tgif_qa_docs = partial(load_docs, source=SOURCES["tgif_qa"])


def doc_to_visual(doc: dict[str, Any], lmms_eval_specific_kwargs: dict[str, Any] | None = None) -> list[str]:
    """The doc's video: ``<video root>/<video_name>`` + the first of .mp4/.avi/.mov/.mkv that exists."""
    return [resolve_video(doc, lmms_eval_specific_kwargs, VIDEO_LLAVA_EXTENSIONS)]


def doc_to_text(doc: dict[str, Any], lmms_eval_specific_kwargs: dict[str, Any] | None = None) -> str:
    """The question as the seeds ask it (no pre/post prompt unless the YAML sets one)."""
    kw = lmms_eval_specific_kwargs or {}
    return f"{kw.get('pre_prompt', '')}{doc['question']}{kw.get('post_prompt', '')}"


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, Any]:
    """One judge call (Video-ChatGPT prompt) per doc; the record goes under every metric."""
    return judged_results(doc, results, VIDEO_CHATGPT_QA)


accuracy = records.accuracy
mean_score = records.mean_score
judge_failures = records.judge_failures
parse_failures = records.parse_failures
model_failures = records.model_failures
judge_models = records.judge_models
