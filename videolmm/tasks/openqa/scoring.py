"""``process_results`` for the judged QA tasks: one judge call per doc, one record per doc.

Why per doc, in ``process_results``: lmms-eval 0.7.3 runs ``process_results`` in a thread pool
(``--process_docs_parallel``, default 4), so the judge calls run concurrently, bounded again by the
judge client's own limit (``VIDEOLMM_JUDGE_CONCURRENCY``); and each sample's verdict, raw judge
reply and judge model id land in the samples log next to the prediction, where they can be audited
and re-scored. The aggregations then stay pure functions of the recorded verdicts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from videolmm.eval.markers import ERROR_PREFIX
from videolmm.tasks.judge.prompts import JudgeProtocol
from videolmm.tasks.judge.records import judge_prediction, model_failure

#: The metric names every judged QA task reports (all carry the same per-sample record).
METRICS = ("accuracy", "score", "judge_failures", "parse_failures", "model_failures", "judge_model")
_FAILED = ERROR_PREFIX.strip()


def is_model_failure(prediction: str) -> bool:
    """True for the answer a videolmm model gives when a sample failed (``[videolmm error] ...``)."""
    return prediction.startswith(_FAILED)


def judged_results(doc: Mapping[str, Any], results: Sequence[str], protocol: JudgeProtocol) -> dict[str, Any]:
    """Judge one prediction (or record the model's failure) and file the record under every metric."""
    prediction = results[0] if results else ""
    if is_model_failure(prediction):
        record = model_failure(protocol, error=prediction, sample_id=doc["id"])
    else:
        record = judge_prediction(
            protocol,
            question=doc["question"],
            answer=doc["answer"],
            prediction=prediction,
            caption=doc.get("caption"),
            sample_id=doc["id"],
        )
    return {metric: record for metric in METRICS}


__all__ = ["METRICS", "is_model_failure", "judged_results"]
