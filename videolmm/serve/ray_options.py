"""A deployment block of the Serve config, checked against Ray Serve's own schema and passed on whole.

videolmm types only the options its own checks read (replica counts, queue bounds, the autoscaling
target, ``retry_after_s``); every other Ray Serve deployment option — ``health_check_period_s``,
``graceful_shutdown_timeout_s``, ``ray_actor_options.runtime_env`` / ``accelerator_type``,
``autoscaling_config.policy``, ``placement_group_bundles`` … — is written in the same block and
reaches ``Deployment.options`` unchanged. Ray's schema classes ignore unknown keys, so a typo would
pass silently; :func:`deployment_options` refuses names that are not fields of Ray's
``DeploymentSchema`` (and of its ``ray_actor_options`` and ``autoscaling_config`` schemas), then
validates the values with Ray's ``DeploymentSchema`` itself. Imported when the app is built (it
imports Ray).
"""

from __future__ import annotations

from typing import Any

from videolmm.serve.config import DeploymentOptions


def _fields(model: Any) -> set[str]:
    return set(model.model_fields)


def deployment_options(key: str, options: DeploymentOptions) -> dict[str, Any]:
    """``Deployment.options(**...)`` for one deployment block, validated by Ray's schema.

    Args:
        key: the block's name in the config (``model_deployment``), used in error messages.
        options: the validated block.

    Returns:
        The keyword arguments, every option the block sets included.

    Raises:
        ValueError: naming ``key`` and the option when Ray does not know an option or refuses a value.
    """
    import ray
    from ray.serve.config import AutoscalingConfig
    from ray.serve.schema import DeploymentSchema, RayActorOptionsSchema

    opts = options.ray_options()
    nested = (("", opts, DeploymentSchema, {"name"}),)
    if isinstance(opts.get("ray_actor_options"), dict):
        nested += (("ray_actor_options.", opts["ray_actor_options"], RayActorOptionsSchema, set()),)
    if isinstance(opts.get("autoscaling_config"), dict):
        nested += (("autoscaling_config.", opts["autoscaling_config"], AutoscalingConfig, set()),)
    for prefix, given, schema, reserved in nested:
        unknown = sorted(set(given) - (_fields(schema) - reserved))
        if unknown:
            known = ", ".join(sorted(_fields(schema) - reserved))
            raise ValueError(
                f"{key}: unknown Ray Serve option(s) {', '.join(prefix + u for u in unknown)} "
                f"(Ray {ray.__version__} accepts {prefix or 'here'}: {known})"
            )
    try:
        DeploymentSchema.model_validate({"name": key, **opts})
    except (ValueError, TypeError) as exc:  # pydantic ValidationError is a ValueError
        raise ValueError(f"{key}: Ray Serve refuses the deployment options: {exc}") from None
    return opts


__all__ = ["deployment_options"]
