"""One ``EngineSpec``: every option an engine has, declared once, and the one resolver of defaults.

Every door builds an :class:`EngineSpec` and nothing else:

- lmms-eval: ``--model_args pretrained=...,max_frames_num=16,...`` →
  :meth:`EngineSpec.from_options` (seed spellings such as ``conv_template`` are aliases);
- Serve: a model entry of the serve config (``videolmm.serve.config.ModelConfig`` validates the
  same fields with pydantic);
- the CLI: one flag per field (generated from this dataclass) plus ``--option KEY=VALUE``.

A new engine option is one field here (with its help text in ``metadata``) and is then
reachable from all three. :func:`resolve` applies the defaults in one order — an explicit
value, then the checkpoint's own ``videolmm.json``, then the family's seed default — without
loading weights, so a CPU media stage computes exactly what the model's engine uses.

This module imports neither torch nor transformers.
"""

from __future__ import annotations

import json
import math
import typing
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from videolmm.errors import ConfigError
from videolmm.models.families.base import Family, LoadOptions, read_config_dict
from videolmm.registry import Registry
from videolmm.types import MediaSettings, SamplingSpec

DTYPES = ("auto", "float32", "bfloat16", "float16")
QUANTIZATIONS = ("4bit", "8bit")
SCHEDULERS = ("continuous", "static")


def _opt(
    help: str, *, aliases: tuple[str, ...] = (), flags: tuple[str, ...] = (), choices: tuple[str, ...] = ()
) -> Any:
    """Field metadata: ``help`` (all doors), ``aliases`` (other spellings accepted by
    :meth:`EngineSpec.from_options`), ``flags`` (CLI spellings besides ``--the-name``), ``choices``."""
    return {"help": help, "aliases": aliases, "flags": flags, "choices": choices}


