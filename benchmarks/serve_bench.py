"""Serve benchmark: the continuous scheduler against the static one, the separate decode deployment,
token streaming, and the overhead of HTTP + Ray over an in-process engine call, side by side in one run.

Three copies of the ``serve_configs/tiny.yaml`` app run at once in one Ray cluster:

* ``/continuous``: the default shape: videos decoded in the MediaDecoder deployment, except media small
  enough to skip it (``inline_decode_max_bytes``: the 64-px clip is decoded in the model replica, the
  480-px one in the MediaDecoder; each row reports the share), the continuous scheduler (requests join
  the running batch at step boundaries and leave at their own end), 16 slots (``batching.max_batch_size``
  of tiny.yaml);
* ``/static``: the same with ``scheduler: static`` (``@serve.batch``: a batch runs to its longest answer);
* ``/colocated``: continuous, ``decode_in: model_replica`` (no MediaDecoder: the model replica decodes).

Three workloads: ``generate-heavy`` (the 64-px 16-frame clip, 128 new tokens), ``mixed`` (the same clip,
``max_tokens`` cycling through 16, 32, 64, 128, 256 request by request) and ``decode-heavy`` (a 480-px
8-s 30-fps clip, 16 new tokens). The runs alternate between the apps at each concurrency, so all see the
same machine state. Before them, streamed requests (48 tokens) at concurrency 1 and 16 measure the content
deltas and the time to first token. The in-process baseline is ``Engine.generate`` on the same request
in this process (decode included, no HTTP, no Ray).

The cluster runs with Ray Serve's throughput-optimized settings (``--ray-mode throughput``, the settings
docs/serving.md recommends: ``RAY_SERVE_THROUGHPUT_OPTIMIZED=1``), so the overhead rounds also go to each
ingress replica's own HTTP port (direct ingress) besides the proxy; before it, a child process repeats
the overhead rounds on a cluster with Ray's default settings (``--no-default-overhead`` skips it).

    python benchmarks/serve_bench.py                      # ~10 min on 2 cores; writes the results
    python benchmarks/serve_bench.py --seconds 4 --pairs 10 --no-write
    python benchmarks/serve_bench.py --workloads decode-heavy --no-write --save-raw /tmp/decode.json  # one workload

Writes ``docs/serve_bench.png`` and the Serve section of ``docs/benchmarks.md`` (between markers,
so other sections are kept), and prints the table. Not a test: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import socket
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench_docs import write_section  # benchmarks/ is on sys.path when a script runs

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
PLOT = DOCS / "serve_bench.png"
MARK_BEGIN = "<!-- serve-bench:begin -->"
MARK_END = "<!-- serve-bench:end -->"
MODEL = "tiny-llava-next-video"
CONCURRENCIES = (1, 4, 16)
#: app name → (max_batch_size, decode_in, scheduler)
MODES = {
    "continuous": (16, "media_deployment", "continuous"),
    "static": (16, "media_deployment", "static"),
    "colocated": (16, "model_replica", "continuous"),
}
WORKLOADS = ("generate-heavy", "mixed", "decode-heavy")
#: the ``mixed`` workload's max_tokens, cycled request by request
MIXED_TOKENS = (16, 32, 64, 128, 256)
STREAM_TOKENS = 48
#: Ray's own switch (direct ingress: each ingress replica serves HTTP on its own port; gRPC between
#: deployments; user code on the replica's event loop; buffered request logs); the Ray env of each mode
RAY_MODES = {
    "throughput": {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "0"},
    "default": {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "0"},
}
#: where Serve's direct ingress gives ingress replicas their ports (RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT)
DIRECT_PORTS = range(30000, 30100)
STYLES = {"continuous": ("o-", "tab:blue"), "static": ("s--", "tab:orange"), "colocated": ("^-.", "tab:green")}


@dataclass(frozen=True)
class Run:
    """One measured configuration."""

    workload: str
    mode: str
    concurrency: int
    requests: int
    errors: int
    seconds: float
    throughput: float
    p50_ms: float
    p99_ms: float
    decode_ms: float = float("nan")
    generate_ms: float = float("nan")
    mean_batch: float = float("nan")
    tokens_per_s: float = float("nan")
    #: share of the row's requests whose media the model replica decoded (``videolmm.decoded_in``)
    inline_share: float = float("nan")


@dataclass(frozen=True)
class StreamRun:
    """Streamed requests of one app at one concurrency."""

    mode: str
    concurrency: int
    requests: int
    deltas_p50: float
    first_share_p50: float
    ttft_p50_ms: float
    ttft_p99_ms: float
    total_p50_ms: float
    same_text: bool


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100)."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_inputs(work: Path) -> tuple[Path, dict[str, Path]]:
    """A tiny LLaVA-NeXT-Video checkpoint, a 64-px clip (16 frames, 8 fps) and a 480-px one (240 frames, 30 fps)."""
    from videolmm.toy.synthetic import write_moving_square_video
    from videolmm.toy.tiny import build_tiny_llava_next_video

    ckpt = build_tiny_llava_next_video(work / "tiny-llava-next-video", seed=0)
    (work / "media").mkdir(exist_ok=True)
    small = write_moving_square_video(work / "media" / "clip.mp4", colour="red", direction="right", seed=1)
    large = write_moving_square_video(work / "media" / "clip480.mp4", colour="red", direction="right", seed=1,
                                      size=480, num_frames=240, fps=30)  # fmt: skip
    return ckpt, {"generate-heavy": small, "decode-heavy": large}


def app_args(
    ckpt: Path, media: Path, max_batch_size: int, decode_in: str, scheduler: str, media_resize: bool = True
) -> dict[str, Any]:
    """tiny.yaml's app with one model, generous queues (latency, not 503s, is measured here).

    CPU shares are small (0.65 per app at most) so that the three apps fit the 2-CPU cluster; they
    are scheduling reservations, not limits: every replica can use any core.
    """
    from videolmm.serve.config import load_serve_config

    args = load_serve_config(REPO / "serve_configs" / "tiny.yaml")
    args["models"] = [{**args["models"][0], "model_id": MODEL, "pretrained": str(ckpt), "scheduler": scheduler}]
    args["security"] = {"media_roots": [str(media)]}
    args["batching"] = {"max_batch_size": max_batch_size, "batch_wait_timeout_s": 0.01}
    args["decode_in"] = decode_in
    args["media_resize"] = media_resize
    args["model_deployment"] = {
        "num_replicas": 1,
        "max_ongoing_requests": 32,
        "max_queued_requests": 512,
        "ray_actor_options": {"num_cpus": 0.4},
    }
    args["media_deployment"] = {
        "num_replicas": 1,
        "max_ongoing_requests": 8,
        "max_queued_requests": 512,
        "ray_actor_options": {"num_cpus": 0.15},
    }
    args["ingress_deployment"] = {
        "num_replicas": 1,
        "max_ongoing_requests": 256,
        "max_queued_requests": 1024,
        "ray_actor_options": {"num_cpus": 0.1},
    }
    return args


def direct_urls(modes: list[str]) -> dict[str, str]:
    """Each app's ingress replica's own HTTP port (direct ingress), found by asking each port for each app's
    ``/health``: Serve allocates the ports and does not publish them to a driver."""
    import httpx

    found: dict[str, str] = {}
    with httpx.Client(timeout=2) as http:
        for port in DIRECT_PORTS:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) != 0:
                    continue
            for mode in modes:
                if mode not in found and http.get(f"http://127.0.0.1:{port}/{mode}/health").status_code == 200:
                    found[mode] = f"http://127.0.0.1:{port}/{mode}/v1/chat/completions"
    missing = sorted(set(modes) - set(found))
    if missing:
        raise RuntimeError(f"direct ingress: no port in {DIRECT_PORTS} serves {missing}")
    return found


def path_label(key: str) -> str:
    """The overhead table's label for a path key of :func:`paired_overhead`."""
    mode, _, how = key.partition(" ")
    return f"HTTP → ingress replica's own port, {mode}" if how == "direct" else f"HTTP → Serve proxy, {mode}"


