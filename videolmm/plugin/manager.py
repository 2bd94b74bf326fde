"""The plugin manager factory and the component registry built from it.

``get_plugin_manager()`` (pluggy's eggsample pattern) adds the hook specs, registers the
built-in components as an ordinary plugin, then loads the ``videolmm`` entry-point group:

- ``VIDEOLMM_PLUGINS`` (comma-separated entry-point names) is an allow-list; when it is set,
  only the named third-party plugins load (set it empty to load none).
- A plugin that fails to *import* is logged with its name and skipped; the rest load. So is a
  third-party register hook that raises while the registry is built (what it registered is dropped).
- A plugin whose hooks do not match the specs fails loudly (``PluginValidationError``).
- Loading is idempotent: the manager is built once per process, and loading entry points
  again never registers a plugin twice.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy

from videolmm.errors import RegistryError
from videolmm.plugin import hookspecs
from videolmm.plugin.hookspecs import PROJECT_NAME
from videolmm.registry import PLURAL, Registry

logger = logging.getLogger(__name__)

#: Entry-point group third-party packages use: ``[project.entry-points.videolmm]``.
ENTRY_POINT_GROUP = "videolmm"
#: Allow-list environment variable.
ALLOW_ENV = "VIDEOLMM_PLUGINS"
#: Name under which the built-in components are registered.
BUILTIN_PLUGIN_NAME = "videolmm.builtin"

_lock = threading.RLock()
_manager: pluggy.PluginManager | None = None


def new_plugin_manager(
    *,
    builtins: bool = True,
    load_entrypoints: bool = True,
    allow: Iterable[str] | None = None,
) -> pluggy.PluginManager:
    """Build a fresh plugin manager (tests use this; everything else uses the shared one).

    Args:
        builtins: register :mod:`videolmm.plugin.builtin` as a plugin.
        load_entrypoints: load the ``videolmm`` entry-point group.
        allow: entry-point names to load; None reads ``VIDEOLMM_PLUGINS`` (unset = all).

    Returns:
        A ``pluggy.PluginManager`` with the specs added and plugins registered.
    """
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    if builtins:
        from videolmm.plugin import builtin

        pm.register(builtin, name=BUILTIN_PLUGIN_NAME)
    if load_entrypoints:
        load_entrypoint_plugins(pm, allow=allow)
    pm.check_pending()
    return pm


def get_plugin_manager() -> pluggy.PluginManager:
    """Return the process-wide plugin manager, building it on first use (thread-safe)."""
    global _manager
    with _lock:
        if _manager is None:
            _manager = new_plugin_manager()
        return _manager


def _allowed_names(allow: Iterable[str] | None) -> set[str] | None:
    if allow is not None:
        return set(allow)
    raw = os.environ.get(ALLOW_ENV)
    if raw is None:
        return None
    return {name.strip() for name in raw.split(",") if name.strip()}


def _entry_points() -> list[EntryPoint]:
    return sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)


def load_entrypoint_plugins(pm: pluggy.PluginManager, *, allow: Iterable[str] | None = None) -> list[str]:
    """Load and register the ``videolmm`` entry points into ``pm``.

    Args:
        pm: the manager to register into.
        allow: entry-point names to load; None reads ``VIDEOLMM_PLUGINS`` (unset = all).

    Returns:
        The names of the plugins registered by this call.

    Raises:
        pluggy.PluginValidationError: a plugin's hook implementations do not match the specs.
    """
    allowed = _allowed_names(allow)
    loaded: list[str] = []
    for ep in _entry_points():
        if allowed is not None and ep.name not in allowed:
            logger.debug("videolmm plugin %r not in %s; skipped", ep.name, ALLOW_ENV)
            continue
        if pm.has_plugin(ep.name):
            if pm.get_plugin(ep.name) is not _loaded_module(ep):
                logger.warning(
                    "videolmm plugin %r (%s): that name is taken by another plugin; skipped", ep.name, ep.value
                )
            continue
        try:
            plugin = ep.load()
        except Exception:
            logger.exception("videolmm plugin %r (%s) failed to load; skipped", ep.name, ep.value)
            continue
        if pm.is_registered(plugin):
            logger.warning(
                "videolmm plugin %r (%s) is already registered as %r; skipped", ep.name, ep.value, pm.get_name(plugin)
            )
            continue
        pm.register(plugin, name=ep.name)  # spec mismatches raise PluginValidationError here, loudly
        loaded.append(ep.name)
    return loaded


def _loaded_module(ep: EntryPoint) -> Any:
    """The already-imported object an entry point names, or None (never imports)."""
    import sys

    module, _, attr = ep.value.partition(":")
    obj = sys.modules.get(module.strip())
    for part in filter(None, attr.strip().split(".")):
        obj = getattr(obj, part, None)
    return obj


def _collect(
    pm: pluggy.PluginManager, hook_name: str, kind: str, table: dict[str, Any], owners: dict[str, str]
) -> None:
    """Call every implementation of a register hook with a callback that knows its plugin."""
    for impl in getattr(pm.hook, hook_name).get_hookimpls():
        if impl.wrapper or impl.hookwrapper:
            raise RegistryError(f"plugin {impl.plugin_name!r}: {hook_name} is a register hook and cannot be a wrapper")

        def register(*args: Any, _plugin: str = impl.plugin_name) -> None:
            if len(args) == 1:  # register(obj) with obj.name
                name, obj = args[0].name, args[0]
            else:
                name, obj = args
            key = f"{kind}:{name}"
            if name in table:
                raise RegistryError(
                    f"{kind} {name!r} registered twice: by plugin {owners[key]!r} and by plugin {_plugin!r}"
                )
            table[name] = obj
            owners[key] = _plugin

        kwargs = {"register": register}
        before = set(table)
        try:
            impl.function(**{arg: kwargs[arg] for arg in impl.argnames})
        except RegistryError:
            raise  # a name conflict between plugins: loud
        except Exception:
            if impl.plugin_name == BUILTIN_PLUGIN_NAME:
                raise  # videolmm's own components must register
            # a third-party plugin's register hook that raises is logged by name and skipped whole
            logger.exception(
                "videolmm plugin %r: %s raised; its %s are skipped", impl.plugin_name, hook_name, PLURAL[kind]
            )
            for name in set(table) - before:
                del table[name]
                owners.pop(f"{kind}:{name}", None)


def build_registry(pm: pluggy.PluginManager) -> Registry:
    """Collect families, decoders, samplers and templates from every plugin in ``pm``.

    Raises:
        RegistryError: two plugins registered the same name of the same kind.
    """
    reg = Registry()
    _collect(pm, "register_families", "family", reg.families, reg.owners)
    _collect(pm, "register_decoders", "decoder", reg.decoders, reg.owners)
    _collect(pm, "register_samplers", "sampler", reg.samplers, reg.owners)
    _collect(pm, "register_prompt_templates", "template", reg.templates, reg.owners)
    return reg


_registries: weakref.WeakKeyDictionary[pluggy.PluginManager, tuple[frozenset[int], Registry]] = (
    weakref.WeakKeyDictionary()
)


def get_registry(pm: pluggy.PluginManager | None = None) -> Registry:
    """Return the registry for ``pm`` (default: the shared manager).

    Cached per manager and rebuilt when its set of plugins changes (a plugin registered or
    unregistered later is seen). Plugin code runs outside the lock, so a register hook may
    itself call :func:`get_plugin_manager`.
    """
    pm = pm or get_plugin_manager()
    plugins = frozenset(id(p) for p in pm.get_plugins())
    with _lock:
        cached = _registries.get(pm)
    if cached is not None and cached[0] == plugins:
        return cached[1]
    reg = build_registry(pm)
    with _lock:
        _registries[pm] = (plugins, reg)
    return reg


__all__ = [
    "ALLOW_ENV",
    "BUILTIN_PLUGIN_NAME",
    "ENTRY_POINT_GROUP",
    "Registry",
    "build_registry",
    "get_plugin_manager",
    "get_registry",
    "load_entrypoint_plugins",
    "new_plugin_manager",
]