@dataclass(frozen=True)
class EngineSpec:
    """Everything that decides how one checkpoint is loaded and what its inputs look like.

    ``None`` means "the default": the checkpoint's ``videolmm.json``, else the family's seed
    value (see :func:`resolve`). Validated on construction (``ConfigError`` names the field).
    """

    pretrained: str = field(metadata=_opt("checkpoint directory or hub id"))
    family: str | None = field(
        default=None, metadata=_opt("model family; None detects it from config.json (resolve_family hook)")
    )
    template: str | None = field(
        default=None,
        metadata=_opt(
            "conversation template; None takes the family's choice for this checkpoint",
            aliases=("conv_template",),
            flags=("--conv-mode",),
        ),
    )
    system_prompt: str | None = field(default=None, metadata=_opt("replaces the template's system message"))
    decoder: str | None = field(
        default=None,
        metadata=_opt(
            "video decoder (keyframe, decord, pyav, torchcodec, frames, ffmpeg_cli, or a plugin's)",
            aliases=("video_decode_backend",),
            flags=("--video-decode-backend",),
        ),
    )
    sampler: str | None = field(
        default=None, metadata=_opt("frame sampler (uniform, fps, hound, or a plugin's); None is the family's")
    )
    num_frames: int | None = field(
        default=None,
        metadata=_opt(
            "frames sampled per video",
            aliases=("max_frames_num", "for_get_frames_num"),
            flags=("--frames", "--for_get_frames_num"),
        ),
    )
    fps: float | None = field(default=None, metadata=_opt("sampling rate for rate-based samplers (fps, hound)"))
    force_sample: bool | None = field(
        default=None, metadata=_opt("LLaVA-Video's force_sample: always num_frames uniformly spaced frames")
    )
    reverse_frames: bool | None = field(
        default=None, metadata=_opt("show the frames in reverse order (an ablation: a model that watches fails it)")
    )
    frame_cache: str | None = field(
        default=None,
        metadata=_opt("directory of decoded frames shared across runs and replicas (also VIDEOLMM_FRAME_CACHE)"),
    )
    preset: str | None = field(
        default=None,
        metadata=_opt(
            "a family's named bundle of defaults (llava_video_qwen2: training, lmms_eval_readme); "
            "explicit values still win; videolmm inspect lists them"
        ),
    )
    family_options: Mapping[str, Any] = field(
        default_factory=dict,
        metadata=_opt("family-specific options, e.g. spatial_pool_stride (names checked by the family)"),
    )
    device: str = field(default="auto", metadata=_opt("cpu, cuda, cuda:1, mps, or auto (CUDA when present)"))
    dtype: str = field(
        default="auto",
        metadata=_opt(
            "weights dtype; auto is float32 on CPU, bfloat16 on CUDA", aliases=("torch_dtype",), choices=DTYPES
        ),
    )
    device_map: str | None = field(default=None, metadata=_opt("transformers device_map (auto shards over GPUs)"))
    attn_implementation: str | None = field(default=None, metadata=_opt("sdpa, eager or flash_attention_2"))
    quantization: str | None = field(
        default=None,
        metadata=_opt("bitsandbytes quantisation on GPU (load_in_4bit / load_in_8bit)", choices=QUANTIZATIONS),
    )
    revision: str | None = field(default=None, metadata=_opt("hub revision of the checkpoint"))
    trust_remote_code: bool = field(default=False, metadata=_opt("forwarded to transformers"))
    scheduler: str = field(
        default="continuous",
        metadata=_opt(
            "continuous: requests join the running batch and leave it at their own end, step by step; "
            "static: a batch runs until its longest answer ends",
            choices=SCHEDULERS,
        ),
    )

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> ConfigError:
            return ConfigError(f"{name}={getattr(self, name)!r}: {why}")

        if not isinstance(self.pretrained, str) or not self.pretrained:
            raise bad("pretrained", "expected a checkpoint directory or hub id")
        if self.num_frames is not None and (isinstance(self.num_frames, bool) or int(self.num_frames) < 1):
            raise bad("num_frames", "must be an integer >= 1")
        if self.fps is not None and not (math.isfinite(float(self.fps)) and float(self.fps) > 0):
            raise bad("fps", "must be a finite number > 0")
        for name in ("dtype", "quantization", "scheduler"):
            value, choices = getattr(self, name), _META[name]["choices"]
            if value is not None and value not in choices:
                raise bad(name, f"expected one of {', '.join(choices)}")
        if not isinstance(self.family_options, Mapping):
            raise bad("family_options", "expected a mapping of option names to values")
        object.__setattr__(self, "family_options", dict(self.family_options))

    # ------------------------------------------------------------------ doors

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> EngineSpec:
        """Build a spec from a flat mapping as the string-typed doors give it (lmms-eval's
        ``--model_args``, the CLI's ``--option KEY=VALUE``).

        Field names and their aliases (``max_frames_num``, ``conv_template``, ...) set fields,
        with strings converted to the field's type (``"true"``, ``"16"``, ``"none"``);
        ``load_in_4bit`` / ``load_in_8bit`` set :attr:`quantization`; every other key is a
        family option, checked by the family when the engine is built.

        Raises:
            ConfigError: a value does not convert, or a field is given twice under two spellings.
        """
        values: dict[str, Any] = {}
        family_options: dict[str, Any] = dict(options.get("family_options") or {})
        for key, raw in options.items():
            if key == "family_options":
                continue
            if key in ("load_in_4bit", "load_in_8bit"):
                if parse_bool(raw, key):
                    _set_once(values, "quantization", key[len("load_in_") :], key)
                continue
            name = ALIASES.get(key, key)
            if name in _META:
                _set_once(values, name, _convert(name, raw), key)
            else:
                _set_once(family_options, FAMILY_OPTION_ALIASES.get(key, key), raw, key)
        return cls(**values, family_options=family_options)

    def load_options(self) -> LoadOptions:
        """Placement and quantisation as the families' :class:`LoadOptions`."""
        return LoadOptions(
            device=self.device,
            dtype=self.dtype,
            device_map=self.device_map,
            attn_implementation=self.attn_implementation,
            quantization=self.quantization,
            revision=self.revision,
            trust_remote_code=self.trust_remote_code,
        )


_META: dict[str, Mapping[str, Any]] = {f.name: f.metadata for f in fields(EngineSpec)}
_TYPES: dict[str, Any] = typing.get_type_hints(EngineSpec)
#: The seeds' spellings of family options (LLaVA-NeXT's ``mm_*`` config keys): alias → option.
FAMILY_OPTION_ALIASES: dict[str, str] = {
    "mm_spatial_pool_stride": "spatial_pool_stride",
    "mm_spatial_pool_mode": "spatial_pool_mode",
}
#: Other spellings of field names (the seeds' and lmms-eval's): alias → field.
ALIASES: dict[str, str] = {alias: name for name, meta in _META.items() for alias in meta["aliases"]}


