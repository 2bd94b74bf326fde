"""Where the plugin host meets the core: build the registry and hooks, hand them to the engine.

The core (:mod:`videolmm.models`, :mod:`videolmm.media`) never imports the plugin system; every
integration (lmms-eval, Serve, the CLI, tests) loads engines through this module, which asks
the plugin manager for the registry and the hook caller and passes both in::

    from videolmm.load import load_engine

    engine = load_engine("llava-hf/LLaVA-NeXT-Video-7B-hf", num_frames=16)

``pm`` selects another plugin manager (tests pass a fresh one); None is the process-wide one.
"""

from __future__ import annotations

from typing import Any

from videolmm.models.engine import Engine
from videolmm.models.engine import detect_family as _detect_family
from videolmm.plugin.manager import get_plugin_manager, get_registry
from videolmm.registry import Registry


def host(pm: Any = None) -> tuple[Registry, Any]:
    """The registry and hook caller of ``pm`` (default: the process-wide plugin manager)."""
    pm = pm or get_plugin_manager()
    return get_registry(pm), pm.hook


def load_engine(pretrained: str, *, pm: Any = None, load_model: bool = True, **options: Any) -> Engine:
    """Load an engine with the registry and hooks of ``pm``.

    Args:
        pretrained: checkpoint directory or hub id.
        pm: plugin manager; None uses the process-wide one.
        load_model: False loads config and processor only (``videolmm inspect``).
        **options: :meth:`Engine.from_pretrained`'s options (family, num_frames, load, ...).

    Returns:
        The loaded :class:`~videolmm.models.engine.Engine`.
    """
    registry, hooks = host(pm)
    return Engine.from_pretrained(pretrained, registry=registry, hooks=hooks, load_model=load_model, **options)


def detect_family(pretrained: str, *, pm: Any = None, revision: str | None = None) -> str:
    """The family that loads ``pretrained``, as the plugins' ``resolve_family`` hooks answer."""
    return _detect_family(pretrained, hooks=host(pm)[1], revision=revision)


__all__ = ["detect_family", "host", "load_engine"]