def stream_label(mode: str) -> str:
    """The streaming table's app label: ``continuous direct`` → ``continuous, ingress replica's own port``."""
    app, _, how = mode.partition(" ")
    return f"{app}, ingress replica's own port" if how == "direct" else f"{app}, Serve proxy"


def payload(clip: Path, max_tokens: int) -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "video_url", "video_url": {"url": clip.as_uri()}},
                    {"type": "text", "text": "What colour is the moving square?"},
                ],
            }
        ],
        "max_tokens": max_tokens,
    }


def load_run(
    url: str, bodies: list[dict[str, Any]], workload: str, mode: str, concurrency: int, seconds: float
) -> Run:
    """``concurrency`` closed-loop clients for ``seconds`` (after a short warm-up), each cycling through
    ``bodies``; bounded by timeouts."""
    import httpx

    latencies: list[float] = []
    stages: list[dict[str, float]] = []
    tokens = [0]
    errors = [0]
    lock = threading.Lock()

    def client_loop(deadline: float, record: bool, offset: int) -> None:
        with httpx.Client(timeout=120) as http:
            n = offset
            while time.monotonic() < deadline:
                start = time.perf_counter()
                response = http.post(url, json=bodies[n % len(bodies)])
                n += 1
                elapsed = time.perf_counter() - start
                if record:
                    with lock:
                        if response.status_code == 200:
                            latencies.append(elapsed)
                            data = response.json()
                            info = data["videolmm"]
                            tokens[0] += data["usage"]["completion_tokens"]
                            inline = float(info.get("decoded_in") == "model_replica")
                            stages.append({**info["timings"], "batch_size": info.get("batch_size", float("nan")),
                                           "inline": inline})  # fmt: skip
                        else:
                            errors[0] += 1

    for record, duration in ((False, min(3.0, seconds / 3)), (True, seconds)):
        deadline = time.monotonic() + duration
        started = time.monotonic()
        threads = [threading.Thread(target=client_loop, args=(deadline, record, i)) for i in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=duration + 150)
        measured = time.monotonic() - started
    ms = [x * 1000 for x in latencies] or [float("nan")]

    def mean(name: str) -> float:
        values = [t[name] for t in stages if name in t]
        return sum(values) / len(values) if values else float("nan")

    # "generate" is per engine call (a whole batch); batch size as seen by each request
    return Run(workload, mode, concurrency, len(latencies), errors[0], measured, len(latencies) / measured,
               percentile(ms, 50), percentile(ms, 99), 1000 * mean("decode"), 1000 * mean("generate"),
               mean("batch_size"), tokens[0] / measured, mean("inline"))  # fmt: skip


