"""The generation loops of ``generate_until``: decoded batches in, results out through ``record``.

Both take the prefetched batches (:class:`videolmm.eval.prefetch.DecodePipeline`), size torch's
threads before each batch (``size_threads(last)``, ``last`` = the previous batch's ``(decode_s,
generate_s)``) and add to ``sums``: ``decode`` (decode seconds of the batches' samples), ``generate``
(time generating, decode waits excluded) and ``batches``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from videolmm.models.engine import DecodedRequest, Engine
from videolmm.types import Result

Record = Callable[[int, Result], None]
SizeThreads = Callable[[tuple[float, float] | None], None]


def generate_static(
    engine: Engine,
    batches: Iterable[list[DecodedRequest]],
    record: Record,
    sums: dict[str, Any],
    size_threads: SizeThreads,
) -> None:
    """Batch by batch (``Engine.generate``), each to its longest answer."""
    last: tuple[float, float] | None = None  # (decode, generate) seconds of the previous batch
    done = 0
    for batch in batches:
        size_threads(last)
        t0 = time.perf_counter()
        results = engine.generate(batch, batch_size=len(batch))
        last = (sum(item.decode_seconds for item in batch), time.perf_counter() - t0)
        sums["generate"] += last[1]
        sums["decode"] += last[0]
        sums["batches"] += 1
        for result in results:
            record(done, result)
            done += 1


def generate_continuous(
    engine: Engine,
    batches: Iterable[list[DecodedRequest]],
    record: Record,
    sums: dict[str, Any],
    size_threads: SizeThreads,
    slots: int,
    waited: Callable[[], float],
) -> None:
    """On the continuous scheduler: ``slots`` samples at most generate at once, newcomers joining as
    others end. ``waited()`` is the decode wait so far (subtracted from the generation time)."""
    from videolmm.models.scheduler import generate_continuous as run

    def items() -> Iterator[DecodedRequest]:
        last: tuple[float, float] | None = None
        mark = time.perf_counter()
        for batch in batches:  # prefetched batches, handed over one by one
            now = time.perf_counter()
            size_threads(last)
            decode = sum(item.decode_seconds for item in batch)
            last, mark = (decode, now - mark), now
            sums["decode"] += decode
            sums["batches"] += 1
            yield from batch

    t0 = time.perf_counter()
    wait_before = waited()
    # newcomers join once half the slots are free: prefilled together, as a static batch would be
    run(engine, items(), max_batch_size=slots, on_result=record, min_join=max(1, slots // 2))
    sums["generate"] += time.perf_counter() - t0 - (waited() - wait_before)


__all__ = ["generate_continuous", "generate_static"]