def spec_fields() -> list[tuple[str, Any, Any, Mapping[str, Any]]]:
    """``(name, type, default, metadata)`` of every :class:`EngineSpec` field, in order (the CLI
    and the docs are generated from it)."""
    out = []
    for f in fields(EngineSpec):
        if f.default is not MISSING:
            default = f.default
        elif f.default_factory is not MISSING:
            default = f.default_factory()
        else:
            default = MISSING
        out.append((f.name, _TYPES[f.name], default, f.metadata))
    return out


def parse_bool(value: Any, name: str) -> bool:
    """``True``/``False`` from a bool or its usual spellings (``1``, ``yes``, ``on``, ...).

    Raises:
        ConfigError: naming ``name`` and the value.
    """
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={value!r}: expected a boolean (true/false)")


def parse_scalar(text: str) -> Any:
    """A ``KEY=VALUE`` value as lmms-eval parses model args: int, float, bool, None or the string."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _set_once(values: dict[str, Any], name: str, value: Any, key: str) -> None:
    if name in values and values[name] != value:
        raise ConfigError(f"{key}={value!r}: {name} is already set to {values[name]!r} under another name")
    values[name] = value


def _convert(name: str, raw: Any) -> Any:
    """``raw`` converted to the type of field ``name`` (strings from the string-typed doors)."""
    kind = _TYPES[name]
    args = typing.get_args(kind)
    if raw is None or (isinstance(raw, str) and raw.strip().lower() == "none" and type(None) in args):
        return None
    base = next((a for a in args if a is not type(None)), kind) if args else kind
    try:
        if base is bool:
            return parse_bool(raw, name)
        if base is int:
            if isinstance(raw, float) and not raw.is_integer():
                raise ValueError
            return int(raw)
        if base is float:
            return float(raw)
        if base is str:
            return str(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={raw!r}: expected {base.__name__}") from None
    return raw


# ---------------------------------------------------------------------- the resolver

#: Optional file in a checkpoint directory declaring the settings it was trained or converted
#: with: ``{"num_frames": 8, "sampler": "uniform", "decoder": "decord", "fps": null,
#: "force_sample": false, "template": "vicuna_v1"}`` (every key optional). Precedence: an
#: explicit value, then this file, then the family's seed defaults.
CHECKPOINT_DEFAULTS = "videolmm.json"
_CHECKPOINT_KEYS = {"num_frames", "sampler", "decoder", "fps", "force_sample", "template", "frames_sampler"}


def read_checkpoint_defaults(pretrained: str) -> dict[str, Any]:
    """The checkpoint's own ``videolmm.json`` defaults (empty when it has none).

    Raises:
        ConfigError: the file is not a JSON object of known keys.
    """
    path = Path(str(pretrained)) / CHECKPOINT_DEFAULTS
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict) or set(data) - _CHECKPOINT_KEYS:
        raise ConfigError(f"{path}: expected an object with keys among {sorted(_CHECKPOINT_KEYS)}")
    return data


def detect_family(pretrained: str, *, hooks: Any, revision: str | None = None) -> str:
    """Ask the ``resolve_family`` hook which family loads ``pretrained``.

    Args:
        pretrained: checkpoint directory or hub id.
        hooks: the plugin host's hook caller (``pm.hook``), or None (then ``family`` is required).
        revision: hub revision.

    Raises:
        ConfigError: no plugin claims the checkpoint (the message names its model_type).
    """
    config = read_config_dict(pretrained, revision=revision)
    name = hooks.resolve_family(config=config, pretrained=str(pretrained)) if hooks is not None else None
    if name is None:
        raise ConfigError(
            f"{pretrained}: no family handles model_type={config.get('model_type')!r} "
            f"(architectures={config.get('architectures')}); pass family=NAME"
        )
    return name


def family_preset(family: Family, name: str | None) -> dict[str, Any]:
    """``family.presets[name]`` (``{}`` for None): field names and family options, applied above the
    checkpoint's and family's defaults, below explicit values. ConfigError lists the known ones."""
    if name is None:
        return {}
    presets: Mapping[str, Mapping[str, Any]] = getattr(family, "presets", {}) or {}
    if name not in presets:
        known = ", ".join(sorted(presets)) or "none"
        raise ConfigError(f"preset={name!r}: family {family.name!r} has no such preset; known presets: {known}")
    return dict(presets[name])


@dataclass(frozen=True)
class ResolvedSpec:
    """A spec with its defaults applied, before any weights are loaded.

    Attributes:
        spec: the spec as given.
        family: the family that loads the checkpoint.
        media: decoder, sampler and sampling numbers (explicit → ``videolmm.json`` → family).
        family_options: every family option, the given ones over the family's defaults.
        template: the template named by the spec or the checkpoint, or None for the family's
            choice (which needs the loaded config: :meth:`Family.default_template`).
    """

    spec: EngineSpec
    family: Family
    media: MediaSettings
    family_options: Mapping[str, Any]
    template: str | None


def resolve(spec: EngineSpec, registry: Registry, hooks: Any = None) -> ResolvedSpec:
    """Apply checkpoint and family defaults to ``spec`` (the one resolver every door uses).

    Args:
        spec: the engine spec.
        registry: the component registry (names are checked against it).
        hooks: the plugin host's hook caller, for family detection when ``spec.family`` is None.

    Raises:
        ConfigError / RegistryError: an unknown family, decoder, sampler, template or family
            option (the message lists the known ones).
    """
    name = spec.family or detect_family(spec.pretrained, hooks=hooks, revision=spec.revision)
    family: Family = registry.family(name)
    given = dict(spec.family_options)
    preset_name = spec.preset if spec.preset is not None else given.pop("preset", None)
    given.pop("preset", None)
    preset = family_preset(family, preset_name)
    options = family.check_options({**{k: v for k, v in preset.items() if k not in _META}, **given})
    if "preset" in options:  # a family with presets shows the one in effect (videolmm inspect)
        options["preset"] = preset_name or options["preset"]
    own = {**read_checkpoint_defaults(spec.pretrained), **{k: v for k, v in preset.items() if k in _META}}
    base, sampling = family.media, family.media.sampling

    def pick(explicit: Any, key: str, default: Any) -> Any:
        return explicit if explicit is not None else own.get(key, default)

    media = MediaSettings(
        decoder=pick(spec.decoder, "decoder", base.decoder),
        sampler=pick(spec.sampler, "sampler", base.sampler),
        sampling=SamplingSpec(
            num_frames=int(pick(spec.num_frames, "num_frames", sampling.num_frames)),
            fps=pick(spec.fps, "fps", sampling.fps),
            force_sample=bool(pick(spec.force_sample, "force_sample", sampling.force_sample)),
            reverse=bool(spec.reverse_frames) if spec.reverse_frames is not None else sampling.reverse,
        ),
        # an explicit sampler is used for every source: the family's frames_sampler no longer applies
        frames_sampler=None if spec.sampler else own.get("frames_sampler", base.frames_sampler),
    )
    derive = getattr(family, "options_for_media", None)  # options that follow the frame count (llava_next_video)
    if derive is not None:
        options = derive(options, media)
    if media.sampling.num_frames < 1:
        raise ConfigError(f"{spec.pretrained}: num_frames={media.sampling.num_frames}: must be >= 1")
    registry.decoder(media.decoder)  # fail early on unknown names
    registry.sampler(media.sampler)
    if media.frames_sampler:
        registry.sampler(media.frames_sampler)
    template = spec.template or own.get("template")
    if template is not None:
        registry.template(template)
    return ResolvedSpec(spec=spec, family=family, media=media, family_options=options, template=template)


__all__ = [
    "ALIASES",
    "FAMILY_OPTION_ALIASES",
    "CHECKPOINT_DEFAULTS",
    "EngineSpec",
    "ResolvedSpec",
    "detect_family",
    "family_preset",
    "parse_bool",
    "parse_scalar",
    "read_checkpoint_defaults",
    "resolve",
    "spec_fields",
]