def stream_run(url: str, body: dict[str, Any], mode: str, concurrency: int, rounds: int, expect: str) -> StreamRun:
    """``rounds`` rounds of ``concurrency`` simultaneous streamed requests: content deltas, time to
    first content delta, total time, and whether the streamed text equals the non-streamed answer."""
    import httpx

    lock = threading.Lock()
    rows: list[tuple[int, float, float, str]] = []

    def one() -> None:
        first, deltas, parts = float("nan"), 0, []
        # the client is made before the clock starts: making one costs 20-30 ms here (its TLS context
        # loads the CA bundle), which is the client's, not the server's, and none of the other rows pay
        with httpx.Client(timeout=120) as http:
            start = time.perf_counter()
            with http.stream("POST", url, json={**body, "stream": True}) as response:
                for line in response.iter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    chunk = json.loads(line[6:])
                    for choice in chunk.get("choices") or []:
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            deltas += 1
                            parts.append(text)
                            if deltas == 1:
                                first = time.perf_counter() - start
            total = time.perf_counter() - start
        with lock:
            rows.append((deltas, first, total, "".join(parts)))

    for _ in range(rounds):
        threads = [threading.Thread(target=one) for _ in range(concurrency)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=300)
    ttft = [r[1] * 1000 for r in rows]
    return StreamRun(
        mode,
        concurrency,
        len(rows),
        percentile([float(r[0]) for r in rows], 50),
        percentile([r[1] / r[2] for r in rows], 50),
        percentile(ttft, 50),
        percentile(ttft, 99),
        percentile([r[2] * 1000 for r in rows], 50),
        all(r[3] == expect for r in rows),
    )


def make_engine_request(ckpt: Path, clip: Path, max_tokens: int) -> tuple[Any, Any]:
    """The in-process engine and the core request equivalent to :func:`payload`."""
    from videolmm.load import load_engine
    from videolmm.models.families.base import LoadOptions
    from videolmm.types import GenerationSettings, Request

    engine = load_engine(str(ckpt), family="llava_next_video", load=LoadOptions(device="cpu"))
    request = Request(
        question="What colour is the moving square?",
        videos=(str(clip),),
        generation=GenerationSettings(max_new_tokens=max_tokens),
    )
    return engine, request


def paired_overhead(engine: Any, request: Any, urls: dict[str, str], body: dict[str, Any], pairs: int) -> dict:
    """Sequential requests alternating in-process / each app, so every sample sees the same machine state.

    Returns:
        Per path, the latencies in ms; and per app, the paired differences to the in-process call.
    """
    import httpx

    samples: dict[str, list[float]] = {"in-process": [], **{mode: [] for mode in urls}}
    with httpx.Client(timeout=120) as http:
        for i in range(pairs + 3):
            t0 = time.perf_counter()
            result = engine.generate([request])[0]
            assert result.ok, result.error
            timings = {"in-process": time.perf_counter() - t0}
            for mode, url in urls.items():
                t0 = time.perf_counter()
                response = http.post(url, json=body)
                assert response.status_code == 200, response.text
                timings[mode] = time.perf_counter() - t0
            if i >= 3:  # warm-up
                for key, seconds in timings.items():
                    samples[key].append(seconds * 1000)
    diffs = {mode: [a - b for a, b in zip(samples[mode], samples["in-process"], strict=True)] for mode in urls}
    return {"latency_ms": samples, "overhead_ms": diffs}


