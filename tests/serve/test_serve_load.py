"""A bounded load run (60 s at concurrency 32 over loopback, issue 8): every request is counted and
answered 200 or a by-design 503, nothing is lost or hangs; then the Ray Serve metrics show the
traffic, queueing and batching.

The app is the session app: ``serve_configs/tiny.yaml`` with the test overrides of ``conftest.py``
(the session's checkpoints, small queues so that backpressure is reached, one model replica)."""

from __future__ import annotations

import asyncio
import re
import threading
import time
import urllib.request
from collections import Counter

import pytest
from serve_helpers import LNV, VL, ServeApp, video_message

DURATION_S = 60.0
CONCURRENCY = 32
REQUEST_TIMEOUT_S = 60.0  # per request; a request that takes longer counts as hung

pytestmark = pytest.mark.timeout(300)


def _worker(app: ServeApp, index: int, deadline: float, outcomes: list[tuple[int, str]], sent: list[int]) -> None:
    import openai

    client = app.client(timeout=REQUEST_TIMEOUT_S)
    model = VL if index % 4 == 0 else LNV
    messages = video_message(app.file_url("red_right.mp4" if index % 2 else "blue up.mp4"))
    while time.monotonic() < deadline:
        sent[index] += 1
        try:
            client.chat.completions.create(model=model, messages=messages, max_tokens=8)
            outcomes.append((200, ""))
        except openai.APIStatusError as exc:
            retry_after = exc.response.headers.get("retry-after", "")
            outcomes.append((exc.status_code, f"{exc.code}|{retry_after}"))
            time.sleep(0.05)
        except Exception as exc:  # a timeout or a dropped connection: the outcome the test forbids
            outcomes.append((-1, repr(exc)))


def test_bounded_load_gets_200_or_503(serve_app: ServeApp, reliability) -> None:
    outcomes: list[tuple[int, str]] = []
    sent = [0] * CONCURRENCY
    start = time.monotonic()
    deadline = start + DURATION_S
    threads = [
        threading.Thread(target=_worker, args=(serve_app, i, deadline, outcomes, sent), daemon=True)
        for i in range(CONCURRENCY)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(0.0, deadline + REQUEST_TIMEOUT_S + 10 - time.monotonic()))
    elapsed = time.monotonic() - start
    assert not any(t.is_alive() for t in threads), "a request hung past its timeout"
    statuses = Counter(status for status, _ in outcomes)
    assert sum(sent) == len(outcomes), f"{sum(sent)} requests sent, {len(outcomes)} answered"  # none lost
    assert set(statuses) <= {200, 503}, [o for o in outcomes if o[0] not in (200, 503)][:5]
    assert statuses[200] >= CONCURRENCY, statuses
    refused = [detail for status, detail in outcomes if status == 503]
    assert all(d.startswith("overloaded|") and int(d.split("|")[1]) >= 1 for d in refused), refused[:5]
    reliability(
        "Load and faults",
        f"{DURATION_S:g} s at concurrency {CONCURRENCY} (tiny.yaml + test overrides, 2 CPUs)",
        "API",
        "every request counted: 200 or a by-design 503 with Retry-After; none lost or hung",
        f"{sum(sent)} sent in {elapsed:.0f} s, {len(outcomes)} answered: {statuses[200]}×200, {statuses[503]}×503, "
        f"{len(outcomes) - statuses[200] - statuses[503]} other/timeouts",
    )


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


def _total(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _bucket(text: str, name: str, le: float) -> float:
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf'{name}\{{.*le="([^"]+)".*\}} (\S+)$', line)
        if match and match.group(1) != "+Inf" and float(match.group(1)) == le:
            total += float(match.group(2))
    return total


async def _concurrent(app: ServeApp, n: int) -> list[int]:
    import httpx

    body = {"model": LNV, "messages": video_message(app.file_url("red_right.mp4")), "max_tokens": 32}
    headers = {"Authorization": f"Bearer {app.api_key}"}
    async with httpx.AsyncClient(base_url=app.base_url, headers=headers, timeout=REQUEST_TIMEOUT_S) as http:
        responses = await asyncio.gather(*(http.post("/v1/chat/completions", json=body) for _ in range(n)))
    return [r.status_code for r in responses]


def test_serve_metrics_show_requests_queueing_and_batches(serve_app: ServeApp) -> None:
    # concurrent requests of our own, so that this test holds on its own too
    assert 200 in asyncio.run(_concurrent(serve_app, 12))
    names = [
        "ray_videolmm_requests_total",
        "ray_videolmm_request_latency_s_count",
        "ray_videolmm_decode_latency_s_count",
        "ray_videolmm_frames_decoded_total",
        "ray_videolmm_queue_time_s_count",
        "ray_videolmm_batch_size_count",
        "ray_videolmm_generate_latency_s_count",
        "ray_videolmm_time_to_first_token_s_count",
        "ray_videolmm_inter_token_latency_s_count",
        "ray_videolmm_prompt_tokens_total",
        "ray_videolmm_completion_tokens_total",
    ]
    deadline = time.monotonic() + 45  # Ray's metrics agent exports every few seconds
    text = ""
    while time.monotonic() < deadline:
        text = _scrape(serve_app.metrics_port)
        if all(_total(text, n) > 0 for n in names):
            break
        time.sleep(2)
    missing = [n for n in names if _total(text, n) <= 0]
    assert not missing, missing
    assert _total(text, "ray_videolmm_requests_total", model=LNV, status="200") > 0
    assert re.search(r'ray_videolmm_requests_total\{[^}]*deployment="OpenAIIngress"', text)
    # under concurrent load the model replica ran batches of more than one request (the bucket le=1
    # holds single-request batches; Ray's exported _sum is approximated from bucket midpoints)
    singles = _bucket(text, "ray_videolmm_batch_size_bucket", 1.0)
    assert _total(text, "ray_videolmm_batch_size_count") > singles, "no batch ever held two requests"
    assert _total(text, "ray_videolmm_frames_decoded_total", model=LNV) >= 32
