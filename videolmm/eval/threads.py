"""Sharing the CPU cores between decode threads and torch during evaluation (``torch_threads``)."""

from __future__ import annotations

import os

from videolmm.errors import ConfigError


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


#: ``torch_threads=auto`` gives torch every core when the previous batch's decoding took less than
#: this share of its generation time (the prefetched decode then overlaps generation only briefly).
CHEAP_DECODE_SHARE = 0.25


def threads_for(last: tuple[float, float] | None, cores: int, decode_workers: int) -> int:
    """``torch_threads=auto`` for one batch.

    Every core when the previous batch decoded in under :data:`CHEAP_DECODE_SHARE` of its generation
    time; else (and for the first batch) the cores the decode threads leave, at least one. Measured
    on 2 idle cores (video_llava, 96 questions, cheap decoding): 2 torch threads did 94-101
    samples/s where 1 did 68-71; while decode threads run, 2 torch threads stall (see
    :func:`size_torch_threads`).

    Args:
        last: ``(decode_s, generate_s)`` of the previous batch, or None before the first.
        cores: usable cores.
        decode_workers: decode threads.
    """
    if last is not None and last[0] < CHEAP_DECODE_SHARE * last[1]:
        return cores
    return max(1, cores - decode_workers)


def set_threads(threads: int) -> None:
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def size_torch_threads(setting: int | str, decode_workers: int, device: str) -> int:
    """Share the cores between decoding and generation on CPU; returns the threads set (0: untouched).

    ``auto`` (the default), when the model runs on CPU and neither ``OMP_NUM_THREADS`` nor
    ``torch_threads`` says otherwise, starts torch on the cores the decode threads leave (at least
    one), and :func:`threads_for` resizes it per batch: torch's intra-op threads synchronise at
    every parallel region, and one of them losing its core to a decode thread (or another process)
    stalls them all (measured on a shared 2-core machine: a tiny model's batch of 16 took 1.4-2.2 s
    with 2 torch threads and 0.12 s with 1). An integer sets the count; ``0`` or ``none`` leaves
    torch alone. Process-wide, as ``torch.set_num_threads`` is.
    """
    import torch

    text = str(setting).strip().lower()
    if text in ("0", "none", "off"):
        return 0
    if text == "auto":
        if os.environ.get("OMP_NUM_THREADS") or not str(device).startswith(("cpu", "auto")):
            return 0
        if str(device).startswith("auto") and torch.cuda.is_available():
            return 0
        threads = max(1, usable_cores() - decode_workers)
    else:
        try:
            threads = int(text)
        except ValueError:
            raise ConfigError(f"torch_threads={setting!r}: expected auto, none or a positive integer") from None
        if threads < 1:
            raise ConfigError(f"torch_threads={setting!r}: expected auto, none or a positive integer")
    torch.set_num_threads(threads)
    return threads


__all__ = ["CHEAP_DECODE_SHARE", "set_threads", "size_torch_threads", "threads_for", "usable_cores"]
