"""Per-sample judge records and the aggregations over them (pure functions, lmms-eval shaped).

A judged task's ``process_results`` returns one record (a JSON-able dict) under every metric
name; lmms-eval logs it with the sample and hands the list of records to each aggregation. A
record's ``status`` says what happened:

* ``scored``: the judge replied and the reply parsed;
* ``parse_failure``: the judge replied but the reply did not parse completely (whatever part
  did parse, e.g. yes/no without a score, is still used as the seed would use it);
* ``judge_failure``: the judge call failed after its retries: not scored at all;
* ``model_failure``: the model produced no answer (e.g. a missing video): never sent to the judge.

No failure is ever scored as a wrong answer or a 0: accuracy and mean score are computed over
the verdicts that exist, and the failures are reported as their own counts. Record keys avoid
``score`` on purpose: lmms-eval reads a ``score`` key for its CLT standard errors and expects a
number there.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from videolmm.tasks.judge.client import JudgeClient, JudgeRequest, JudgeSettings, get_client
from videolmm.tasks.judge.prompts import JudgeProtocol

SCORED = "scored"
PARSE_FAILURE = "parse_failure"
JUDGE_FAILURE = "judge_failure"
MODEL_FAILURE = "model_failure"
STATUSES = (SCORED, PARSE_FAILURE, JUDGE_FAILURE, MODEL_FAILURE)

Record = dict[str, Any]


def judge_prediction(
    protocol: JudgeProtocol,
    *,
    question: str,
    answer: str,
    prediction: str,
    caption: str | None = None,
    sample_id: Any = None,
    client: JudgeClient | None = None,
) -> Record:
    """Ask the judge about one prediction and return its record (never raises for a failed call).

    Args:
        protocol: the seed protocol (prompts, parser, sampling).
        question: the question asked.
        answer: the ground-truth answer.
        prediction: the model's answer.
        caption: the ground-truth caption (caption-grounded protocols only).
        sample_id: the doc's id, copied into the record.
        client: the judge; default: the process-wide client for the settings in the environment
            (:meth:`JudgeSettings.from_env`, read now).
    """
    if client is None:
        client = get_client(JudgeSettings.from_env(protocol.default_model))
    messages = protocol.messages(question=question, answer=answer, prediction=prediction, caption=caption)
    reply = client.complete(JudgeRequest(messages, temperature=protocol.temperature, top_p=protocol.top_p))
    record: Record = {
        "id": sample_id,
        "protocol": protocol.name,
        "judge_model": reply.model,
        "judge_served_model": reply.served_model,
        "cached": reply.cached,
        "attempts": reply.attempts,
        "judge_reply": reply.text,
        "judge_pred": None,
        "judge_score": None,
        "problem": None,
        "note": None,
    }
    if not reply.ok:
        return {**record, "status": JUDGE_FAILURE, "problem": reply.error}
    verdict = protocol.parse(reply.text or "")
    return {
        **record,
        "status": SCORED if verdict.parsed else PARSE_FAILURE,
        "judge_pred": verdict.pred,
        "judge_score": verdict.score,
        "problem": verdict.problem,
        "note": verdict.note,
    }


def model_failure(protocol: JudgeProtocol, *, error: str, sample_id: Any = None) -> Record:
    """The record of a sample whose model produced no answer (no judge call is made)."""
    return {
        "id": sample_id,
        "protocol": protocol.name,
        "status": MODEL_FAILURE,
        "judge_model": None,
        "judge_served_model": None,
        "cached": False,
        "attempts": 0,
        "judge_reply": None,
        "judge_pred": None,
        "judge_score": None,
        "problem": error,
        "note": None,
    }


# ----------------------------------------------------------------------------- aggregations


def accuracy(items: Iterable[Mapping[str, Any]]) -> float:
    """The seeds' accuracy in percent: ``100 * yes / (yes + no)`` over the verdicts that say either.

    NaN when no verdict says yes or no (e.g. every judge call failed): never a silent 0.
    """
    preds = [it.get("judge_pred") for it in items]
    yes, no = preds.count("yes"), preds.count("no")
    return 100.0 * yes / (yes + no) if yes + no else math.nan


def mean_score(items: Iterable[Mapping[str, Any]]) -> float:
    """Mean judge score over the verdicts that carry one; NaN when none does."""
    scores = [float(it["judge_score"]) for it in items if it.get("judge_score") is not None]
    return sum(scores) / len(scores) if scores else math.nan


def _count(items: Iterable[Mapping[str, Any]], status: str) -> int:
    return sum(1 for it in items if it.get("status") == status)


def judge_failures(items: Iterable[Mapping[str, Any]]) -> int:
    """How many samples the judge could not be asked about (calls failed after retries)."""
    return _count(items, JUDGE_FAILURE)


def parse_failures(items: Iterable[Mapping[str, Any]]) -> int:
    """How many judge replies did not parse completely."""
    return _count(items, PARSE_FAILURE)


def model_failures(items: Iterable[Mapping[str, Any]]) -> int:
    """How many samples have no model answer to judge (e.g. the video is missing)."""
    return _count(items, MODEL_FAILURE)


def judge_models(items: Iterable[Mapping[str, Any]]) -> str:
    """The judge model id(s) behind the scores, comma-separated; ``"none"`` when no judge replied."""
    models = sorted({str(it["judge_model"]) for it in items if it.get("judge_model") and it.get("judge_reply")})
    return ", ".join(models) if models else "none"


__all__ = [
    "JUDGE_FAILURE",
    "MODEL_FAILURE",
    "PARSE_FAILURE",
    "SCORED",
    "STATUSES",
    "accuracy",
    "judge_failures",
    "judge_models",
    "judge_prediction",
    "mean_score",
    "model_failure",
    "model_failures",
    "parse_failures",
]
