"""The judge used by every GPT-judged task in videolmm: seed prompts, a client you point anywhere, a cache.

* :mod:`.prompts`: the seeds' judge prompts and reply parsers, byte-exact (:class:`JudgeProtocol`).
* :mod:`.client`: the official ``openai`` client against any OpenAI-compatible server, with
  bounded retries, a concurrency bound and settings read from the environment at call time.
* :mod:`.cache`: the SQLite reply cache (a re-run with the same judge makes zero calls).
* :mod:`.records`: per-sample records and the aggregations (accuracy, mean score, failure counts,
  judge model id).

Importing this package imports neither ``openai`` nor lmms-eval.
"""

from videolmm.tasks.judge.cache import JudgeCache, cache_key
from videolmm.tasks.judge.client import (
    JudgeClient,
    JudgeConfigError,
    JudgeReply,
    JudgeRequest,
    JudgeSettings,
    get_client,
)
from videolmm.tasks.judge.prompts import (
    HOUND_CAPTION_QA,
    HOUND_OFFICIAL_QA,
    PROTOCOLS,
    VIDEO_CHATGPT_QA,
    JudgeProtocol,
    Verdict,
)
from videolmm.tasks.judge.records import (
    accuracy,
    judge_failures,
    judge_models,
    judge_prediction,
    mean_score,
    model_failure,
    model_failures,
    parse_failures,
)

__all__ = [
    "HOUND_CAPTION_QA",
    "HOUND_OFFICIAL_QA",
    "PROTOCOLS",
    "VIDEO_CHATGPT_QA",
    "JudgeCache",
    "JudgeClient",
    "JudgeConfigError",
    "JudgeProtocol",
    "JudgeReply",
    "JudgeRequest",
    "JudgeSettings",
    "Verdict",
    "accuracy",
    "cache_key",
    "get_client",
    "judge_failures",
    "judge_models",
    "judge_prediction",
    "mean_score",
    "model_failure",
    "model_failures",
    "parse_failures",
]
