"""Ray Serve app: videolmm's core behind an autoscaling, OpenAI-compatible API.

``serve run serve_configs/tiny.yaml`` (CPU) or ``serve_configs/video.yaml`` (GPU) deploys
``import_path: videolmm.serve:build_app``. Layout (each module imports only those below it):

- :mod:`~videolmm.serve.app`: the typed builder ``build_app(args: ServeArgs)``;
- :mod:`~videolmm.serve.ingress`: FastAPI OpenAI routes (``serve.ingress``) over deployment handles;
- :mod:`~videolmm.serve.deployments`: media decoder (CPU) and model server
  (``@serve.batch`` + ``@serve.multiplexed`` over core engines);
- :mod:`~videolmm.serve.openai`, :mod:`~videolmm.serve.decode`, :mod:`~videolmm.serve.jobs`:
  OpenAI request/response mapping, decoding under limits, the jobs that cross Ray (no Ray);
- :mod:`~videolmm.serve.config`: pydantic ``ServeArgs`` (models, limits, security, deployments);
- leaves: :mod:`~videolmm.serve.security` (URL/file/key checks), :mod:`~videolmm.serve.errors`,
  :mod:`~videolmm.serve.protocol` (OpenAI wire format), :mod:`~videolmm.serve.metrics`,
  :mod:`~videolmm.serve.context`.

Importing this package imports pydantic only; Ray is imported when the app is built.
"""

from videolmm.serve.app import build_app
from videolmm.serve.config import ServeArgs, load_serve_config

__all__ = ["ServeArgs", "build_app", "load_serve_config"]
