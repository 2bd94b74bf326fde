"""Eval on the continuous scheduler against the static one, side by side in one process.

lmms-eval's ``generate_until`` of our model class (prefetch, decode threads, thread sizing: the real
eval path) on the trained tiny LLaVA-NeXT-Video checkpoint and the synthetic clips, the two
schedulers alternating per repeat; answers must be identical. Two request mixes: every question with
the task's ``max_new_tokens`` (the checkpoint answers one word, then EOS), and the same with a random
tiny checkpoint that never says EOS early and ``max_new_tokens`` cycling 4..64 (what continuous
batching is for: no sample waits for the longest answer of its batch).

    python benchmarks/scheduler_bench.py            # ~3 min on 2 cores; prints a markdown table

Not a test: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

QUESTIONS = ("What colour is the moving square? Answer with one word.", "Which way does the square move?")


def instances(docs: list[dict], gen: list[dict]) -> list:
    from lmms_eval.api.instance import Instance

    def doc_to_visual(doc: dict) -> list[str]:
        return [doc["video"]]

    return [
        Instance(
            "generate_until",
            (d["question"], dict(g), doc_to_visual, i, "bench", "test"),
            idx=0,
            metadata={"task": "bench", "doc_id": i, "repeats": 1},
        )  # fmt: skip
        for i, (d, g) in enumerate(zip(docs, gen, strict=True))
    ]


def run(lm: object, docs: list[dict], gen: list[dict]) -> tuple[float, list[str]]:
    lm.task_dict = {"bench": {"test": dict(enumerate(docs))}}
    start = time.perf_counter()
    out = lm.generate_until(instances(docs, gen))
    return time.perf_counter() - start, [r.text for r in out]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--clips", type=int, default=24, help="synthetic clips (two questions each)")
    parser.add_argument("--batch-size", type=int, default=8)
    opts = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from videolmm.eval.model import LlavaNextVideo
    from videolmm.toy.synthetic import COLOURS, DIRECTIONS, write_moving_square_video
    from videolmm.toy.tiny import build_tiny_llava_next_video
    from videolmm.toy.trained import materialize_trained

    work = Path(tempfile.mkdtemp(prefix="vlmm-sched-"))
    colours = list(COLOURS)
    clips = [
        write_moving_square_video(
            work / f"c{i}.mp4", colour=colours[i % len(colours)], direction=DIRECTIONS[i % len(DIRECTIONS)], seed=i
        )  # fmt: skip
        for i in range(opts.clips)
    ]
    docs = [{"video": str(c), "question": q} for c in clips for q in QUESTIONS]
    mixes = {
        "trained, task max_new_tokens 16": (
            materialize_trained("llava_next_video", work / "trained"),
            [{"max_new_tokens": 16, "temperature": 0, "until": ["\n"]}] * len(docs),
        ),
        "random tiny, max_new_tokens 4-64": (
            build_tiny_llava_next_video(work / "random", seed=0),
            [{"max_new_tokens": (4, 64, 8, 32, 16)[i % 5], "temperature": 0} for i in range(len(docs))],
        ),
    }
    print("| mix | static (s) | continuous (s) | continuous speed-up | same answers |")
    print("|---|---:|---:|---:|---|")
    for name, (ckpt, gen) in mixes.items():
        models = {
            s: LlavaNextVideo(
                pretrained=str(ckpt), device="cpu", num_frames=8, batch_size=opts.batch_size, scheduler=s
            )
            for s in ("static", "continuous")
        }
        times: dict[str, list[float]] = {s: [] for s in models}
        answers: dict[str, list[str]] = {}
        for _ in range(opts.repeats):
            for s, lm in models.items():
                seconds, texts = run(lm, docs, gen)
                times[s].append(seconds)
                answers[s] = texts
        ratios = [a / b for a, b in zip(times["static"], times["continuous"], strict=True)]
        print(
            f"| {name} | {statistics.median(times['static']):.2f} | {statistics.median(times['continuous']):.2f} | "
            f"{statistics.median(ratios):.2f}× | {answers['static'] == answers['continuous']} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
