"""One Ray cluster and one Serve app for every serve test of the session.

The app is ``serve_configs/tiny.yaml`` built through ``videolmm.serve:build_app``, with the
session's tiny checkpoints, a media root of test files, an API key, remote fetching on for a few
hosts (to show loopback and metadata addresses are refused), and small limits and queues so that
every limit and the 503 backpressure can be reached with tiny inputs. Ray runs with the 2-core
recipe (``environment.md``): 2 CPUs, no dashboard, a 256 MB object store, fractional CPUs per
replica, usage stats and token auth off, Serve's HTTP on 127.0.0.1 on a free port, and its own
temp dir (``RAY_TMPDIR``) so that its logs are ours to read.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from serve_helpers import (
    API_KEY,
    BROKEN,
    DIRECT_INGRESS_PORTS,
    HOUND,
    INLINE_MAX_BYTES,
    LNV,
    LNV34B,
    NAT64_HOSTS,
    QWEN2,
    QWEN2_FRAMES,
    RAY_MODES,
    REDIRECT_HOST,
    STARTUP_TIMEOUT_S,
    STATIC,
    TEST_LIMITS,
    TINY_YAML,
    TRAINED,
    VL,
    ServeApp,
    video_message,
)


def _direct_ingress_url(deadline: float) -> str:
    """The ingress replica's own HTTP server (direct ingress): Serve allocates its port from
    :data:`DIRECT_INGRESS_PORTS` and publishes it to no driver, so ask each open port for ``/health``."""
    while True:
        for port in DIRECT_INGRESS_PORTS:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) != 0:
                    continue
            url = f"http://127.0.0.1:{port}"
            try:
                if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                    return url
            except httpx.HTTPError:
                continue
        if time.monotonic() > deadline:
            raise TimeoutError(f"no direct-ingress port in {DIRECT_INGRESS_PORTS} answers /health")
        time.sleep(0.5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def serve_media(tmp_path_factory: pytest.TempPathFactory, clips: dict[str, Path]) -> Path:
    """The app's media root: clips, an image, and files that cross each limit or escape the root."""
    from PIL import Image

    from videolmm.toy.synthetic import moving_square_frames, write_moving_square_video

    root = tmp_path_factory.mktemp("serve-media")
    shutil.copy(clips["red_right"], root / "red_right.mp4")
    shutil.copy(clips["blue_up"], root / "blue up.mp4")  # a space: percent-encoded in the URL
    shutil.copy(clips["green_left_long"], root / "long.mp4")  # 40 frames at 8 fps: 5 s > 4 s
    write_moving_square_video(root / "wide.mp4", colour="red", direction="up", seed=4, size=160)  # 160² px
    # 128² px, ~10 KB: over the app's inline_decode_max_bytes, so it is decoded in the MediaDecoder
    write_moving_square_video(root / "sharp.mp4", colour="green", direction="down", seed=6, size=128)
    frame = next(moving_square_frames(colour="yellow", direction="left", seed=5, size=48))
    Image.fromarray(frame).save(root / "square.png")
    (root / "big.mp4").write_bytes(os.urandom(300 << 10))  # over max_video_bytes, refused before decoding
    (root / "notes.txt").write_text("not a video")
    (root / "sub").mkdir()
    (root / "sub" / "inside.mp4").symlink_to(root / "red_right.mp4")  # a symlink that stays inside
    (root / "escape.mp4").symlink_to(clips["green_left_long"])  # a symlink that leaves the root
    return root