def plot(runs: list[Run], meta: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(WORKLOADS), 2, figsize=(11, 3.6 * len(WORKLOADS)))
    for row, workload in enumerate(WORKLOADS):
        ax_tp, ax_lat = axes[row]
        for mode, (style, colour) in STYLES.items():
            rows = sorted((r for r in runs if r.mode == mode and r.workload == workload), key=lambda r: r.concurrency)
            if not rows:
                continue
            xs = [r.concurrency for r in rows]
            ax_tp.plot(xs, [r.tokens_per_s for r in rows], style, color=colour, label=mode)
            ax_lat.plot(xs, [r.p50_ms for r in rows], style, color=colour, label=f"{mode} p50")
            ax_lat.plot(xs, [r.p99_ms for r in rows], style, color=colour, alpha=0.35, label=f"{mode} p99")
        tokens = meta["workloads"][workload]["max_tokens"]
        for ax, title, unit in ((ax_tp, "output tokens / s", "tokens / s"), (ax_lat, "latency", "ms")):
            ax.set_xscale("log", base=2)
            ax.set_xticks(list(CONCURRENCIES), [str(c) for c in CONCURRENCIES])
            ax.set_xlabel("concurrent clients")
            ax.set_ylabel(unit)
            ax.set_title(f"{workload} ({meta['workloads'][workload]['clip']}, {tokens} tokens): {title}", fontsize=9)
            ax.set_ylim(bottom=0)
            ax.legend(fontsize=7)
    fig.suptitle(f"videolmm Serve: tiny LLaVA-NeXT-Video, {os.cpu_count()} CPU cores, loopback")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def ratio_line(by: dict, a: str, b: str, workload: str) -> str:
    """``1: 1.1×, 4: 1.2×, 16: 1.6×``: output tokens/s of mode ``a`` ÷ mode ``b`` by concurrency."""
    return ", ".join(
        f"{c}: {by[(workload, a, c)].tokens_per_s / by[(workload, b, c)].tokens_per_s:.2f}×" for c in CONCURRENCIES
    )


