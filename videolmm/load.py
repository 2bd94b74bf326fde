"""Where the plugin host meets the core: build the registry and hooks, hand them to the engine.

The core (:mod:`videolmm.models`, :mod:`videolmm.media`) never imports the plugin system; every
integration (lmms-eval, Serve, the CLI, tests) loads engines through this module, which asks
the plugin manager for the registry and the hook caller and passes both in::

    from videolmm.load import load_engine

    engine = load_engine("llava-hf/LLaVA-NeXT-Video-7B-hf", num_frames=16)
    engine = load_engine(EngineSpec.from_options({"pretrained": "...", "max_frames_num": "16"}))

``pm`` selects another plugin manager (tests pass a fresh one); None is the process-wide one.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any

from videolmm.models.engine import Engine
from videolmm.models.families.base import LoadOptions
from videolmm.models.spec import EngineSpec, ResolvedSpec, resolve
from videolmm.models.spec import detect_family as _detect_family
from videolmm.plugin.manager import get_plugin_manager, get_registry
from videolmm.registry import Registry


def host(pm: Any = None) -> tuple[Registry, Any]:
    """The registry and hook caller of ``pm`` (default: the process-wide plugin manager)."""
    pm = pm or get_plugin_manager()
    return get_registry(pm), pm.hook


def load_engine(
    spec: EngineSpec | str,
    *,
    pm: Any = None,
    load_model: bool = True,
    load: LoadOptions | None = None,
    **fields: Any,
) -> Engine:
    """Load an engine with the registry and hooks of ``pm``.

    Args:
        spec: an :class:`~videolmm.models.spec.EngineSpec`, or a checkpoint path / hub id.
        pm: plugin manager; None uses the process-wide one.
        load_model: False loads config and processor only (``videolmm inspect``).
        load: placement fields (device, dtype, ...) given as one :class:`LoadOptions`.
        **fields: :class:`EngineSpec` fields (``family=``, ``num_frames=``, ...); with a spec
            given, they replace its values.

    Returns:
        The loaded :class:`~videolmm.models.engine.Engine`.

    Raises:
        TypeError: a keyword is not an ``EngineSpec`` field.
    """
    if load is not None:
        fields = {**{k: v for k, v in asdict(load).items()}, **fields}
    spec = replace(spec, **fields) if isinstance(spec, EngineSpec) else EngineSpec(pretrained=str(spec), **fields)
    registry, hooks = host(pm)
    return Engine.from_spec(spec, registry=registry, hooks=hooks, load_model=load_model)


def resolve_spec(spec: EngineSpec, *, pm: Any = None) -> ResolvedSpec:
    """Apply checkpoint and family defaults to ``spec`` without loading weights (Serve's media stage)."""
    registry, hooks = host(pm)
    return resolve(spec, registry, hooks)


def detect_family(pretrained: str, *, pm: Any = None, revision: str | None = None) -> str:
    """The family that loads ``pretrained``, as the plugins' ``resolve_family`` hooks answer."""
    return _detect_family(pretrained, hooks=host(pm)[1], revision=revision)


__all__ = ["detect_family", "host", "load_engine", "resolve_spec"]
