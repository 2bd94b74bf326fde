"""A task's own stop strings, told apart from the ``until`` lmms-eval injects.

lmms-eval's ``TaskConfig.__post_init__`` (``lmms_eval/api/task.py``) gives every generate task
whose ``generation_kwargs`` lack ``until`` the stop list ``[fewshot_delimiter]`` (``"\\n\\n"`` by
default), and a task without ``generation_kwargs`` gets ``{"until": [fewshot_delimiter],
"do_sample": False}``. The seeds' wrappers (``llava_vid``, ``llava_onevision``, ``video_llava``)
ignore ``until`` and stop at the conversation separator, so a multi-paragraph answer (VideoChatGPT
generic / temporal / consistency, video detail description) is never cut at its first blank line.

The value cannot tell an injected ``["\\n\\n"]`` from one a task wrote, so the decision is taken
where the injection happens: :func:`install` wraps ``TaskConfig.__post_init__`` once, and when the
config had no ``until`` before it ran, the injected list is replaced by an :class:`InjectedUntil`
(a ``list``: lmms-eval and its logs see the same value; ``copy.deepcopy``, which lmms-eval applies
to every request's ``generation_kwargs``, keeps the type). ``--gen_kwargs until=...`` on the
command line replaces the value, so it is applied. :func:`task_stop` returns the stop strings
a request should honour.
"""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from videolmm.eval.compat import SUPPORTED, is_supported

logger = logging.getLogger(__name__)

_MARK = "__videolmm_until__"


class InjectedUntil(list):
    """The ``until`` list lmms-eval added to a task that set none (see the module doc)."""


def install(task_config_cls: Any = None) -> bool:
    """Wrap ``TaskConfig.__post_init__`` once so that an injected ``until`` is marked.

    Returns:
        True when the wrapper is in place (now or before); False when lmms-eval is missing or its
        version is outside :data:`videolmm.eval.compat.SUPPORTED` (then nothing is patched).
    """
    try:
        installed = version("lmms-eval")
    except PackageNotFoundError:
        return False
    if task_config_cls is None:
        from lmms_eval.api.task import TaskConfig as task_config_cls
    original = task_config_cls.__post_init__
    if getattr(original, _MARK, False):
        return True
    if not is_supported(installed) or "generation_kwargs" not in getattr(task_config_cls, "__dataclass_fields__", {}):
        logger.warning(
            "lmms-eval %s is outside the versions videolmm's until marker was tested with (%s to %s): "
            "lmms-eval's injected until=[fewshot_delimiter] stays applied",
            installed,
            ".".join(map(str, SUPPORTED[0])),
            ".".join(map(str, SUPPORTED[1])),
        )
        return False

    def __post_init__(self: Any) -> None:
        kwargs = self.generation_kwargs
        own = isinstance(kwargs, dict) and "until" in kwargs
        original(self)
        kwargs = self.generation_kwargs
        if not own and isinstance(kwargs, dict) and isinstance(kwargs.get("until"), list):
            kwargs["until"] = InjectedUntil(kwargs["until"])

    setattr(__post_init__, _MARK, True)
    __post_init__.__wrapped__ = original  # type: ignore[attr-defined]
    task_config_cls.__post_init__ = __post_init__
    return True


def uninstall(task_config_cls: Any = None) -> None:
    """Undo :func:`install` (tests use this)."""
    if task_config_cls is None:
        from lmms_eval.api.task import TaskConfig as task_config_cls
    current = task_config_cls.__post_init__
    if getattr(current, _MARK, False):
        task_config_cls.__post_init__ = current.__wrapped__


def task_stop(gen_kwargs: dict[str, Any]) -> tuple[str, ...]:
    """The stop strings a request's ``generation_kwargs`` ask for: the task's own ``until`` (a string
    or a list), none for the one lmms-eval injected."""
    until = gen_kwargs.get("until")
    if not until or isinstance(until, InjectedUntil):
        return ()
    return (until,) if isinstance(until, str) else tuple(str(s) for s in until)


__all__ = ["InjectedUntil", "install", "task_stop", "uninstall"]
