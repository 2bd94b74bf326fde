"""The Grafana dashboard shipped with videolmm (``videolmm config grafana``) plots only metrics the app records.

Every metric a panel's PromQL names is checked twice: against the names ``videolmm/serve/metrics.py``
declares (or Ray Serve's own), and live — after real requests to the session app, each name must
appear in the node's Prometheus export.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from importlib.resources import files
from pathlib import Path

from serve_helpers import HOUND, ServeApp, leave_mid_stream, video_message

DASHBOARD = files("videolmm").joinpath("serve", "configs", "grafana_dashboard.json")
METRICS_PY = Path(__file__).resolve().parents[2] / "videolmm" / "serve" / "metrics.py"
#: Ray Serve's own metrics the dashboard uses (replica counts).
RAY_SERVE_METRICS = {"ray_serve_deployment_replica_healthy"}
#: What the dashboard must cover (issue #17): a panel title fragment → a metric it plots.
REQUIRED = {
    "Requests": "ray_videolmm_requests_total",
    "Errors": "ray_videolmm_requests_total",
    "latency": "ray_videolmm_request_latency_s",
    "first token": "ray_videolmm_time_to_first_token_s",
    "Tokens": "ray_videolmm_completion_tokens_total",
    "Batch": "ray_videolmm_batch_size",
    "Decode": "ray_videolmm_decode_latency_s",
    "Frame cache": "ray_videolmm_frame_cache_hits_total",
    "Replicas": "ray_serve_deployment_replica_healthy",
}


def _panel_metrics() -> dict[str, set[str]]:
    doc = json.loads(DASHBOARD.read_text())
    out: dict[str, set[str]] = {}
    for panel in doc["panels"]:
        names = set()
        for target in panel["targets"]:
            for name in re.findall(r"\b(ray_[a-z0-9_]+)", target["expr"]):
                names.add(re.sub(r"_(bucket|sum|count)$", "", name))
        out[panel["title"]] = names
    return out


def _declared() -> set[str]:
    source = METRICS_PY.read_text()
    return {"ray_" + n for n in re.findall(r'_(?:counter|histogram|gauge)\(\s*"(videolmm_[a-z0-9_]+)"', source)}


def test_every_panel_plots_declared_metrics_and_the_issue_s_list_is_covered() -> None:
    panels = _panel_metrics()
    declared = _declared()
    assert len(declared) >= 12, declared  # the regex found metrics.py's declarations
    for title, names in panels.items():
        assert names, f"panel {title!r} plots no metric"
        unknown = names - declared - RAY_SERVE_METRICS
        assert not unknown, f"panel {title!r} plots metrics the app never records: {unknown}"
    for fragment, metric in REQUIRED.items():
        assert any(fragment.lower() in t.lower() and metric in n for t, n in panels.items()), (fragment, metric)


def test_every_dashboard_metric_is_exported_by_the_running_app(serve_app: ServeApp) -> None:
    client = serve_app.client()
    messages = video_message(serve_app.file_url("red_right.mp4"))
    for _ in range(2):  # the second one is a frame-cache hit (HOUND has a frame cache in the session app)
        client.chat.completions.create(model=HOUND, messages=messages, max_tokens=4, temperature=0)
    stream = client.chat.completions.create(model=HOUND, messages=messages, max_tokens=4, temperature=0, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    # a stream on the continuous scheduler, left after its first delta: slot gauges and a cancel
    leave_mid_stream(serve_app)
    wanted = set().union(*_panel_metrics().values())
    deadline, missing = time.monotonic() + 45, wanted  # Ray's metrics agent exports every few seconds
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{serve_app.metrics_port}/metrics", timeout=5) as response:
            text = response.read().decode()
        exported = {re.sub(r"_(bucket|sum|count)$", "", line.split("{")[0]) for line in text.splitlines()}
        missing = wanted - exported
        if not missing:
            break
        time.sleep(2)
    assert not missing, f"the dashboard plots metrics the app did not export: {sorted(missing)}"
