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

Ray is imported when the app is built, not when this module is imported.
"""

# No ``from __future__ import annotations``: Ray reads build_app's annotation as a class.

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

    if not isinstance(args, ServeArgs):  # `serve run` validates the YAML; Python may pass a dict
        args = ServeArgs.model_validate(args)
    args = args.resolved()
    api_key = args.api_key_value()
    media = None
    if args.decode_in == "media_deployment":
        media = MediaDecoder.options(**args.media_deployment.ray_options()).bind(args)
    model = ModelServer.options(**args.model_deployment.ray_options()).bind(args)
    return OpenAIIngress.options(**args.ingress_deployment.ray_options()).bind(args, media, model, api_key)


__all__ = ["build_app"]
