"""Where the evaluation time went: :class:`EvalStats`, written to ``$VIDEOLMM_EVAL_STATS``."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

#: Set to a file path to have every ``generate_until`` call write its :class:`EvalStats` there (JSON).
STATS_ENV = "VIDEOLMM_EVAL_STATS"


@dataclass(frozen=True)
class EvalStats:
    """Where the time of the ``generate_until`` calls so far went (cumulative per model instance).

    The *evaluation phase* is the wall time inside ``generate_until`` (``wall_s``). It includes
    waiting for the model load when the load (started by the constructor, in a background thread)
    had not finished when the requests came (``load_wait_s``); that time is not a decode wait.

    Attributes:
        samples: requests answered.
        decodes: media decodes made (requests about the same video share one).
        batches: engine calls made.
        wall_s: wall time inside ``generate_until``.
        wait_s: time generation sat blocked waiting for a prefetched batch's decode to finish
            (after the model was loaded; ``first_wait_s`` included).
        first_wait_s: the part of ``wait_s`` spent waiting for the first batch of each call.
        generate_s: time in ``Engine.generate`` (preprocessing + ``model.generate``).
        decode_s: decode time summed over samples (in the decode threads, overlapping generation).
        load_s: how long the engine took to load (in the background thread; 0 before it finished).
        load_wait_s: time ``generate_until`` waited for that load to finish (decoding ran meanwhile).
        warmup_s: the decoder warm-up in the constructor, before the load started (0: not warmed).
        decoded_during_load: decodes finished while ``generate_until`` waited for the load.
        batch_size, prefetch, decode_workers, torch_threads: the settings the calls ran with
            (``torch_threads`` 0: left to torch, i.e. not on CPU or set by the user).
        decode_burst: decode threads allowed while generation waits (the load, an empty queue).
        depth_reached: the deepest prefetch (batches ahead) any call reached (it grows from
            ``prefetch`` when generation waits although decoding keeps up on average).
    """

    samples: int = 0
    decodes: int = 0
    batches: int = 0
    wall_s: float = 0.0
    wait_s: float = 0.0
    first_wait_s: float = 0.0
    generate_s: float = 0.0
    decode_s: float = 0.0
    load_s: float = 0.0
    load_wait_s: float = 0.0
    warmup_s: float = 0.0
    decoded_during_load: int = 0
    batch_size: int = 1
    prefetch: int = 0
    decode_workers: int = 1
    decode_burst: int = 1
    depth_reached: int = 0
    torch_threads: int = 0

    @property
    def wait_share(self) -> float:
        """Share of the wall time generation waited for decoding (0 when nothing ran)."""
        return self.wait_s / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def load_wait_share(self) -> float:
        """Share of the wall time spent waiting for the model load (0 when nothing ran)."""
        return self.load_wait_s / self.wall_s if self.wall_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields plus ``wait_share`` and ``load_wait_share``."""
        return {**asdict(self), "wait_share": self.wait_share, "load_wait_share": self.load_wait_share}


__all__ = ["STATS_ENV", "EvalStats"]
