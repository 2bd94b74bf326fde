"""videolmm's plugin system: hook markers, specs and the plugin manager factory.

Import-light on purpose: nothing here imports torch, transformers, lmms-eval or Ray.
"""

from __future__ import annotations

from videolmm.plugin.hookspecs import PROJECT_NAME, hookimpl, hookspec


def get_plugin_manager():  # noqa: ANN201 - re-exported lazily to keep this module tiny
    """Return the process-wide plugin manager (see :mod:`videolmm.plugin.manager`)."""
    from videolmm.plugin.manager import get_plugin_manager as _get

    return _get()


__all__ = ["PROJECT_NAME", "get_plugin_manager", "hookimpl", "hookspec"]
