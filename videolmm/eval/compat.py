"""The one lmms-eval shim: log-likelihood results through lmms-eval 0.7.x's evaluator.

Two mismatches between lmms-eval 0.7.x's documented ``loglikelihood`` contract and its
evaluator are bridged here, and nowhere else:

1. **Sign.** The docstring of ``lmms.loglikelihood`` asks for the log-probability of the
   continuation, but ``ConfigurableTask.process_results`` picks ``np.argmin`` over the
   returned values for ``multiple_choice`` (its comment: "we return the actual loss in many
   model loglikelihood"; lmms-eval issue #370). We therefore hand lmms-eval the *negative*
   summed log-probability (the summed NLL): argmin over it is argmax over log-likelihood,
   which is lm-eval's ``acc``, and dividing by the choice length gives lm-eval's
   ``acc_norm``. The engine itself always reports true log-probabilities.

2. **Tuples.** The evaluator passes every response through
   ``lmms_eval.api.instance.unwrap_generation_output``, which turns anything that is not a
   string, a ``GenerationResult`` or a ``(str, meta)`` pair into ``str(output)``: the
   documented ``(logprob, is_greedy)`` tuple becomes ``"(-1.5, True)"`` and every
   ``multiple_choice`` task fails in ``process_results`` ("too many values to unpack").
   ``GenerationResult.text`` is returned unchanged by the unwrapper, so the pair travels in
   it. This one is chosen by behaviour: when the installed unwrapper keeps tuples, the plain
   tuple is returned.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import version
from typing import Any

#: lmms-eval versions videolmm's reach-ins (the task bridge, the ``until`` marker) were written and
#: tested against: [min, max).
SUPPORTED = ((0, 7, 3), (0, 8, 0))


def version_tuple(ver: str) -> tuple[int, ...]:
    """``"0.7.3.post1"`` → ``(0, 7, 3)``."""
    parts = []
    for piece in ver.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def is_supported(lmms_eval_version: str) -> bool:
    """True when the installed lmms-eval is in :data:`SUPPORTED`."""
    low, high = SUPPORTED
    return low <= version_tuple(lmms_eval_version) < high


@cache
def lower_is_better() -> bool:
    """True for the lmms-eval releases whose multiple-choice scorer takes ``argmin`` (0.x)."""
    return int(version("lmms-eval").split(".")[0]) == 0


@cache
def _tuples_survive() -> bool:
    from lmms_eval.api.instance import unwrap_generation_output

    probe = (-1.0, True)
    return unwrap_generation_output(probe)[0] == probe


def loglikelihood_output(logprob: float, is_greedy: bool) -> Any:
    """``(score, is_greedy)`` in the sign and form the installed lmms-eval evaluator expects
    (score = -logprob where lmms-eval ranks by argmin, else logprob)."""
    pair = (-float(logprob) if lower_is_better() else float(logprob), bool(is_greedy))
    if _tuples_survive():
        return pair
    from lmms_eval.api.instance import GenerationResult

    return GenerationResult(text=pair)  # type: ignore[arg-type]  # unwrapped as-is, see module doc
