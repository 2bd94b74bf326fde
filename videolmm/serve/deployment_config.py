"""Deployment blocks of the Serve config (``ingress_deployment``, ``media_deployment``,
``model_deployment``): replicas, queues and resources, with videolmm's defaults per deployment.

The fields videolmm's own checks read are typed; every other Ray Serve deployment option passes
through (:mod:`videolmm.serve.ray_options` checks them against Ray's schema when the app is built).
Pure pydantic, like :mod:`videolmm.serve.config`, which re-exports these classes.
"""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _RayBlock(BaseModel):
    """A block of Ray Serve options: the fields videolmm's checks read are typed, any other key passes
    through to Ray unchanged and is checked against Ray's own schema when the app is built
    (:func:`videolmm.serve.ray_options.deployment_options`)."""

    model_config = ConfigDict(extra="allow", frozen=True)


class AutoscalingOptions(_RayBlock):
    """Ray Serve ``autoscaling_config``: bounds and target typed, the rest (``policy``, ``metrics_interval_s``,
    ``look_back_period_s``, smoothing factors, ...) passed through."""

    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=1, ge=1)
    initial_replicas: int | None = Field(default=None, ge=0)
    target_ongoing_requests: float = Field(default=2.0, gt=0)
    upscale_delay_s: float = Field(default=30.0, ge=0)
    downscale_delay_s: float = Field(default=600.0, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> "AutoscalingOptions":
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas={self.min_replicas} > max_replicas={self.max_replicas}")
        return self


class ActorOptions(_RayBlock):
    """Ray Serve ``ray_actor_options``: resources per replica (fractional CPUs allowed) typed;
    ``runtime_env``, ``accelerator_type``, ``label_selector``, ... passed through."""

    num_cpus: float = Field(default=1.0, ge=0)
    num_gpus: float = Field(default=0.0, ge=0)
    memory: int | None = Field(default=None, ge=0, description="Bytes of memory to reserve.")
    resources: dict[str, float] = Field(default_factory=dict, description="Custom resources.")


class DeploymentOptions(_RayBlock):
    """Replicas and queues of one deployment; any other Ray Serve deployment option
    (``health_check_period_s``, ``graceful_shutdown_timeout_s``, ``user_config``, ...) passes through.

    ``max_queued_requests`` bounds the queue in front of the replicas: beyond it a request is
    answered 503 with ``Retry-After: retry_after_s`` at once instead of waiting.
    """

    num_replicas: int | None = Field(default=None, ge=1, description="Fixed replica count (no autoscaling).")
    autoscaling_config: AutoscalingOptions | None = Field(default=None, description="Autoscaling bounds and target.")
    max_ongoing_requests: int = Field(default=16, ge=1, description="Requests one replica works on at once.")
    max_queued_requests: int = Field(default=64, ge=1, description="Requests waiting for a replica (then 503).")
    retry_after_s: float = Field(default=1.0, ge=0, description="Retry-After on a 503.")
    ray_actor_options: ActorOptions = Field(default_factory=ActorOptions)

    @model_validator(mode="after")
    def _consistent(self) -> "DeploymentOptions":
        if (self.num_replicas is None) == (self.autoscaling_config is None):
            raise ValueError("set exactly one of num_replicas and autoscaling_config")
        auto = self.autoscaling_config
        if auto is not None and auto.target_ongoing_requests >= self.max_ongoing_requests:
            raise ValueError(
                f"autoscaling_config.target_ongoing_requests={auto.target_ongoing_requests} must be below "
                f"max_ongoing_requests={self.max_ongoing_requests}"
            )
        return self

    def ray_options(self) -> dict[str, Any]:
        """Keyword arguments for ``Deployment.options``: every option set, pass-through ones included."""
        actor = self.ray_actor_options
        out: dict[str, Any] = {
            **(self.model_extra or {}),
            "max_ongoing_requests": self.max_ongoing_requests,
            "max_queued_requests": self.max_queued_requests,
            "ray_actor_options": {
                **(actor.model_extra or {}),
                "num_cpus": actor.num_cpus,
                "num_gpus": actor.num_gpus,
                **({"memory": actor.memory} if actor.memory is not None else {}),
                **({"resources": dict(actor.resources)} if actor.resources else {}),
            },
        }
        out.setdefault("backpressure_config", {"status_code": 503, "retry_after_s": self.retry_after_s})
        if self.autoscaling_config is not None:
            out["autoscaling_config"] = self.autoscaling_config.model_dump(exclude_none=True)
        else:
            out["num_replicas"] = self.num_replicas
        return out


def ingress_defaults() -> DeploymentOptions:
    return DeploymentOptions(
        autoscaling_config=AutoscalingOptions(min_replicas=1, max_replicas=2, target_ongoing_requests=64),
        max_ongoing_requests=256,
        max_queued_requests=1024,
        ray_actor_options=ActorOptions(num_cpus=0.25),
    )


def media_defaults() -> DeploymentOptions:
    return DeploymentOptions(
        autoscaling_config=AutoscalingOptions(min_replicas=1, max_replicas=4, target_ongoing_requests=2),
        max_ongoing_requests=4,
        max_queued_requests=64,
        ray_actor_options=ActorOptions(num_cpus=1),
    )


def model_defaults() -> DeploymentOptions:
    return DeploymentOptions(
        autoscaling_config=AutoscalingOptions(min_replicas=1, max_replicas=1, target_ongoing_requests=8),
        max_ongoing_requests=16,
        max_queued_requests=64,
        ray_actor_options=ActorOptions(num_cpus=1),
    )


DEPLOYMENT_DEFAULTS = {
    "ingress_deployment": ingress_defaults,
    "media_deployment": media_defaults,
    "model_deployment": model_defaults,
}


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


__all__ = [
    "DEPLOYMENT_DEFAULTS",
    "ActorOptions",
    "AutoscalingOptions",
    "DeploymentOptions",
    "deep_merge",
    "ingress_defaults",
    "media_defaults",
    "model_defaults",
]
