"""An lmms-eval run killed mid-run resumes with ``--use_cache`` without recomputing finished samples.

The real CLI on ``videolmm_synthetic`` (24 samples, batches of 4) with the trained tiny checkpoint:

1. a reference run, uninterrupted, without a cache;
2. a run with ``--use_cache DIR`` and ``LMMS_CACHE_RUN_ID`` set, slowed by a test plugin (a real
   entry point wrapping ``generate_batch`` with a sleep) and SIGKILLed once the response cache holds
   two batches (polled, bounded);
3. the same command again: it answers the finished samples from the cache and generates only the
   rest (the model's own sample count), leaves the finished rows untouched (their ``created_at``),
   and its results equal the reference run's, sample by sample.

Granularity: ``videolmm.eval.checkpoint`` stores each sample when its batch ends; lmms-eval alone
stores nothing until every request of the run is generated.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(600)
VENV_BIN = Path(sys.executable).parent
LIMIT, BATCH = 24, 4
KILL_AFTER = 2 * BATCH  # rows in the response cache when the first run is killed
RUN_ID = "resume-test"

SLOW_PLUGIN = """
import os
import time

from videolmm.plugin import hookimpl


@hookimpl(wrapper=True)
def generate_batch(engine, batch):
    time.sleep(float(os.environ.get("RESUME_TEST_BATCH_SLEEP_S", "0")))
    return (yield)
"""


def _plugin_site(root: Path) -> Path:
    site = root / "site"
    site.mkdir(parents=True)
    (site / "slow_batches.py").write_text(SLOW_PLUGIN)
    dist = site / "slow_batches-0.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: slow-batches\nVersion: 0.0\n")
    (dist / "entry_points.txt").write_text("[videolmm]\nslow = slow_batches\n")
    return site


def _command(ckpt: Path, out: Path, cache: Path | None) -> list[str]:
    cmd = [str(VENV_BIN / "lmms-eval"), "--model", "videolmm", "--model_args", f"pretrained={ckpt},device=cpu",
           "--tasks", "videolmm_synthetic", "--limit", str(LIMIT), "--batch_size", str(BATCH),
           "--output_path", str(out), "--log_samples"]  # fmt: skip
    return cmd + (["--use_cache", str(cache)] if cache is not None else [])


def _env(site: Path, stats: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
        "VIDEOLMM_EVAL_STATS": str(stats),
        **extra,
    }


def _results(out: Path, proc: subprocess.CompletedProcess[str]) -> tuple[dict, dict[int, str]]:
    results = sorted(out.rglob("*_results.json"))
    assert proc.returncode == 0 and results, f"lmms-eval failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    metrics = json.loads(results[-1].read_text())["results"]["videolmm_synthetic"]
    lines = next(out.rglob("*_samples_videolmm_synthetic.jsonl")).read_text().splitlines()
    samples = [json.loads(line) for line in lines if line.strip()]
    assert len(samples) == LIMIT
    return {k: v for k, v in metrics.items() if k != "alias"}, {s["doc_id"]: str(s["filtered_resps"]) for s in samples}


def _rows(db: Path) -> dict[tuple[int, int], float]:
    """(doc_id, idx) → created_at of every generate_until response in a cache shard."""
    if not db.exists():
        return {}
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        try:
            rows = conn.execute(
                "SELECT doc_id, idx, created_at FROM responses WHERE request_type = 'generate_until'"
            ).fetchall()
        except sqlite3.OperationalError:  # the table is not created yet
            return {}
    return {(int(d), int(i)): float(t) for d, i, t in rows}


def test_killed_eval_resumes_from_the_response_cache(
    trained_llava_next_video: Path, cache_root: Path, tmp_path: Path, reliability
) -> None:
    site = _plugin_site(tmp_path)
    cache = tmp_path / "response-cache"
    shard = cache / "runs" / RUN_ID / "rank_0.db"

    # 1. the reference: uninterrupted, no cache
    ref = subprocess.run(
        _command(trained_llava_next_video, tmp_path / "ref", None),
        env=_env(site, tmp_path / "ref-stats.json"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    ref_metrics, ref_samples = _results(tmp_path / "ref", ref)

    # 2. a slowed run with the cache, killed once two batches are stored
    env = _env(site, tmp_path / "killed-stats.json", LMMS_CACHE_RUN_ID=RUN_ID, RESUME_TEST_BATCH_SLEEP_S="1.5")
    log = (tmp_path / "killed.log").open("w")
    proc = subprocess.Popen(
        _command(trained_llava_next_video, tmp_path / "killed", cache),
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while len(_rows(shard)) < KILL_AFTER and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert proc.poll() is None, f"the run ended before the kill:\n{(tmp_path / 'killed.log').read_text()[-3000:]}"
        assert len(_rows(shard)) >= KILL_AFTER, "no per-batch rows in the response cache in time"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        log.close()
    assert proc.returncode == -signal.SIGKILL
    assert not list((tmp_path / "killed").rglob("*_results.json"))  # it really died mid-run
    finished = _rows(shard)
    assert KILL_AFTER <= len(finished) < LIMIT, len(finished)

    # 3. the same command again: finished samples come from the cache, the rest is generated
    stats = tmp_path / "resumed-stats.json"
    resumed = subprocess.run(
        _command(trained_llava_next_video, tmp_path / "resumed", cache),
        env=_env(site, stats, LMMS_CACHE_RUN_ID=RUN_ID),
        capture_output=True,
        text=True,
        timeout=300,
    )
    metrics, samples = _results(tmp_path / "resumed", resumed)
    generated = json.loads(stats.read_text())["samples"]
    assert generated == LIMIT - len(finished), (generated, len(finished))  # only the unfinished ones
    after = _rows(shard)
    assert {k: after[k] for k in finished} == finished  # the finished rows were not rewritten
    assert len(after) == LIMIT
    assert metrics == ref_metrics
    assert samples == ref_samples
    hits = next(
        (line for line in (resumed.stdout + resumed.stderr).splitlines() if "cache hits" in line), "no hit line"
    )
    hits = hits.split("ResponseCache:")[-1].split("(")[0].strip()  # "8/24 cache hits"
    scores = {k.split(",")[0]: v for k, v in metrics.items() if "stderr" not in k}
    reliability(
        "Load and faults",
        f"lmms-eval killed (SIGKILL) mid-run, {LIMIT} samples in batches of {BATCH}, re-run with --use_cache",
        "lmms-eval",
        "finished samples answered from the cache, not recomputed; results equal an uninterrupted run",
        f"{len(finished)} stored before the kill; re-run: lmms-eval {hits}, "
        f"generated {generated} (= {LIMIT} - {len(finished)}), finished rows untouched; {scores} and all {LIMIT} "
        "samples equal the reference run's",
    )
