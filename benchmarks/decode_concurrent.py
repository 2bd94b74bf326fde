"""Concurrent reads for decode_bench: several keyframe reads at once, sharing the cores or each sized for all.

Evaluation decodes the next batches in a thread pool and Serve decodes several requests at once, so
reads run side by side. Each of ``READS`` threads opens the same video and reads the same frames, all
started together (a barrier); the wall time until the last one finishes is compared between the
``keyframe`` decoder as shipped (reads share the cores: ``cores // reads_in_flight`` each, see
``videolmm/media/cores.py``) and the same decoder with ``share_cores=False`` (every read planned for
all the cores, the decoder before), interleaved, and against the same reads one after another.
"""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

READS = 4
FRAMES = 16
VIDEOS = ("short", "short_gop", "hevc")
SIDES = ("shared", "not shared", "one after another")


def _once(path: Path, indices: list[int], side: str) -> tuple[float, float, list[np.ndarray], list[tuple]]:
    """Open ``READS`` videos, then time their reads (together, or one after another)."""
    from videolmm.media.keyframe import KeyframeDecoder

    decoder = KeyframeDecoder(share_cores=side != "not shared")
    videos = [decoder.open(path) for _ in range(READS)]
    out: list[Any] = [None] * READS
    start_line = threading.Barrier(READS if side != "one after another" else 1)

    def read(k: int) -> None:
        start_line.wait()
        out[k] = videos[k].read(indices)

    try:
        start, cpu = time.perf_counter(), time.process_time()
        if side == "one after another":
            for k in range(READS):
                read(k)
        else:
            threads = [threading.Thread(target=read, args=(k,)) for k in range(READS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        wall, cpu_ms = (time.perf_counter() - start) * 1000, (time.process_time() - cpu) * 1000
        plans = [(v.last_schedule.workers, v.last_schedule.frame_threads) if v.last_schedule else None for v in videos]
    finally:
        for video in videos:
            video.close()
    return wall, cpu_ms, out, plans


def bench_concurrent(videos: dict[str, Path], repeats: int) -> list[dict[str, Any]]:
    """Per video: median wall / CPU ms of ``READS`` reads per side, the plans and whether frames are identical."""
    from videolmm.media.keyframe import KeyframeDecoder

    rows = []
    for name in (v for v in VIDEOS if v in videos):
        path = videos[name]
        with KeyframeDecoder().open(path) as video:
            indices = np.linspace(0, video.info.num_frames - 1, FRAMES, dtype=int).tolist()
        wall: dict[str, list[float]] = {s: [] for s in SIDES}
        cpu: dict[str, list[float]] = {s: [] for s in SIDES}
        plans: dict[str, list] = {}
        frames: dict[str, list[np.ndarray]] = {}
        for r in range(repeats):
            for side in SIDES if r % 2 == 0 else tuple(reversed(SIDES)):
                ms, cpu_ms, arrays, plan = _once(path, indices, side)
                wall[side].append(ms)
                cpu[side].append(cpu_ms)
                plans.setdefault(side, sorted(set(plan), key=str))
                frames.setdefault(side, arrays)
        ref = frames["one after another"][0]
        rows.append({
            "video": name, "reads": READS, "frames": FRAMES,
            **{f"{s}_ms": statistics.median(wall[s]) for s in SIDES},
            **{f"{s}_ms_all": wall[s] for s in SIDES},
            **{f"{s}_cpu_ms": statistics.median(cpu[s]) for s in SIDES},
            "plans": {s: [list(p) for p in plans[s] if p is not None] for s in SIDES},
            "identical": all(np.array_equal(a, ref) for s in SIDES for a in frames[s]),
        })  # fmt: skip
        print(f"  {name}: " + ", ".join(f"{s} {statistics.median(wall[s]):.0f} ms" for s in SIDES), flush=True)
    return rows


def concurrent_markdown(rows: list[dict[str, Any]], cores: int) -> list[str]:
    """The concurrent-reads paragraph and table (empty when not measured)."""
    if not rows:
        return []

    def plans(row: dict[str, Any], side: str) -> str:
        return ", ".join(f"{w} × {t}" for w, t in row["plans"][side]) or "n/a"

    lines = [
        f"**Reads at once.** {rows[0]['reads']} threads each open the same video and read the same "
        f"{rows[0]['frames']} frames (linspace), started together; wall time until the last read ends (videos "
        "already open), median over the repeats. *shared*: the `keyframe` decoder as shipped, each read planned "
        "for its share of the cores when it starts (`cores // reads in flight`, `videolmm/media/cores.py`); "
        "*not shared*: `share_cores=False`, every read planned for all "
        f"{cores} cores (the decoder before); *one after another*: the same {rows[0]['reads']} reads in "
        "sequence (each alone, so planned for all the cores). *plans*: workers × FFmpeg frame threads the reads "
        "used.",
        "",
        "| video | shared | not shared | one after another | **not shared ÷ shared** | CPU ms: shared | "
        "not shared | plans: shared | not shared | identical |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|:---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['video']} | {r['shared_ms']:.0f} | {r['not shared_ms']:.0f} | {r['one after another_ms']:.0f} | "
            f"**{r['not shared_ms'] / r['shared_ms']:.2f}×** | {r['shared_cpu_ms']:.0f} | "
            f"{r['not shared_cpu_ms']:.0f} | {plans(r, 'shared')} | {plans(r, 'not shared')} | "
            f"{'yes' if r['identical'] else 'NO'} |"
        )
    lines.append("")
    return lines


__all__ = ["bench_concurrent", "concurrent_markdown"]