def _test_args(tiny_lnv: Path, tiny_vl: Path, media_root: Path, cache_root: Path) -> dict[str, Any]:
    """tiny.yaml's args with the session's checkpoints, media roots, key, limits and queues."""
    from videolmm.serve.config import load_serve_config

    args = load_serve_config(TINY_YAML)
    paths = {LNV: tiny_lnv, VL: tiny_vl}
    args["models"] = [{**m, "pretrained": str(paths[m["model_id"]])} for m in args["models"]]
    args["limits"] = {**args.get("limits", {}), **TEST_LIMITS}
    args["security"] = {
        "media_roots": [str(media_root), str(cache_root)],  # cache_root: the demo task's clips
        "api_key": API_KEY,
        "remote": {
            "enabled": True,
            # listed so that the refusals come from the resolved-address check, not the allow-list
            "allowed_hosts": [
                "localhost",
                "127.0.0.1",
                "::1",
                "10.0.0.1",
                "169.254.169.254",
                "unresolvable.invalid",
                REDIRECT_HOST,
                *NAT64_HOSTS,
            ],
            "allowed_schemes": ["http", "https"],
            "timeout_s": 3,
            # the one exempt address: test_serve_attacks' redirecting server (127.0.0.1 stays refused)
            "allowed_networks": [f"{REDIRECT_HOST}/32"],
            # the local test servers listen on ephemeral ports (production default: 443 only)
            "allowed_ports": [80, 443, "1024-65535"],
        },
    }
    # Small queues make backpressure reachable; one model replica keeps 2 shared cores usable; 8 slots
    # (tiny.yaml's 16 would not fit the 8 ongoing requests a replica takes here).
    args["batching"] = {**args.get("batching", {}), "max_batch_size": 8}
    args["model_deployment"] = _merge(
        args["model_deployment"],
        {
            "autoscaling_config": {"min_replicas": 1, "max_replicas": 1, "target_ongoing_requests": 4},
            "max_ongoing_requests": 8,
            "max_queued_requests": 4,
            # Ray Serve options videolmm does not type: passed through whole (test_serve_ray_options)
            "health_check_period_s": 5,
            "graceful_shutdown_timeout_s": 10,
        },
    )
    args["media_deployment"] = _merge(args["media_deployment"], {"max_ongoing_requests": 4, "max_queued_requests": 8})
    # both decode routes run: the 64-px clips (~5 KB) are decoded in the model replica, sharp.mp4 (~10 KB) and
    # anything larger in the MediaDecoder (test_serve_routing)
    args["inline_decode_max_bytes"] = INLINE_MAX_BYTES
    return args


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _weightless_copy(checkpoint: Path, tmp: Path) -> Path:
    """A checkpoint directory with ``checkpoint``'s config files but no weights."""
    out = tmp / "weightless-ckpt"
    out.mkdir()
    for path in checkpoint.iterdir():
        if path.is_file() and path.suffix not in (".safetensors", ".bin", ".pt"):
            shutil.copy(path, out / path.name)
    return out


def _wait_healthy(base_url: str, deadline: float) -> None:
    last = "no answer yet"
    while True:
        try:
            status = httpx.get(f"{base_url}/health", timeout=2).status_code
            if status == 200:
                return
            last = f"HTTP {status}"
        except httpx.HTTPError as exc:  # not listening yet: poll again until the deadline
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() > deadline:
            raise TimeoutError(f"{base_url}/health did not answer 200 in time (last: {last})")
        time.sleep(0.5)


