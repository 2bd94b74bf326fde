"""Decode benchmark helpers: the ideal time a video allows, and where the keyframe decoder's time goes.

Used by ``decode_bench.py`` (measured in the same run as its table):

* :func:`sequential_frame_cost`: seconds per frame of a plain single-threaded PyAV decode of the
  video's first frames (every frame, no skipping, no colour conversion); the *ideal* for a read is
  ``bound × that cost ÷ cores`` (the issue's definition: the keyframe bound decoded at sequential
  speed, spread perfectly over the cores).
* :func:`profile_row`: the per-stage times the keyframe decoder recorded for one read
  (:class:`videolmm.media.readplan.StageTimes`), with the idle time of its workers.
* :func:`profile_markdown`: the profile as a table, one row per encode.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

STAGES = ("index", "open", "seek", "demux", "decode", "convert")


def sequential_frame_cost(path: Path, frames: int = 750) -> float:
    """Seconds per frame of a single-threaded sequential PyAV decode of the first ``frames`` frames."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "NONE"
        count, start = 0, time.perf_counter()
        for _ in container.decode(stream):
            count += 1
            if count >= frames:
                break
        return (time.perf_counter() - start) / count


def profile_row(video: Any, wall_read: float, wall_total: float) -> dict[str, Any]:
    """One read's profile from an opened keyframe video (``video.stats`` after a single read).

    Args:
        video: the :class:`~videolmm.media.keyframe.KeyframeVideo` (one read done).
        wall_read: wall seconds of the read alone.
        wall_total: wall seconds of open + read.

    Returns:
        Stage seconds (summed over worker threads), ``other`` (worker time outside the stages:
        Python per packet, the run queue, waiting for the GIL), ``idle`` (worker-seconds with no run
        left while another worker still decoded), the schedule and the counts.
    """
    times, stats, plan = video.stats.times, video.stats, video.last_schedule
    busy = list(times.busy)
    row: dict[str, Any] = {stage: getattr(times, stage) for stage in STAGES}
    in_stages = sum(row[s] for s in STAGES if s != "index")
    row.update(
        wall_total=wall_total,
        wall_read=wall_read,
        busy=busy,
        other=max(0.0, sum(busy) - in_stages),
        idle=sum(max(busy) - b for b in busy) if busy else 0.0,
        workers=plan.workers if plan else 1,
        frame_threads=plan.frame_threads if plan else 1,
        runs=len(plan.order) if plan else 0,
        frames_decoded=stats.frames_decoded,
        packets_sent=stats.packets_sent,
    )
    return row


def profile_markdown(profiles: dict[str, dict[str, Any]]) -> list[str]:
    """The profile table (milliseconds), one row per video."""
    lines = [
        "| video | open + read | index (open) | extra containers | seeks | demux | decode | RGB + copy | other | "
        "idle workers | workers × frame threads | runs | decoded / packets sent |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for video, p in profiles.items():
        ms = {k: p[k] * 1000 for k in (*STAGES, "other", "idle", "wall_total")}
        lines.append(
            f"| {video} | {ms['wall_total']:.0f} | {ms['index']:.0f} | {ms['open']:.0f} | {ms['seek']:.0f} | "
            f"{ms['demux']:.0f} | {ms['decode']:.0f} | {ms['convert']:.0f} | {ms['other']:.0f} | {ms['idle']:.0f} | "
            f"{p['workers']} × {p['frame_threads']} | {p['runs']} | {p['frames_decoded']} / {p['packets_sent']} |"
        )
    return lines
