"""Typed configuration of the Serve app: the ``args:`` block of ``import_path: videolmm.serve:build_app``.

One YAML states the models, the replicas and the limits::

    applications:
      - name: videolmm
        import_path: videolmm.serve:build_app
        args:
          models:
            - model_id: llava-next-video-7b
              pretrained: llava-hf/LLaVA-NeXT-Video-7B-hf
          model_deployment:
            ray_actor_options: {num_gpus: 1}
            autoscaling_config: {min_replicas: 1, max_replicas: 4}

Ray validates ``args`` into :class:`ServeArgs` because :func:`videolmm.serve.app.build_app` is
annotated with it (Ray's typed app builders); in Python, ``ServeArgs(...)`` or
``ServeArgs.model_validate({...})``.

Every model default is the core's (the family's sampler, frame count, template), so a request
served here becomes the same core :class:`~videolmm.types.Request` that lmms-eval builds.

Pure configuration: this module imports pydantic, the core's light types and
:mod:`~videolmm.serve.security`'s address constants, never Ray or another serve layer.
"""

import ipaddress
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from videolmm.models.spec import EngineSpec, spec_fields
from videolmm.serve.deployment_config import (
    DEPLOYMENT_DEFAULTS,
    ActorOptions,
    AutoscalingOptions,
    DeploymentOptions,
    deep_merge,
    ingress_defaults,
    media_defaults,
    model_defaults,
)
from videolmm.serve.security import METADATA_ADDRESSES, parse_ports

