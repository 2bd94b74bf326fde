"""The module the ``videolmm`` entry point names: one ``@hookimpl`` function per hook.

videolmm's plugin manager imports this module and registers it under the entry-point name
(``example``). Importing it must stay cheap: the family and sampler modules import torch and
transformers only inside their functions.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from videolmm.plugin import hookimpl

from videolmm_example.family import LLAVA_ONEVISION_VIDEO, MODEL_TYPE, ONEVISION_CHAT
from videolmm_example.sampler import NAME as SAMPLER_NAME
from videolmm_example.sampler import segment_middle_sampler

#: Environment variable naming a file to which every trace is also appended as a JSON line
#: (read at call time), so traces of another process (an lmms-eval run, for instance) can be read.
TRACE_FILE_ENV = "VIDEOLMM_EXAMPLE_TRACE"


@dataclass(frozen=True)
class BatchTrace:
    """One call of the ``generate_batch`` hook, as the tracing wrapper saw it.

    Attributes:
        family: the engine's family name.
        sampler: the engine's sampler name.
        batch_size: requests in the batch.
        seconds: wall time of the wrapped call (the model's ``generate`` and post-processing).
        ok: False when the call raised (the engine then retries the requests one by one).
        frames: per request, per video, the sampled source frame indices.
    """

    family: str
    sampler: str
    batch_size: int
    seconds: float
    ok: bool
    frames: tuple[tuple[tuple[int, ...], ...], ...] = ()


#: Every traced batch of this process, oldest first. Bounded so a long-running server does
#: not grow it forever; ``BATCH_TRACES.clear()`` resets it.
BATCH_TRACES: deque[BatchTrace] = deque(maxlen=10_000)


def _record(trace: BatchTrace) -> None:
    BATCH_TRACES.append(trace)
    path = os.environ.get(TRACE_FILE_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(asdict(trace)) + "\n")


@hookimpl
def register_samplers(register: Callable[[str, Any], None]) -> None:
    """Register ``segment_middle``."""
    register(SAMPLER_NAME, segment_middle_sampler)


@hookimpl
def register_families(register: Callable[[Any], None]) -> None:
    """Register ``llava_onevision_video``."""
    register(LLAVA_ONEVISION_VIDEO)


@hookimpl
def register_prompt_templates(register: Callable[[Any], None]) -> None:
    """Register ``onevision_chat``."""
    register(ONEVISION_CHAT)


@hookimpl
def resolve_family(config: Mapping[str, Any], pretrained: str) -> str | None:
    """Claim ``model_type == "llava_onevision"`` checkpoints; leave the rest to other plugins."""
    if config.get("model_type") == MODEL_TYPE:
        return LLAVA_ONEVISION_VIDEO.name
    return None


@hookimpl(wrapper=True)
def generate_batch(engine: Any, batch: Any) -> Generator[None, Sequence[Any], Sequence[Any]]:
    """Time every batch (of any family) and record it in :data:`BATCH_TRACES`.

    A new-style pluggy wrapper: the code before ``yield`` runs before the inner
    implementations, ``yield`` returns their result (or raises their exception), and the
    wrapper returns the result unchanged. With ``VIDEOLMM_EXAMPLE_TRACE=<file>`` set, each
    trace is also appended to that file as one JSON line.
    """
    start = time.perf_counter()
    ok = False
    try:
        results = yield
        ok = True
        return results
    finally:
        _record(
            BatchTrace(
                family=engine.settings.family,
                sampler=engine.settings.media.sampler,
                batch_size=len(batch.items),
                seconds=time.perf_counter() - start,
                ok=ok,
                frames=tuple(tuple(tuple(int(i) for i in v.indices) for v in item.videos) for item in batch.items),
            )
        )


__all__ = [
    "BATCH_TRACES",
    "TRACE_FILE_ENV",
    "BatchTrace",
    "generate_batch",
    "register_families",
    "register_prompt_templates",
    "register_samplers",
    "resolve_family",
]
