"""Ray Serve app: videolmm's core behind an autoscaling, OpenAI-compatible API.

``serve run serve_configs/tiny.yaml`` (CPU) or ``serve_configs/video.yaml`` (GPU) deploys
``import_path: videolmm.serve:build_app``. Layout (dependencies point down):

- :mod:`~videolmm.serve.ingress`: FastAPI OpenAI routes (``serve.ingress``);
- :mod:`~videolmm.serve.deployments`: media decoder (CPU) and model server
  (``@serve.batch`` + ``@serve.multiplexed`` over core engines);
- :mod:`~videolmm.serve.convert`, :mod:`~videolmm.serve.decode`, :mod:`~videolmm.serve.security`:
  request mapping, decoding under limits, URL/file/key checks (no Ray);
- :mod:`~videolmm.serve.config`: pydantic ``ServeArgs`` and the typed builder ``build_app``;
- :mod:`~videolmm.serve.protocol`, :mod:`~videolmm.serve.errors`, :mod:`~videolmm.serve.metrics`.

Importing this package imports pydantic only; Ray is imported when the app is built.
"""

from videolmm.serve.config import ServeArgs, build_app, load_serve_config

__all__ = ["ServeArgs", "build_app", "load_serve_config"]