#: Decoders the app refuses in a model entry (they cannot be bounded per request).
UNSERVED_DECODERS = frozenset({"ffmpeg_cli"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------


class ModelConfig(_Strict):
    """One served model: an id, and the engine options of the core (one :class:`EngineSpec`).

    The engine options are written flat beside ``model_id`` in the YAML — every
    :class:`~videolmm.models.spec.EngineSpec` field (``pretrained``, ``family``, ``num_frames``,
    ``frame_cache``, ``revision``, ...) — and validated by pydantic into :attr:`engine`; unset
    fields take the checkpoint's and the family's defaults, exactly as lmms-eval and the CLI do.
    """

    model_id: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$",
        description="The name clients put in the request's `model` field and see in /v1/models.",
    )
    default_max_tokens: int = Field(
        default=256,
        ge=1,
        description="max_tokens when a request gives none (lmms-eval's default for our models), capped by the limit.",
    )
    engine: EngineSpec = Field(
        description="The engine options (EngineSpec fields, written flat beside model_id; a relative `pretrained` "
        "is resolved against `base_dir`)."
    )

    @model_validator(mode="before")
    @classmethod
    def _engine_fields_are_flat(cls, data: Any) -> Any:
        """Gather the flat EngineSpec fields of a YAML model entry into ``engine``."""
        if not isinstance(data, dict) or "engine" in data:
            return data
        names = {name for name, *_ in spec_fields()}
        out = {k: v for k, v in data.items() if k not in names}
        out["engine"] = {k: v for k, v in data.items() if k in names}
        return out

    @property
    def pretrained(self) -> str:
        """The checkpoint directory or hub id."""
        return self.engine.pretrained


# ---------------------------------------------------------------------------------------------
# Batching, limits, security
# ---------------------------------------------------------------------------------------------


class BatchingConfig(_Strict):
    """Dynamic batching in the model deployment (``@serve.batch``); ``max_batch_size: 1`` turns it off."""

    max_batch_size: int = Field(default=8, ge=1, le=256, description="Requests per engine.generate call.")
    batch_wait_timeout_s: float = Field(
        default=0.01, ge=0, le=10, description="How long a partial batch waits for more requests."
    )


class LimitsConfig(_Strict):
    """Per-request limits. Sizes → 413, counts and ranges → 400."""

    max_request_bytes: int = Field(default=64 << 20, ge=1024, description="HTTP request body (413).")
    max_data_url_bytes: int = Field(default=48 << 20, ge=1, description="Decoded payload of one data: URL (413).")
    max_video_bytes: int = Field(default=512 << 20, ge=1, description="One file:// or fetched video (413).")
    max_image_bytes: int = Field(default=20 << 20, ge=1, description="One image (413).")
    max_duration_s: float = Field(default=3 * 3600, gt=0, description="Video duration N/fps (413).")
    max_frame_pixels: int = Field(default=3840 * 2160, ge=1, description="Width × height of a frame or image (413).")
    max_frames: int = Field(default=128, ge=1, description="Frames sampled per video (400).")
    max_videos_per_request: int = Field(default=4, ge=1, description="Videos in one request (400).")
    max_images_per_request: int = Field(default=8, ge=0, description="Images in one request (400).")
    max_tokens: int = Field(default=4096, ge=1, description="Upper bound on max_tokens (400).")
    max_source_fps: float = Field(
        default=240.0, gt=0, description="Declared frame rate of a video (413): bounds N for a given duration."
    )
    max_source_frames: int = Field(default=648_000, ge=1, description="Frames N in a video stream (413).")
    max_decode_frames: int = Field(
        default=100_000,
        ge=1,
        description="Frames decoded to reach the sampled ones, from the packet index before decoding (413).",
    )
    max_decoded_bytes: int = Field(
        default=1 << 30,
        ge=1,
        description="Decoded RGB bytes of a request's media, F·H·W·3 summed over its videos and images (413).",
    )
    decode_timeout_s: float = Field(
        default=60.0, gt=0, le=3600, description="Wall-clock decoding time of one request; the decoder stops (504)."
    )
    max_stop_chars: int = Field(default=64, ge=1, le=4096, description="Characters in one stop string (400).")
    max_prompt_chars: int = Field(default=262144, ge=1, description="Text characters of all messages together (413).")
    max_messages: int = Field(default=128, ge=1, description="Messages in one request (400).")
    max_content_parts: int = Field(default=64, ge=1, description="Content parts of all messages together (400).")
    max_inflight_bytes: int = Field(
        default=512 << 20, ge=1024, description="Request bodies one ingress replica holds at once (then 503)."
    )

    @model_validator(mode="after")
    def _inflight_fits_a_body(self) -> "LimitsConfig":
        if self.max_inflight_bytes < self.max_request_bytes:
            raise ValueError(
                f"max_inflight_bytes={self.max_inflight_bytes} < max_request_bytes={self.max_request_bytes}"
            )
        return self


class RemoteFetchConfig(_Strict):
    """``http(s)://`` media fetching: off unless enabled, and then only from listed hosts.

    Loopback, private, link-local, shared, reserved, multicast and cloud-metadata addresses are
    refused even for listed hosts: every address a host resolves to is checked, on every redirect,
    and the connection goes to the checked address.
    """

    enabled: bool = Field(default=False, description="Allow http(s) media URLs at all.")
    allowed_hosts: tuple[str, ...] = Field(
        default=(), description="Exact host names, or '*.example.com' for subdomains of example.com."
    )
    allowed_schemes: tuple[Literal["http", "https"], ...] = Field(default=("https",), description="URL schemes.")
    timeout_s: float = Field(default=10.0, gt=0, le=300, description="Whole fetch, redirects included.")
    max_redirects: int = Field(default=3, ge=0, le=10, description="Redirects followed (each one re-checked).")
    allowed_networks: tuple[str, ...] = Field(
        default=(),
        description="CIDRs exempt from the non-public address check (e.g. an internal media server at "
        "10.1.2.3/32); the host must still be allow-listed. Cloud-metadata addresses can not be exempted.",
    )
    allowed_ports: tuple[int | str, ...] = Field(
        default=(443,), description="Ports media may be fetched from, e.g. [443, 8443] or ['8000-8999']; every hop."
    )

    @field_validator("allowed_ports")
    @classmethod
    def _ports(cls, ports: tuple[int | str, ...]) -> tuple[int | str, ...]:
        parse_ports(ports)  # ValueError names the bad entry
        return ports

    @field_validator("allowed_hosts")
    @classmethod
    def _lower_hosts(cls, hosts: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(h.strip().lower().rstrip(".") for h in hosts if h.strip())

    @field_validator("allowed_networks")
    @classmethod
    def _networks(cls, networks: tuple[str, ...]) -> tuple[str, ...]:
        out = []
        for text in networks:
            network = ipaddress.ip_network(text.strip(), strict=True)  # ValueError names the bad CIDR
            metadata = sorted(str(a) for a in METADATA_ADDRESSES if a in network)
            if metadata:
                raise ValueError(f"allowed_networks: {network} contains cloud-metadata address(es) {metadata}")
            out.append(str(network))
        return tuple(out)


class SecurityConfig(_Strict):
    """Where media may come from, and the optional API key."""

    media_roots: tuple[str, ...] = Field(
        default=(), description="Directories file:// URLs may point into (no traversal, no symlink escape)."
    )
    remote: RemoteFetchConfig = Field(default_factory=RemoteFetchConfig)
    api_key: SecretStr | None = Field(
        default=None, description="Bearer key required on every route but /health (prefer api_key_env)."
    )
    api_key_env: str | None = Field(
        default=None, description="Environment variable holding the key, read when the app is built."
    )
    allowed_hosts: tuple[str, ...] = Field(
        default=("localhost", "127.0.0.1", "[::1]"),
        description="Host header names (any port) accepted while no API key is set, against DNS rebinding; '*': any.",
    )

    @model_validator(mode="after")
    def _one_key_source(self) -> "SecurityConfig":
        if self.api_key is not None and self.api_key_env:
            raise ValueError("set api_key or api_key_env, not both")
        return self


# ---------------------------------------------------------------------------------------------
# The app
# ---------------------------------------------------------------------------------------------


class ServeArgs(_Strict):
    """Everything ``build_app`` needs: models, batching, limits, security, deployments."""

    models: tuple[ModelConfig, ...] = Field(min_length=1, description="Served models (unique model_id).")
    max_models_per_replica: int = Field(
        default=2, ge=1, description="Engines a model replica keeps loaded (LRU, @serve.multiplexed)."
    )
    batching: BatchingConfig = Field(default_factory=BatchingConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    security: SecurityConfig = Field(default_factory=SecurityConfig)
    ingress_deployment: DeploymentOptions = Field(default_factory=ingress_defaults)
    media_deployment: DeploymentOptions = Field(default_factory=media_defaults)
    model_deployment: DeploymentOptions = Field(default_factory=model_defaults)
    base_dir: str | None = Field(
        default=None, description="Relative `pretrained` and `media_roots` resolve here (default: the current dir)."
    )
    decode_in: Literal["media_deployment", "model_replica"] = Field(
        default="media_deployment",
        description="Where videos are decoded: the separate MediaDecoder deployment (scales on its own and keeps "
        "decoding off the model replicas), or the model replica itself, before batching (no MediaDecoder; "
        "`media_deployment` is then unused).",
    )
    inline_decode_max_bytes: int = Field(
        default=65536,
        ge=0,
        description="With decode_in: media_deployment, a request whose media are all local (file:// under a media "
        "root, data: URLs) and together at most this many encoded bytes, or that has no media, skips the "
        "MediaDecoder: the model replica decodes it (same limits and errors), saving a Serve hop that costs more "
        "than such a decode. 0 sends every request with media through the MediaDecoder.",
    )
    media_resize: bool = Field(
        default=True,
        description="The MediaDecoder resizes and crops sampled video frames to the model's input size before "
        "sending them (the processor's own uint8 resize, run first: the model sees identical pixel values from "
        "a fraction of the bytes). Only for models whose video processor allows it bit-exactly (a probe clip "
        "checks it when the model deployment describes its models); others get the decoded size.",
    )

    @model_validator(mode="before")
    @classmethod
    def _merge_deployment_defaults(cls, data: Any) -> Any:
        """A deployment block given as a dict overrides only the keys it sets (nested dicts too)."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for key, default in DEPLOYMENT_DEFAULTS.items():
            given = data.get(key)
            if isinstance(given, dict):
                base = default().model_dump(exclude_none=True)
                if "num_replicas" in given and "autoscaling_config" not in given:
                    base.pop("autoscaling_config", None)
                if "autoscaling_config" in given and "num_replicas" not in given:
                    base.pop("num_replicas", None)
                data[key] = deep_merge(base, given)
        return data

    @model_validator(mode="after")
    def _check(self) -> "ServeArgs":
        ids = [m.model_id for m in self.models]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate model_id(s): {dupes}")
        if self.model_deployment.max_ongoing_requests < self.batching.max_batch_size:
            raise ValueError(
                f"model_deployment.max_ongoing_requests={self.model_deployment.max_ongoing_requests} is below "
                f"batching.max_batch_size={self.batching.max_batch_size}: batches could never fill"
            )
        extracting = [m.model_id for m in self.models if m.engine.decoder in UNSERVED_DECODERS]
        if extracting:
            raise ValueError(
                f"decoder ffmpeg_cli is not served (models {extracting}): it extracts every frame of a video at "
                "2 fps as JPEG before sampling, beyond the per-request frame budget and the decode deadline; "
                "serve with the default keyframe decoder"
            )
        too_many = [m.model_id for m in self.models if (m.engine.num_frames or 0) > self.limits.max_frames]
        if too_many:
            raise ValueError(f"num_frames above limits.max_frames={self.limits.max_frames} for {too_many}")
        return self

    def model(self, model_id: str) -> ModelConfig | None:
        """The model with this id, or None."""
        return next((m for m in self.models if m.model_id == model_id), None)

    def resolved(self) -> "ServeArgs":
        """A copy with relative checkpoint paths and media roots made absolute against ``base_dir``."""
        base = Path(self.base_dir or os.getcwd()).expanduser().resolve()

        def local(path: str) -> str:
            candidate = Path(path).expanduser()
            if candidate.is_absolute():
                return str(candidate)
            joined = base / candidate
            # a relative name that is not a local directory is a hub id ("org/name")
            return str(joined) if joined.exists() or path.startswith((".", "~")) else path

        models = tuple(
            m.model_copy(update={"engine": replace(m.engine, pretrained=local(m.pretrained))}) for m in self.models
        )
        roots = tuple(str((base / Path(r).expanduser()).resolve()) for r in self.security.media_roots)
        security = self.security.model_copy(update={"media_roots": roots})
        return self.model_copy(update={"models": models, "security": security, "base_dir": str(base)})

    def api_key_value(self) -> SecretStr | None:
        """The API key to require, read from ``api_key`` or the ``api_key_env`` variable.

        Raises:
            ValueError: ``api_key_env`` names a variable that is unset or empty.
        """
        sec = self.security
        if sec.api_key_env:
            value = os.environ.get(sec.api_key_env, "")
            if not value:
                raise ValueError(
                    f"security.api_key_env={sec.api_key_env!r}: the variable is unset or empty where the app is "
                    "built; export it (or remove api_key_env to serve without a key)"
                )
            return SecretStr(value)
        return sec.api_key


def load_serve_config(path: str | os.PathLike[str], app: str | None = None) -> dict[str, Any]:
    """Read a Serve config file and return one application's ``args`` dict.

    Args:
        path: a Serve config YAML (``applications: [...]``) such as ``serve_configs/tiny.yaml``.
        app: application name; None takes the only (or first) application using ``build_app``.

    Returns:
        The ``args`` mapping, ready for :class:`ServeArgs` validation.
    """
    import yaml

    doc = yaml.safe_load(Path(path).read_text())
    apps = [a for a in doc.get("applications", []) if a.get("import_path") == "videolmm.serve:build_app"]
    if app is not None:
        apps = [a for a in apps if a.get("name") == app]
    if not apps:
        named = f" named {app!r}" if app else ""
        raise ValueError(f"{path}: no application{named} with import_path videolmm.serve:build_app")
    return dict(apps[0].get("args") or {})


__all__ = [
    "ActorOptions",
    "AutoscalingOptions",
    "BatchingConfig",
    "DeploymentOptions",
    "LimitsConfig",
    "ModelConfig",
    "RemoteFetchConfig",
    "SecurityConfig",
    "ServeArgs",
    "load_serve_config",
]
