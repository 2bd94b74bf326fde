"""LLaVA-Hound's test suites: the "official" 5k subsets and the caption-grounded in/out-of-domain QA.

Data: the seed's hub dataset ``ShareGPTVideo/test_video_and_instruction`` (annotations under
``video_instruction/test/``, frames as ``video_data/test/<name>.tar.gz``). ``$VIDEOLMM_HOUND_ROOT`` is a
local copy of it (LLaVA-Hound's ``$DATA_DIR`` after ``setup/setup_test_data.sh``: tarballs extracted);
without it the annotation file is fetched from the hub. A row's ``video`` (a frame folder) is
resolved under ``<root>/video_data`` (LLaVA-Hound's ``$VIDEO_DATA_DIR``) or ``$VIDEOLMM_HOUND_VIDEO_ROOT``.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from videolmm.tasks.judge import records
from videolmm.tasks.judge.prompts import HOUND_CAPTION_QA, HOUND_OFFICIAL_QA
from videolmm.tasks.openqa.scoring import judged_results
from videolmm.tasks.openqa.sources import QASource, load_docs, resolve_video

ROOT_ENV = "VIDEOLMM_HOUND_ROOT"
VIDEO_ROOT_ENV = "VIDEOLMM_HOUND_VIDEO_ROOT"
HUB_REPO = "ShareGPTVideo/test_video_and_instruction"
_ORIGIN = f"the hub dataset {HUB_REPO}, as LLaVA-Hound's setup/setup_test_data.sh downloads it"


def _source(name: str, file_name: str, *, caption: bool) -> QASource:
    return QASource(
        name=name,
        layout="hound",
        files=(f"video_instruction/test/{file_name}",),
        video_dir="video_data",
        root_env=ROOT_ENV,
        video_root_env=VIDEO_ROOT_ENV,
        hub_repo=HUB_REPO,
        origin=_ORIGIN,
        needs_caption=caption,
    )


OFFICIAL = {
    n: _source(f"hound_{n}_qa_official", f"{n}.qa.official.jsonl", caption=False) for n in ("msvd", "msrvtt", "tgif")
}
CAPTIONED = {
    n: _source(f"hound_{n}_qa", f"{n}.qa.jsonl", caption=True)
    for n in ("webvid", "vidal", "actnet", "ssv2", "msrvtt", "msvd", "tgif")
}

# process_docs, one per task (YAML names them).
msvd_official_docs = partial(load_docs, source=OFFICIAL["msvd"])
msrvtt_official_docs = partial(load_docs, source=OFFICIAL["msrvtt"])
tgif_official_docs = partial(load_docs, source=OFFICIAL["tgif"])
webvid_docs = partial(load_docs, source=CAPTIONED["webvid"])
vidal_docs = partial(load_docs, source=CAPTIONED["vidal"])
actnet_docs = partial(load_docs, source=CAPTIONED["actnet"])
ssv2_docs = partial(load_docs, source=CAPTIONED["ssv2"])
msrvtt_docs = partial(load_docs, source=CAPTIONED["msrvtt"])
msvd_docs = partial(load_docs, source=CAPTIONED["msvd"])
tgif_docs = partial(load_docs, source=CAPTIONED["tgif"])


def doc_to_visual(doc: dict[str, Any], lmms_eval_specific_kwargs: dict[str, Any] | None = None) -> list[str]:
    """The doc's frame folder, ``<video root>/<video>`` (``f"{video_dir}/{dp['video']}"`` in LLaVA-Hound)."""
    return [resolve_video(doc, lmms_eval_specific_kwargs)]


def doc_to_text(doc: dict[str, Any], lmms_eval_specific_kwargs: dict[str, Any] | None = None) -> str:
    """The question with ``<video>`` removed and stripped (LLaVA-Hound ``remove_special_tokens``)."""
    kw = lmms_eval_specific_kwargs or {}
    return f"{kw.get('pre_prompt', '')}{doc['question']}{kw.get('post_prompt', '')}"


def official_results(doc: dict[str, Any], results: list[str]) -> dict[str, Any]:
    """Judge with LLaVA-Hound's official-subset prompt (``eval_official_qa.py``)."""
    return judged_results(doc, results, HOUND_OFFICIAL_QA)


def caption_results(doc: dict[str, Any], results: list[str]) -> dict[str, Any]:
    """Judge with LLaVA-Hound's caption-grounded prompt (``eval_qa.py``)."""
    return judged_results(doc, results, HOUND_CAPTION_QA)


accuracy = records.accuracy
mean_score = records.mean_score
judge_failures = records.judge_failures
parse_failures = records.parse_failures
model_failures = records.model_failures
judge_models = records.judge_models
