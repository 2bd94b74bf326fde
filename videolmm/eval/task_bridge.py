"""The task-folder bridge: ``lmms-eval --tasks videolmm_demo`` with no flag and no env var.

lmms-eval 0.7.x indexes task YAMLs only from its own ``tasks/`` folder and ``--include_path``;
it has no entry-point group for tasks, and its ``LMMS_EVAL_PLUGINS`` task path is added after
the ``TaskManager`` is built. This module adds the smallest missing piece: task folders
declared in the entry-point group ``lmms_eval.tasks`` (value = an importable package whose
folder holds task YAMLs) are indexed alongside lmms-eval's defaults.

How: ``TaskManager.initialize_tasks`` (public, documented parameters ``include_path`` and
``include_defaults``) is wrapped once so that, when defaults are included, the entry-point
folders are appended to ``include_path``. Nothing else is touched. The wrapper is installed
only for the lmms-eval versions in :data:`SUPPORTED` and only when the method's signature is
the expected one; otherwise a warning says to use ``--include_path`` (the plain alternative).

Model discovery runs :func:`install_when_imported`, which never imports ``lmms_eval.tasks``
itself (that module imports torch): when ``lmms_eval.tasks`` is not imported yet, a one-shot
import hook wraps ``TaskManager`` right after the module executes, so listing lmms-eval's models
stays torch-free.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import inspect
import logging
import sys
from importlib.metadata import PackageNotFoundError, entry_points, version
from typing import Any

from videolmm.eval import until
from videolmm.eval.compat import SUPPORTED, is_supported

logger = logging.getLogger(__name__)

TASK_ENTRY_POINT_GROUP = "lmms_eval.tasks"
_MARK = "__videolmm_task_bridge__"


def task_folders() -> list[str]:
    """Folders of every package declared in the ``lmms_eval.tasks`` entry-point group."""
    folders: list[str] = []
    for ep in sorted(entry_points(group=TASK_ENTRY_POINT_GROUP), key=lambda e: e.name):
        spec = importlib.util.find_spec(ep.value)
        if spec is None or not spec.submodule_search_locations:
            logger.warning("lmms_eval.tasks entry point %r: %r is not a package; skipped", ep.name, ep.value)
            continue
        folders.append(str(list(spec.submodule_search_locations)[0]))
    return folders


def install(task_manager_cls: Any = None) -> bool:
    """Wrap ``TaskManager.initialize_tasks`` once. Returns True when the bridge is active."""
    try:
        installed = version("lmms-eval")
    except PackageNotFoundError:
        return False
    if task_manager_cls is None:
        from lmms_eval.tasks import TaskManager as task_manager_cls
    original = task_manager_cls.initialize_tasks
    if getattr(original, _MARK, False):
        return True
    params = list(inspect.signature(original).parameters)
    if not is_supported(installed) or params[:3] != ["self", "include_path", "include_defaults"]:
        logger.warning(
            "videolmm task bridge not installed for lmms-eval %s (supported %s..%s); "
            "pass --include_path %s to find videolmm's tasks",
            installed,
            ".".join(map(str, SUPPORTED[0])),
            ".".join(map(str, SUPPORTED[1])),
            " ".join(task_folders()),
        )
        return False

    def initialize_tasks(self: Any, include_path: Any = None, include_defaults: bool = True) -> Any:
        if include_defaults:
            paths = [include_path] if isinstance(include_path, str) else list(include_path or [])
            paths += [p for p in task_folders() if p not in paths]
            include_path = paths
        return original(self, include_path=include_path, include_defaults=include_defaults)

    setattr(initialize_tasks, _MARK, True)
    initialize_tasks.__wrapped__ = original  # type: ignore[attr-defined]
    initialize_tasks.__doc__ = original.__doc__
    task_manager_cls.initialize_tasks = initialize_tasks
    return True


_TASKS_MODULE = "lmms_eval.tasks"


class _InstallOnImport(importlib.abc.MetaPathFinder):
    """One-shot import hook: runs :func:`install` on ``lmms_eval.tasks.TaskManager`` once it exists."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != _TASKS_MODULE:
            return None
        _remove_hook()  # before find_spec below, which walks sys.meta_path again
        spec = importlib.util.find_spec(name)
        loader = getattr(spec, "loader", None)
        if spec is None or loader is None or not hasattr(loader, "exec_module"):
            return spec
        execute = loader.exec_module

        def exec_module(module: Any) -> None:
            execute(module)
            try:
                install(module.TaskManager)
                until.install()  # lmms_eval.api.task is imported by now: mark injected stop strings
            except Exception:  # the bridge is an extra; lmms-eval must still import
                logger.exception("videolmm task bridge: install failed; pass --include_path to find our tasks")

        loader.exec_module = exec_module
        return spec


def _remove_hook() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _InstallOnImport)]


def install_when_imported() -> bool:
    """:func:`install` now if ``lmms_eval.tasks`` is imported, else as soon as it is (torch-free).

    Returns:
        True when the bridge was installed now; False when it is deferred (or refused, logged).
    """
    module = sys.modules.get(_TASKS_MODULE)
    if module is not None and hasattr(module, "TaskManager"):
        return install(module.TaskManager)
    if not any(isinstance(f, _InstallOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _InstallOnImport())
    return False


def uninstall(task_manager_cls: Any = None) -> None:
    """Undo :func:`install` (tests use this)."""
    if task_manager_cls is None:
        from lmms_eval.tasks import TaskManager as task_manager_cls
    current = task_manager_cls.initialize_tasks
    if getattr(current, _MARK, False):
        task_manager_cls.initialize_tasks = current.__wrapped__
