"""Deployment blocks pass every Ray Serve option through, checked by Ray's own schema (no Ray cluster needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from videolmm.serve.config import DeploymentOptions, ServeArgs
from videolmm.serve.ray_options import deployment_options


def _args(tiny: Path, **deployment: Any) -> ServeArgs:
    return ServeArgs.model_validate(
        {"models": [{"model_id": "m", "pretrained": str(tiny), "device": "cpu"}], "model_deployment": deployment}
    )


def test_options_videolmm_does_not_type_reach_ray_unchanged(tiny_llava_next_video: Path) -> None:
    args = _args(
        tiny_llava_next_video,
        health_check_period_s=7,
        graceful_shutdown_timeout_s=12,
        max_replicas_per_node=1,
        user_config={"note": "x"},
        autoscaling_config={"max_replicas": 3, "metrics_interval_s": 2, "upscale_smoothing_factor": 0.5},
        ray_actor_options={"num_cpus": 0.5, "runtime_env": {"env_vars": {"A": "1"}}, "accelerator_type": "L4"},
    )
    opts = deployment_options("model_deployment", args.model_deployment)
    assert (opts["health_check_period_s"], opts["graceful_shutdown_timeout_s"]) == (7, 12)
    assert opts["max_replicas_per_node"] == 1 and opts["user_config"] == {"note": "x"}
    auto = opts["autoscaling_config"]
    assert (auto["max_replicas"], auto["metrics_interval_s"], auto["upscale_smoothing_factor"]) == (3, 2, 0.5)
    assert auto["min_replicas"] == 1  # videolmm's default for the block still applies
    actor = opts["ray_actor_options"]
    assert actor == {
        "num_cpus": 0.5,
        "num_gpus": 0.0,
        "runtime_env": {"env_vars": {"A": "1"}},
        "accelerator_type": "L4",
    }
    assert opts["backpressure_config"] == {"status_code": 503, "retry_after_s": 1.0}  # from retry_after_s


@pytest.mark.parametrize(
    ("block", "named"),
    [
        ({"max_ongoing_request": 4}, "max_ongoing_request"),  # a typo Ray's schema would silently drop
        ({"ray_actor_options": {"num_cpu": 1}}, "ray_actor_options.num_cpu"),
        ({"autoscaling_config": {"max_replicas": 2, "target_ongoing": 3}}, "autoscaling_config.target_ongoing"),
    ],
)
def test_an_unknown_ray_option_is_refused_naming_it(
    tiny_llava_next_video: Path, block: dict[str, Any], named: str
) -> None:
    from videolmm.serve.app import build_app

    args = _args(tiny_llava_next_video, **block)
    with pytest.raises(ValueError, match=rf"model_deployment: unknown Ray Serve option\(s\) {named} \(Ray 2\."):
        build_app(args)


def test_a_value_ray_refuses_is_refused_naming_the_block() -> None:
    options = DeploymentOptions(num_replicas=1, health_check_period_s="often")
    with pytest.raises(
        ValueError, match=r"(?s)ingress_deployment: Ray Serve refuses the deployment options: .*health_check"
    ):
        deployment_options("ingress_deployment", options)


def test_the_shipped_configs_pass_ray_s_schema() -> None:
    from videolmm.serve.config import load_serve_config

    root = Path(__file__).resolve().parents[2] / "serve_configs"
    for name in ("tiny.yaml", "video.yaml"):
        args = ServeArgs.model_validate(load_serve_config(root / name))
        for key in ("ingress_deployment", "media_deployment", "model_deployment"):
            assert deployment_options(key, getattr(args, key))["max_ongoing_requests"] >= 1
