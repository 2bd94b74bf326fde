"""The one lmms-eval shim: log-likelihood results through lmms-eval 0.7.x's evaluator.

lmms-eval 0.7.3 passes every model response through
``lmms_eval.api.instance.unwrap_generation_output``, which turns anything that is not a
string, a ``GenerationResult`` or a ``(str, meta)`` pair into ``str(output)``. A
``loglikelihood`` answer — lmms-eval's own documented ``(logprob, is_greedy)`` tuple —
becomes the string ``"(-1.5, True)"``, and every ``multiple_choice`` task then fails in
``process_results`` ("too many values to unpack").

``GenerationResult.text`` is returned unchanged by the unwrapper, so a tuple carried in it
reaches ``process_results`` intact. The shim is chosen by behaviour, not by version: when
the installed lmms-eval keeps tuples as they are, the plain tuple is returned.
"""

from __future__ import annotations

from functools import cache
from typing import Any


@cache
def _tuples_survive() -> bool:
    from lmms_eval.api.instance import unwrap_generation_output

    probe = (-1.0, True)
    return unwrap_generation_output(probe)[0] == probe


def loglikelihood_output(logprob: float, is_greedy: bool) -> Any:
    """``(logprob, is_greedy)`` in a form the installed lmms-eval evaluator keeps intact."""
    pair = (float(logprob), bool(is_greedy))
    if _tuples_survive():
        return pair
    from lmms_eval.api.instance import GenerationResult

    return GenerationResult(text=pair)  # type: ignore[arg-type]  # unwrapped as-is, see module doc
