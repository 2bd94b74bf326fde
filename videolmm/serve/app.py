"""The typed app builder: ``import_path: videolmm.serve:build_app``.

The Serve YAML points at :func:`build_app` and gives its ``args:`` block::

    applications:
      - name: videolmm
        import_path: videolmm.serve:build_app
        args:
          models:
            - model_id: llava-next-video-7b
              pretrained: llava-hf/LLaVA-NeXT-Video-7B-hf

Ray validates ``args`` into :class:`~videolmm.serve.config.ServeArgs` because :func:`build_app`
is annotated with it (Ray's typed app builders). In Python, call ``build_app(ServeArgs(...))``
or ``build_app({...})``.

Ray is imported when the app is built, not when this module is imported. Building checks every
model's checkpoint first (:func:`check_checkpoints`), so a path that does not exist or a hub id
that cannot be resolved stops the deployment with one message instead of a healthy-looking app
whose every request fails.
"""

# No ``from __future__ import annotations``: Ray reads build_app's annotation as a class.

import os
from pathlib import Path
from typing import TYPE_CHECKING

from videolmm.serve.config import ServeArgs

if TYPE_CHECKING:
    from ray.serve import Application


def build_app(args: ServeArgs) -> "Application":
    """Build the Serve application: OpenAI ingress → media decoder → model server.

    Args:
        args: the validated ``args`` block (Ray converts the YAML dict because of the annotation);
            a plain dict is validated here.

    Returns:
        The bound ``ray.serve.Application`` (pass it to ``serve.run``).

    Examples:
        >>> from ray import serve  # doctest: +SKIP
        >>> serve.run(build_app({"models": [{"model_id": "m", "pretrained": "ckpt"}]}))  # doctest: +SKIP
    """
    from videolmm.serve.deployments import MediaDecoder, ModelServer
    from videolmm.serve.ingress import OpenAIIngress
    from videolmm.serve.ray_options import deployment_options

    if not isinstance(args, ServeArgs):  # `serve run` validates the YAML; Python may pass a dict
        args = ServeArgs.model_validate(args)
    args = args.resolved()
    check_checkpoints(args)
    api_key = args.api_key_value()
    ingress_options = deployment_options("ingress_deployment", args.ingress_deployment)
    model_options = deployment_options("model_deployment", args.model_deployment)
    media = None
    if args.decode_in == "media_deployment":
        media = MediaDecoder.options(**deployment_options("media_deployment", args.media_deployment)).bind(args)
    model = ModelServer.options(**model_options).bind(args)
    return OpenAIIngress.options(**ingress_options).bind(args, media, model, api_key)


def checkpoint_problem(pretrained: str, revision: str | None = None) -> str | None:
    """Why ``pretrained`` cannot be loaded, or None when it can be found.

    A local path (absolute, or starting with ``.``/``~``: :meth:`ServeArgs.resolved` has made the
    existing ones absolute) must be a directory holding ``config.json``. Anything else is a hub id:
    well-formed, and ``config.json`` in the local Hugging Face cache or, online, on the hub.
    """
    if os.path.isabs(pretrained) or pretrained.startswith((".", "~")):
        path = Path(pretrained).expanduser()
        if not path.is_dir():
            return "no such checkpoint directory"
        if not (path / "config.json").is_file():
            return "the directory holds no config.json (not a checkpoint)"
        return None
    import huggingface_hub
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(pretrained)
    except HFValidationError as exc:
        return f"not a local directory, and not a valid hub id ({str(exc).splitlines()[0][:200]})"
    if isinstance(huggingface_hub.try_to_load_from_cache(pretrained, "config.json", revision=revision), str):
        return None
    if huggingface_hub.is_offline_mode():
        return "not a local directory, and not in the local Hugging Face cache (HF_HUB_OFFLINE is set)"
    try:
        found = huggingface_hub.file_exists(pretrained, "config.json", revision=revision)
    except Exception as exc:  # network, auth or a missing repo: named, and the build refused
        return f"not a local directory, and the hub could not be asked ({type(exc).__name__}: {str(exc)[:200]})"
    return None if found else "not a local directory, and the hub has no config.json for it"


def check_checkpoints(args: ServeArgs) -> None:
    """Refuse to build an app whose checkpoints cannot be found (see :func:`checkpoint_problem`).

    Raises:
        ValueError: one message naming every such model id, its ``pretrained`` and the reason.
    """
    problems = []
    for model in args.models:
        problem = checkpoint_problem(model.pretrained, model.engine.revision)
        if problem is not None:
            problems.append(f"model {model.model_id!r} (pretrained: {model.pretrained}): {problem}")
    if problems:
        raise ValueError("cannot serve these models, their checkpoints cannot be loaded: " + "; ".join(problems))


__all__ = ["build_app", "check_checkpoints", "checkpoint_problem"]