@pytest.fixture(scope="session")
def serve_app(
    tiny_llava_next_video: Path,
    tiny_video_llava: Path,
    trained_llava_next_video: Path,
    tiny_llava_video_qwen2: Path,
    tiny_llava_hound: Path,
    tiny_llava_next_video_34b: Path,
    serve_media: Path,
    cache_root: Path,
) -> Iterator[ServeApp]:
    """Ray + Serve with the tiny app, started once; shut down (nothing left running) at the end.

    Besides tiny.yaml's two random tiny models, the app serves the *trained* tiny checkpoint
    (issue 3) as ``TRAINED``: the parity tests use it, so parity is checked on a model that
    really watches (non-zero scores), not only on random weights; tiny llava_video_qwen2 and
    llava_hound checkpoints (``QWEN2``, ``HOUND``), chosen by name like any other model; and
    ``STATIC``, tiny.yaml's llava_next_video checkpoint on the static scheduler."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ["RAY_AUTH_MODE"] = "disabled"
    # Serve kills a proxy not ready within 5 s; on a starved machine (Ray's workers run at nice 15) the
    # session's proxy took longer and serve.start() failed with ActorDiedError: allow a minute
    os.environ.setdefault("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", "60")
    ray_mode = os.environ.get("VIDEOLMM_TEST_RAY_MODE", "default")
    if ray_mode not in RAY_MODES:
        raise ValueError(f"VIDEOLMM_TEST_RAY_MODE={ray_mode!r}: choose one of {sorted(RAY_MODES)}")
    saved_env = {key: os.environ.get(key) for key in RAY_MODES[ray_mode]}
    os.environ.update(RAY_MODES[ray_mode])  # before ray.init: Ray's processes read them at start-up
    ray_tmp = Path(tempfile.mkdtemp(prefix="vlmm-ray-", dir="/tmp"))  # short: Ray's socket paths are limited
    previous_tmp = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = str(ray_tmp)

    import ray
    import yaml
    from ray import serve

    from videolmm.serve.app import build_app
    from videolmm.serve.config import ServeArgs

    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    serve_doc = yaml.safe_load(TINY_YAML.read_text())
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=256 << 20, log_to_driver=False)
    try:
        port = _free_port()
        serve.start(
            http_options={**serve_doc["http_options"], "host": "127.0.0.1", "port": port},
            logging_config=serve_doc.get("logging_config"),
        )
        raw = _test_args(tiny_llava_next_video, tiny_video_llava, serve_media, cache_root)
        raw["models"] = [
            *raw["models"],
            {"model_id": TRAINED, "pretrained": str(trained_llava_next_video), "family": "llava_next_video",
             "device": "cpu"},
            {"model_id": QWEN2, "pretrained": str(tiny_llava_video_qwen2), "family": "llava_video_qwen2",
             "device": "cpu", "num_frames": QWEN2_FRAMES},  # the family's 64 is over the test limit of 32
            {"model_id": HOUND, "pretrained": str(tiny_llava_hound), "family": "llava_hound", "device": "cpu",
             "frame_cache": str(ray_tmp / "frame-cache")},  # cache hits in the metrics (test_serve_dashboard)
            {"model_id": STATIC, "pretrained": str(tiny_llava_next_video), "family": "llava_next_video",
             "device": "cpu", "scheduler": "static"},  # the @serve.batch path beside the continuous one
            {"model_id": BROKEN, "pretrained": str(_weightless_copy(tiny_llava_next_video, ray_tmp)),
             "family": "llava_next_video", "device": "cpu"},  # fails to load in the replica: 503 for it alone
            {"model_id": LNV34B, "pretrained": str(tiny_llava_next_video_34b), "device": "cpu"},  # family detected
        ]  # fmt: skip
        raw["max_models_per_replica"] = len(raw["models"])
        args = ServeArgs.model_validate(raw)
        # serve.run waits without a deadline (e.g. for a replica that cannot be scheduled): bound it
        deploy = threading.Thread(
            target=serve.run, args=(build_app(args),), kwargs={"name": "videolmm", "route_prefix": "/"}, daemon=True
        )
        deploy.start()
        deploy.join(timeout=max(1.0, deadline - time.monotonic()))
        if deploy.is_alive():
            raise TimeoutError(f"the serve app did not start in {STARTUP_TIMEOUT_S} s: {serve.status()}")
        app = ServeApp(
            base_url=f"http://127.0.0.1:{port}",
            api_key=API_KEY,
            media_root=serve_media,
            args=args,
            ray_tmp=ray_tmp,
            metrics_port=int(ray.nodes()[0]["MetricsExportPort"]),
            ray_mode=ray_mode,
        )
        _wait_healthy(app.base_url, deadline)
        if ray_mode == "throughput":
            app = dataclasses.replace(app, direct_url=_direct_ingress_url(deadline))
        with app.http() as http:  # load both engines once, so tests measure requests, not loading
            for model in (LNV, VL):
                body = {"model": model, "messages": video_message(app.file_url("red_right.mp4")), "max_tokens": 2}
                response = http.post("/v1/chat/completions", json=body, timeout=STARTUP_TIMEOUT_S)
                assert response.status_code == 200, response.text
        yield app
    finally:
        serve.shutdown()
        ray.shutdown()
        if previous_tmp is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = previous_tmp
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if not os.environ.get("VIDEOLMM_KEEP_RAY_TMP"):
            shutil.rmtree(ray_tmp, ignore_errors=True)