def markdown(
    runs: list[Run],
    streams: list[StreamRun],
    overhead: dict[str, Any],
    meta: dict[str, Any],
    default_overhead: dict[str, Any] | None = None,
) -> str:
    lat, diff = overhead["latency_ms"], overhead["overhead_ms"]
    ray_mode = meta.get("ray_mode", "default")  # older results files: Ray's defaults
    env = " ".join(f"{k}={v}" for k, v in meta.get("ray_env", {}).items())
    settings = (
        f"Ray Serve's throughput-optimized settings (`{env}`: each ingress replica also serves HTTP on its own "
        "port, gRPC between deployments, user code on the replica's event loop, buffered request logs; the last "
        "variable only shortens shutdown)"
        if ray_mode == "throughput"
        else "Ray Serve's default settings"
    )
    by = {(r.workload, r.mode, r.concurrency): r for r in runs}
    top, one = CONCURRENCIES[-1], CONCURRENCIES[0]
    wl = meta["workloads"]
    small, large = wl["generate-heavy"].get("clip_bytes"), wl["decode-heavy"].get("clip_bytes")
    routed = (
        f"the model replica for the {small / 1024:.0f}-KB 64-px clip (media up to `inline_decode_max_bytes`, 64 KiB, "
        f"skip the MediaDecoder), the MediaDecoder deployment for the {large / 1024:.0f}-KB 480-px clip"
        + (
            " (its frames sent at the model's input size, 32 px: `media_resize`)"
            if meta.get("media_resize", False)  # older results files: before media_resize
            else " (its frames sent at their decoded size)"
        )
        if small and large
        else "the MediaDecoder deployment"
    )

    def scale(workload: str, mode: str) -> float:
        return by[(workload, mode, top)].tokens_per_s / by[(workload, mode, one)].tokens_per_s

    def vs(workload: str, a: str, b: str) -> float:
        return by[(workload, a, top)].tokens_per_s / by[(workload, b, top)].tokens_per_s

    lines = [
        MARK_BEGIN,
        "## Serve",
        "",
        f"Measured {meta['date']} with `python benchmarks/serve_bench.py` ({meta['machine']}; every comparison "
        f"below comes from one interleaved run). Model: `{MODEL}` (a tiny random checkpoint: it never says EOS "
        "early, so every request generates its `max_tokens`), videos by `file://`, the family's default 32 frames, "
        "greedy. Three copies of the tiny.yaml app ran at once in one Ray cluster started with "
        f"{settings} (one replica per deployment, queues large enough that nothing was refused):",
        "",
        "| app | scheduler | videos decoded in | slots / `max_batch_size` |",
        "|---|---|---|---:|",
        f"| `continuous` (the default shape) | continuous: join and leave at step boundaries | {routed} | 16 |",
        f"| `static` | static (`@serve.batch`: a batch runs to its longest answer) | {routed} | 16 |",
        "| `colocated` (`decode_in: model_replica`) | continuous | the model replica; no MediaDecoder | 16 |",
        "",
        "**Against the targets** (issue: a serving engine):",
        "",
        f"- output tokens/s at concurrency {top} ÷ concurrency {one}, {wl['generate-heavy']['max_tokens']} new tokens "
        f"(generate-heavy): continuous **{scale('generate-heavy', 'continuous'):.2f}×**, static "
        f"{scale('generate-heavy', 'static'):.2f}× (target ≥ 4× for continuous); mixed max_tokens: continuous "
        f"{scale('mixed', 'continuous'):.2f}×, static {scale('mixed', 'static'):.2f}×;",
        f"- continuous ÷ static output tokens/s at concurrency {top}: "
        + ", ".join(f"{w} {vs(w, 'continuous', 'static'):.2f}×" for w in WORKLOADS)
        + ";",
        f"- the default topology ÷ colocated at concurrency {top} (target ≥ 0.95): "
        + ", ".join(f"{w} {vs(w, 'continuous', 'colocated'):.2f}×" for w in WORKLOADS)
        + ";",
        "- HTTP + Ray overhead over an in-process call at concurrency 1, paired p50 (target ≤ 10 ms): "
        + ", ".join(f"{path_label(m).removeprefix('HTTP → ')} {percentile(diff[m], 50):+.0f} ms" for m in diff)
        + (
            "; with Ray's default settings (a second cluster, its own paired rounds): "
            + ", ".join(
                f"{path_label(m).removeprefix('HTTP → ')} {percentile(d, 50):+.0f} ms"
                for m, d in default_overhead["overhead_ms"].items()
            )
            if default_overhead
            else ""
        )
        + ".",
        "",
        f"**Streaming** ({STREAM_TOKENS}-token answers, `stream: true`, the 64-px clip): content deltas per answer, "
        "the first delta's share of the answer's total time, and the time to first token (TTFT):",
        "",
        "| app | concurrency | requests | content deltas (p50) | first delta at (share of total, p50) "
        "| TTFT p50 (ms) | TTFT p99 (ms) | total p50 (ms) | streamed text = non-streamed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for s in streams:
        lines.append(
            f"| {stream_label(s.mode)} | {s.concurrency} | {s.requests} | {s.deltas_p50:.0f} | "
            f"{s.first_share_p50:.0%} | "
            f"{s.ttft_p50_ms:.0f} | {s.ttft_p99_ms:.0f} | {s.total_p50_ms:.0f} | {'yes' if s.same_text else 'NO'} |"
        )
    lines += [
        "",
        "The static scheduler has no tokens to stream before its batch ends: its answer arrives as one delta.",
        "",
        "**Overhead of HTTP + Ray over an in-process core call.** "
        f"{meta['pairs']} rounds of sequential requests (64-px clip, {meta['overhead_tokens']} new tokens), each "
        "round calling `Engine.generate` in process, then each app over loopback HTTP (decode included "
        "everywhere):",
        "",
        "| path | p50 (ms) | p99 (ms) | paired overhead p50 (ms) |",
        "|---|---:|---:|---:|",
        f"| in-process `Engine.generate` | {percentile(lat['in-process'], 50):.0f} | "
        f"{percentile(lat['in-process'], 99):.0f} | — |",
    ]
    for key in diff:
        lines.append(
            f"| {path_label(key)} | {percentile(lat[key], 50):.0f} | {percentile(lat[key], 99):.0f} | "
            f"{percentile(diff[key], 50):+.0f} |"
        )
    if default_overhead:
        dlat, ddiff = default_overhead["latency_ms"], default_overhead["overhead_ms"]
        lines.append(
            f"| in-process, beside the cluster with Ray's default settings | {percentile(dlat['in-process'], 50):.0f} "
            f"| {percentile(dlat['in-process'], 99):.0f} | — |"
        )
        for key in ddiff:
            lines.append(
                f"| {path_label(key)}, Ray's default settings | {percentile(dlat[key], 50):.0f} | "
                f"{percentile(dlat[key], 99):.0f} | {percentile(ddiff[key], 50):+.0f} |"
            )
    lines += [
        "",
        f"**Throughput and latency under load.** Closed-loop clients for {meta['seconds']:g} s per row (after a "
        "warm-up), the rows alternating between the apps at each concurrency. Workloads: "
        f"*generate-heavy* ({wl['generate-heavy']['clip']}, {wl['generate-heavy']['max_tokens']} new tokens), "
        f"*mixed* (the same clip, max_tokens cycling {', '.join(map(str, MIXED_TOKENS))}) and *decode-heavy* "
        f"({wl['decode-heavy']['clip']}, {wl['decode-heavy']['max_tokens']} new tokens: decoding is the expensive "
        "step).",
        "",
        "| workload | app | concurrency | requests | errors | output tokens/s | requests/s | p50 (ms) | p99 (ms) "
        "| decode (ms) | generate (ms) | batch size | decoded in the model replica |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        inline = "—" if r.inline_share != r.inline_share else f"{r.inline_share:.0%}"  # nan: an older results file
        lines.append(
            f"| {r.workload} | {r.mode} | {r.concurrency} | {r.requests} | {r.errors} | {r.tokens_per_s:.0f} | "
            f"{r.throughput:.1f} | {r.p50_ms:.0f} | {r.p99_ms:.0f} | {r.decode_ms:.0f} | {r.generate_ms:.0f} | "
            f"{r.mean_batch:.1f} | {inline} |"
        )
    lines += [
        "",
        "`decode`, `generate` and `batch size` come from each response's `videolmm` object (means over the row's "
        "requests): fetch + decode + sampling; for continuous the request's own time from admission to its last "
        "token (static: the batch's engine call); and how many requests ran beside it at most (static: in its "
        "engine call).",
        "",
        "Output tokens/s ratios by concurrency (each from one interleaved run):",
        "",
    ]
    for workload in WORKLOADS:
        lines.append(
            f"- {workload}: continuous ÷ static {ratio_line(by, 'continuous', 'static', workload)}; "
            "separate decode deployment (continuous ÷ colocated) "
            f"{ratio_line(by, 'continuous', 'colocated', workload)}."
        )
    lines += [
        "",
        "Continuous batching: a request joins the running batch at the next step (its prompt prefilled, its KV "
        "rows merged into the running cache) and leaves at its own end, so a slot never idles while a batch waits "
        "for its longest answer, and a newcomer never waits for a batch to finish; the static scheduler collects "
        "what has arrived (`batch_wait_timeout_s`) and runs it to the longest `max_tokens` in it, which is why "
        "mixed lengths cost it most. A request whose media are small and local is decoded in the model replica "
        "(one Serve hop fewer); otherwise the media stage's response goes straight into the model call (Serve "
        "resolves a `DeploymentResponse` argument in the model replica), so decoded frames cross processes once.",
        "",
        f"![Serve throughput and latency]({PLOT.name})",
        "",
        f"Raw numbers: `{meta['raw_path']}`.",
        MARK_END,
    ]
    return "\n".join(lines) + "\n"


def overhead_with_default_ray(opts: argparse.Namespace) -> dict[str, Any]:
    """The overhead rounds on a cluster with Ray Serve's default settings, in a child process (Ray's
    settings are read once per process), before this run's cluster starts: nothing else runs meanwhile."""
    import subprocess

    with tempfile.TemporaryDirectory(prefix="vlmm-bench-default-", dir="/tmp") as tmp:
        out = Path(tmp) / "overhead.json"
        cmd = [sys.executable, __file__, "--ray-mode", "default", "--overhead-only", "--pairs", str(opts.pairs),
               "--overhead-tokens", str(opts.overhead_tokens), "--no-write", "--save-raw", str(out)]  # fmt: skip
        subprocess.run(cmd, check=True, timeout=900)
        return json.loads(out.read_text())["overhead"]


def write_docs(section: str) -> Path:
    return write_section(DOCS / "benchmarks.md", MARK_BEGIN, MARK_END, section)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per row")
    parser.add_argument("--max-tokens", type=int, default=128, help="new tokens per request, generate-heavy load")
    parser.add_argument("--stream-rounds", type=int, default=4, help="rounds of streamed requests per concurrency")
    parser.add_argument("--decode-tokens", type=int, default=16, help="new tokens per request, decode-heavy load")
    parser.add_argument("--overhead-tokens", type=int, default=8, help="new tokens in the overhead rounds")
    parser.add_argument("--pairs", type=int, default=40, help="rounds of the sequential overhead measurement")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated subset of the workloads")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/ alone")
    parser.add_argument("--from-json", type=Path, help="re-render docs and plot from a results file; no measuring")
    parser.add_argument("--concurrencies", default=",".join(map(str, CONCURRENCIES)), help="comma-separated subset")
    parser.add_argument("--object-store-mb", type=int, default=256, help="Ray's object store (the 2-core recipe: 256)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the work dir (Ray's logs: per-hop times)")
    parser.add_argument("--save-raw", type=Path, help="also write the raw results here (any --workloads subset)")
    parser.add_argument(
        "--ray-mode",
        choices=sorted(RAY_MODES),
        default="throughput",
        help="Ray Serve's settings for the cluster (throughput: RAY_SERVE_THROUGHPUT_OPTIMIZED=1)",
    )
    parser.add_argument("--overhead-only", action="store_true", help="only the overhead rounds (use --save-raw)")
    parser.add_argument(
        "--no-media-resize",
        action="store_true",
        help="media_resize: false (frames leave the MediaDecoder at their decoded size), for side runs",
    )
    parser.add_argument(
        "--no-default-overhead",
        action="store_true",
        help="skip the overhead rounds on a second cluster with Ray's default settings",
    )
    opts = parser.parse_args(argv)
    if opts.from_json:
        data = json.loads(opts.from_json.read_text())
        runs = [Run(**r) for r in data["runs"]]
        streams = [StreamRun(**s) for s in data["streams"]]
        plot(runs, data["meta"], PLOT)
        section = markdown(runs, streams, data["overhead"], data["meta"], data.get("overhead_default_ray"))
        print(f"wrote {write_docs(section)}, {PLOT}")
        return 0

    default_overhead = None
    if opts.ray_mode != "default" and not (opts.overhead_only or opts.no_default_overhead):
        default_overhead = overhead_with_default_ray(opts)
    os.environ.update(RAY_MODES[opts.ray_mode])  # before Ray starts: its processes read them at import
    for key, value in {
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "disabled",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }.items():
        os.environ.setdefault(key, value)
    work = Path(tempfile.mkdtemp(prefix="vlmm-bench-", dir="/tmp"))  # short: Ray's socket paths are limited
    os.environ["RAY_TMPDIR"] = str(work)
    ckpt, clips = build_inputs(work)
    small_bytes, large_bytes = clips["generate-heavy"].stat().st_size, clips["decode-heavy"].stat().st_size
    workloads = {
        "generate-heavy": {"clip": "64-px 16-frame 8-fps clip", "max_tokens": opts.max_tokens,
                           "clip_bytes": small_bytes},
        "mixed": {"clip": "64-px 16-frame 8-fps clip", "max_tokens": "16-256", "clip_bytes": small_bytes},
        "decode-heavy": {"clip": "480-px 240-frame 30-fps clip", "max_tokens": opts.decode_tokens,
                         "clip_bytes": large_bytes},
    }  # fmt: skip
    chosen = [w for w in opts.workloads.split(",") if w]
    concurrencies = tuple(int(c) for c in opts.concurrencies.split(",") if c)
    unknown = sorted(set(chosen) - set(WORKLOADS))
    if unknown:
        parser.error(f"--workloads: unknown {unknown}; choose from {list(WORKLOADS)}")

    import ray
    from ray import serve

    from videolmm.serve.app import build_app
    from videolmm.serve.config import ServeArgs

    engine, request = make_engine_request(ckpt, clips["generate-heavy"], opts.overhead_tokens)
    runs: list[Run] = []
    store = opts.object_store_mb << 20
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=store, log_to_driver=False)
    try:
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port, "request_timeout_s": 120})
        for mode, (batch, decode_in, scheduler) in MODES.items():
            raw = app_args(ckpt, work / "media", batch, decode_in, scheduler, media_resize=not opts.no_media_resize)
            app = build_app(ServeArgs.model_validate(raw))
            # serve.run waits without a deadline (e.g. for a replica that cannot be scheduled): bound it
            deploy = threading.Thread(target=serve.run, args=(app,), kwargs={"name": mode, "route_prefix": f"/{mode}"},
                                      daemon=True)  # fmt: skip
            deploy.start()
            deploy.join(timeout=300)
            if deploy.is_alive():
                raise TimeoutError(f"app {mode!r} did not start in 300 s: {serve.status()}")
        urls = {mode: f"http://127.0.0.1:{port}/{mode}/v1/chat/completions" for mode in MODES}
        paths = dict(urls)
        if opts.ray_mode == "throughput":  # direct ingress: also each ingress replica's own port
            paths.update({f"{mode} direct": url for mode, url in direct_urls(list(MODES)).items()})
        small = payload(clips["generate-heavy"], opts.overhead_tokens)
        overhead = paired_overhead(engine, request, paths, small, opts.pairs)
        print({k: percentile(v, 50) for k, v in overhead["overhead_ms"].items()}, flush=True)
        if opts.overhead_only:  # no load or stream rows
            chosen, opts.stream_rounds = [], 0
        import httpx

        # streaming next to the overhead rounds, before the load rows: latency at concurrency 1 on a cluster
        # in the same state as the overhead rounds, not right after a saturating row
        body48 = payload(clips["generate-heavy"], STREAM_TOKENS)
        expect = httpx.post(urls["continuous"], json=body48, timeout=120).json()["choices"][0]["message"]["content"]
        streams: list[StreamRun] = []
        for concurrency in (1, CONCURRENCIES[-1]) if opts.stream_rounds > 0 else ():  # 0: no streaming rows
            for mode in [m for m in ("continuous", "static", "continuous direct") if m in paths]:
                rounds = opts.stream_rounds if concurrency == 1 else max(1, opts.stream_rounds // 2)
                srun = stream_run(paths[mode], body48, mode, concurrency, rounds, expect)
                print(srun, flush=True)
                streams.append(srun)
        clip_of = {"generate-heavy": clips["generate-heavy"], "mixed": clips["generate-heavy"],
                   "decode-heavy": clips["decode-heavy"]}  # fmt: skip
        for workload in chosen:
            tokens = MIXED_TOKENS if workload == "mixed" else (workloads[workload]["max_tokens"],)
            bodies = [payload(clip_of[workload], n) for n in tokens]
            for concurrency in concurrencies:
                for mode in MODES:
                    run = load_run(urls[mode], bodies, workload, mode, concurrency, opts.seconds)
                    print(run, flush=True)
                    runs.append(run)
    finally:
        serve.shutdown()
        ray.shutdown()
    if opts.overhead_only:
        if opts.save_raw:
            opts.save_raw.write_text(json.dumps({"overhead": overhead, "ray_mode": opts.ray_mode}) + "\n")
        shutil.rmtree(work, ignore_errors=True)
        return 0
    runs.sort(key=lambda r: (WORKLOADS.index(r.workload), list(MODES).index(r.mode), r.concurrency))

    meta = {
        "date": dt.date.today().isoformat(),
        "machine": f"{os.cpu_count()} CPU cores, {platform.machine()}, Python {platform.python_version()}, "
        f"ray {ray.__version__}",
        "workloads": workloads,
        "max_tokens": opts.max_tokens,
        "overhead_tokens": opts.overhead_tokens,
        "seconds": opts.seconds,
        "pairs": opts.pairs,
        "raw_path": "benchmarks/results/serve_bench.json",
        "ray_mode": opts.ray_mode,
        "media_resize": not opts.no_media_resize,
        "ray_env": RAY_MODES[opts.ray_mode],
    }
    full = set(chosen) == set(WORKLOADS) and concurrencies == CONCURRENCIES and opts.object_store_mb == 256
    full = full and opts.stream_rounds > 0
    section = markdown(runs, streams, overhead, meta, default_overhead) if full else ""
    data = {"meta": meta, "runs": [asdict(r) for r in runs], "streams": [asdict(s) for s in streams],
            "overhead": overhead, "overhead_default_ray": default_overhead}  # fmt: skip
    if opts.save_raw:
        opts.save_raw.write_text(json.dumps(data, indent=1) + "\n")
    print(section or "\n".join(str(r) for r in runs))
    if not opts.no_write:
        if not section:
            parser.error("writing the results needs the full default run; pass --no-write with a subset")
        raw = REPO / meta["raw_path"]
        raw.parent.mkdir(parents=True, exist_ok=True)
        raw.write_text(json.dumps(data, indent=1) + "\n")
        plot(runs, meta, PLOT)
        print(f"wrote {write_docs(section)}, {PLOT}, {raw}")
    if opts.keep_logs:
        print(f"Ray logs kept under {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
