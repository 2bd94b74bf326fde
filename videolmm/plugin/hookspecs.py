"""Hook specifications for videolmm plugins (pluggy project name ``videolmm``).

Every hook videolmm calls is declared here, with a docstring-only body, in the style of
pytest's ``hookspec.py``. Plugins implement them with :data:`videolmm.plugin.hookimpl` (defined here, re-exported
there)::

    from videolmm.plugin import hookimpl

    @hookimpl
    def register_samplers(register):
        register("every_other", EveryOtherSampler())

Collections use *register callbacks* (like ``llm``'s ``register_models(register)``): a hook
receives a ``register`` function and calls it once per object. Registering a name that
another plugin already registered raises :class:`videolmm.errors.RegistryError`
naming both plugins. An implementation may accept fewer arguments than the spec.

Plugins are found through the ``videolmm`` entry-point group; see
:func:`videolmm.plugin.manager.get_plugin_manager`. Built-in families, decoders, samplers and
templates are registered by an ordinary plugin, :mod:`videolmm.plugin.builtin`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from videolmm.media.base import VideoDecoder
    from videolmm.media.sampling import Sampler
    from videolmm.models.engine import Engine, PreparedBatch
    from videolmm.models.families.base import Family
    from videolmm.models.prompts import PromptTemplate
    from videolmm.types import Result

PROJECT_NAME = "videolmm"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)

#: Marker for hook implementations: ``@hookimpl`` or ``@hookimpl(wrapper=True)``.
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


# -------------------------------------------------------------------------
# Registration hooks: collections of named components
# -------------------------------------------------------------------------


@hookspec
def register_families(register: Callable[[Family], None]) -> None:
    """Register model families (a transformers class plus its pooling, newline, token-count,
    template and sampling defaults).

    :param register: call ``register(family)`` once per :class:`~videolmm.models.families.base.Family`
        instance. ``family.name`` must be unique across all plugins; it is the name users pass
        as ``family=`` to lmms-eval's ``videolmm`` model and in serve configs.
    :return: ignored.

    .. note::
        Keep module-level imports light: a family should import torch and transformers
        inside its methods, so that discovering plugins never imports torch.
    """


@hookspec
def register_decoders(register: Callable[[str, VideoDecoder], None]) -> None:
    """Register video decoders by name.

    :param register: call ``register(name, decoder)`` once per decoder; ``decoder``
        implements :class:`~videolmm.media.base.VideoDecoder` (``open(source)`` returning
        an opened video with ``info`` and ``read(indices)``). Names are what users pass as
        ``decoder=``.
    :return: ignored.
    """


@hookspec
def register_samplers(register: Callable[[str, Sampler], None]) -> None:
    """Register frame samplers by name.

    :param register: call ``register(name, sampler)`` once per sampler; ``sampler`` is a
        callable ``(info: VideoInfo, spec: SamplingSpec) -> FrameSelection`` (see
        :mod:`videolmm.media.sampling`). Names are what users pass as ``sampler=``.
    :return: ignored.
    """


@hookspec
def register_prompt_templates(register: Callable[[PromptTemplate], None]) -> None:
    """Register conversation templates that turn (visual placeholders, question) into the
    exact prompt string a checkpoint was trained with.

    :param register: call ``register(template)`` once per
        :class:`~videolmm.models.prompts.PromptTemplate`; ``template.name`` is what users
        pass as ``template=`` / ``conv_template=``.
    :return: ignored.
    """


# -------------------------------------------------------------------------
# Decision hooks: one answer wins
# -------------------------------------------------------------------------


@hookspec(firstresult=True)
def resolve_family(config: Mapping[str, Any], pretrained: str) -> str | None:
    """Name the family that should load a checkpoint, from its ``config.json``.

    Called when a user does not pass ``family=``. Plugins that add a family for a new
    ``model_type`` or architecture answer for their own checkpoints and return None for
    the rest. Stops at first non-None result, see pluggy's ``firstresult``.

    :param config: the checkpoint's ``config.json`` as a dict (not a transformers object,
        so that answering needs no torch import).
    :param pretrained: the path or hub id the user passed.
    :return: a registered family name, or None to let other plugins answer.
    """


# -------------------------------------------------------------------------
# Execution hooks: the engine's batch step, wrappable for timing and tracing
# -------------------------------------------------------------------------


@hookspec(firstresult=True)
def generate_batch(engine: Engine, batch: PreparedBatch) -> Sequence[Result] | None:
    """Run the language model on one prepared batch and return one result per request.

    The built-in implementation (:mod:`videolmm.plugin.builtin`) calls
    ``engine.run_batch(batch)``. This hook runs on the *static* scheduler (a batch runs until its
    longest answer ends): while any other plugin implements it, engines generate on the static
    scheduler, so the plugin sees every generation (the continuous scheduler has no batches).
    Use ``@hookimpl(wrapper=True)`` to time, trace or log around it; a wrapper receives the
    same arguments and must ``return (yield)`` (or a replacement list of the same length).
    Stops at first non-None result.

    :param engine: the :class:`~videolmm.models.engine.Engine` running the batch (model,
        processor, family, settings).
    :param batch: a :class:`~videolmm.models.engine.PreparedBatch`: the requests, their
        processor inputs (left-padded tensors), rendered prompts and visual token counts.
    :return: a sequence of :class:`~videolmm.types.Result`, one per request, in order.
    """
