"""The plugin manager: specs, built-ins, entry-point discovery, allow-list, registry, hooks.

Every test runs against a FRESH manager (``new_plugin_manager``), never the process-wide one,
except the idempotence test of ``get_plugin_manager`` itself. Inline plugin classes are
registered through the ``register_plugin`` fixture, which unregisters them in ``finally``.

Entry-point plugins are real: a session fixture writes ``*.dist-info`` folders (``METADATA`` +
``entry_points.txt``) and their modules into temporary folders, and ``monkeypatch.syspath_prepend``
puts one of them on ``sys.path``, so ``importlib.metadata`` discovers them exactly as it discovers
installed packages.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pluggy
import pytest

from videolmm.errors import ConfigError, RegistryError
from videolmm.models.families.base import Family
from videolmm.models.prompts import PromptTemplate
from videolmm.plugin import builtin, hookimpl
from videolmm.plugin.manager import (
    ALLOW_ENV,
    BUILTIN_PLUGIN_NAME,
    build_registry,
    get_plugin_manager,
    load_entrypoint_plugins,
    new_plugin_manager,
)

BUILTIN_FAMILIES = {"llava_next_video", "video_llava"}
BUILTIN_DECODERS = {"decord", "pyav", "torchcodec", "frames", "images"}
BUILTIN_SAMPLERS = {"uniform", "fps", "hound"}
BUILTIN_TEMPLATES = {"vicuna_v1", "v1", "llava_v1", "mistral_direct", "mistral_instruct", "qwen_1_5", "hf_chat"}
HOOKS = {
    "register_families",
    "register_decoders",
    "register_samplers",
    "register_prompt_templates",
    "resolve_family",
    "generate_batch",
}

FAKE_PREFIX = "vlmm_fake_"
#: Entry-point names of the fake distributions in the "good" folder.
FAKE_EPS = {"alpha", "beta", "broken"}

RegisterPlugin = Callable[[pluggy.PluginManager, object, str], object]


# ---------------------------------------------------------------------------------------------
# fake installed distributions
# ---------------------------------------------------------------------------------------------

_ALPHA = """
from videolmm.types import FrameSelection
from videolmm.plugin import hookimpl


def first_frame(info, spec):
    return FrameSelection(indices=(0,), timestamps=(0.0,))


@hookimpl
def register_samplers(register):
    register("alpha_first", first_frame)
"""

_BETA = """
from videolmm.models.prompts import PromptTemplate
from videolmm.plugin import hookimpl


@hookimpl
def register_prompt_templates(register):
    register(PromptTemplate(name="beta_plain", format="{content}"))
"""

_BROKEN = """
raise ImportError("vlmm_fake_broken needs the package 'not-installed-anywhere'")
"""

_BADSPEC = """
from videolmm.plugin import hookimpl


@hookimpl
def register_samplers(registrar):
    pass
"""

_UNKNOWN_HOOK = """
from videolmm.plugin import hookimpl


@hookimpl
def register_widgets(register):
    pass
"""

#: folder name → [(entry-point name, module name, module source)]
_FAKE_DISTS: dict[str, list[tuple[str, str, str]]] = {
    "good": [
        ("alpha", f"{FAKE_PREFIX}alpha", _ALPHA),
        ("beta", f"{FAKE_PREFIX}beta", _BETA),
        ("broken", f"{FAKE_PREFIX}broken", _BROKEN),
    ],
    "badspec": [("badspec", f"{FAKE_PREFIX}badspec", _BADSPEC)],
    "unknown_hook": [("unknown_hook", f"{FAKE_PREFIX}unknown_hook", _UNKNOWN_HOOK)],
}


def _write_dist(root: Path, ep_name: str, module: str, source: str) -> None:
    """Write ``module.py`` and a ``<module>-0.1.dist-info`` declaring it in the ``videolmm`` group."""
    (root / f"{module}.py").write_text(textwrap.dedent(source).lstrip(), encoding="utf-8")
    info = root / f"{module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(f"[videolmm]\n{ep_name} = {module}\n", encoding="utf-8")


@pytest.fixture(scope="session")
def fake_dists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Folders of fake installed distributions: ``good`` (alpha, beta, broken), ``badspec``, ``unknown_hook``."""
    roots: dict[str, Path] = {}
    for kind, dists in _FAKE_DISTS.items():
        root = roots[kind] = tmp_path_factory.mktemp(f"dists-{kind}")
        for ep_name, module, source in dists:
            _write_dist(root, ep_name, module, source)
    return roots


@pytest.fixture
def on_path(fake_dists: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """``on_path("good")`` puts that folder's distributions on ``sys.path`` for this test."""

    def activate(kind: str) -> None:
        monkeypatch.syspath_prepend(str(fake_dists[kind]))

    try:
        yield activate
    finally:
        for name in [m for m in sys.modules if m.startswith(FAKE_PREFIX)]:
            del sys.modules[name]


# ---------------------------------------------------------------------------------------------
# fixtures: fresh managers, inline plugins
# ---------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_allow_list(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests start without the caller's allow-list; the allow-list tests set their own."""
    monkeypatch.delenv(ALLOW_ENV, raising=False)


@pytest.fixture
def pm() -> pluggy.PluginManager:
    """A fresh manager with the built-ins and no entry-point plugins."""
    return new_plugin_manager(load_entrypoints=False)


@pytest.fixture
def register_plugin() -> Iterator[RegisterPlugin]:
    """``register_plugin(pm, plugin, name)``; every plugin registered so is unregistered afterwards."""
    registered: list[tuple[pluggy.PluginManager, str]] = []

    def register(manager: pluggy.PluginManager, plugin: object, name: str) -> object:
        registered.append((manager, name))
        return manager.register(plugin, name=name)

    try:
        yield register
    finally:
        for manager, name in reversed(registered):
            if manager.has_plugin(name):
                manager.unregister(name=name)


def _plugin_names(manager: pluggy.PluginManager) -> set[str]:
    return {name for name, _ in manager.list_name_plugin()}


# ---------------------------------------------------------------------------------------------
# built-ins and specs
# ---------------------------------------------------------------------------------------------


def test_builtins_are_an_ordinary_plugin(pm: pluggy.PluginManager) -> None:
    assert _plugin_names(pm) == {BUILTIN_PLUGIN_NAME}
    assert pm.get_plugin(BUILTIN_PLUGIN_NAME) is builtin

    reg = build_registry(pm)
    assert BUILTIN_FAMILIES <= set(reg.families)
    assert BUILTIN_DECODERS <= set(reg.decoders)
    assert BUILTIN_SAMPLERS <= set(reg.samplers)
    assert BUILTIN_TEMPLATES <= set(reg.templates)
    assert set(reg.owners.values()) == {BUILTIN_PLUGIN_NAME}
    assert reg.family("llava_next_video").name == "llava_next_video"
    assert reg.template("vicuna_v1").name == "vicuna_v1"
    assert callable(reg.sampler("uniform"))


def test_unknown_name_lists_the_registered_ones(pm: pluggy.PluginManager) -> None:
    reg = build_registry(pm)
    with pytest.raises(RegistryError, match=r"unknown sampler 'nope'; registered samplers: .*uniform"):
        reg.sampler("nope")
    with pytest.raises(RegistryError, match=r"unknown family 'nope'; registered famil\w+: .*llava_next_video"):
        reg.family("nope")


def test_every_hook_has_a_spec(pm: pluggy.PluginManager) -> None:
    specced = {name for name, caller in vars(pm.hook).items() if isinstance(caller, pluggy.HookCaller)}
    assert HOOKS <= specced
    for name in HOOKS:
        caller = getattr(pm.hook, name)
        assert caller.spec is not None and caller.spec.function.__doc__, name
    assert pm.hook.resolve_family.spec.opts["firstresult"] is True
    assert pm.hook.generate_batch.spec.opts["firstresult"] is True


# ---------------------------------------------------------------------------------------------
# duplicates and spec mismatches
# ---------------------------------------------------------------------------------------------


class _DupFamily:
    @hookimpl
    def register_families(self, register: Callable[[Any], None]) -> None:
        register(Family(name="video_llava"))


class _DupDecoder:
    @hookimpl
    def register_decoders(self, register: Callable[[str, Any], None]) -> None:
        register("pyav", object())


class _DupSampler:
    @hookimpl
    def register_samplers(self, register: Callable[[str, Any], None]) -> None:
        register("uniform", lambda info, spec: None)


class _DupTemplate:
    @hookimpl
    def register_prompt_templates(self, register: Callable[[Any], None]) -> None:
        register(PromptTemplate(name="vicuna_v1"))


@pytest.mark.parametrize(
    ("plugin_cls", "kind", "name"),
    [
        (_DupFamily, "family", "video_llava"),
        (_DupDecoder, "decoder", "pyav"),
        (_DupSampler, "sampler", "uniform"),
        (_DupTemplate, "template", "vicuna_v1"),
    ],
)
def test_duplicate_name_names_both_plugins(
    pm: pluggy.PluginManager, register_plugin: RegisterPlugin, plugin_cls: type, kind: str, name: str
) -> None:
    register_plugin(pm, plugin_cls(), "dup-plugin")
    with pytest.raises(RegistryError) as excinfo:
        build_registry(pm)
    message = str(excinfo.value)
    assert f"{kind} {name!r} registered twice" in message
    assert repr(BUILTIN_PLUGIN_NAME) in message
    assert "'dup-plugin'" in message


class _RaisesHalfway:
    @hookimpl
    def register_samplers(self, register: Callable[[str, Any], None]) -> None:
        register("half_registered", lambda info, spec: None)
        raise RuntimeError("cannot reach the licence server")


class _Fine:
    @hookimpl
    def register_samplers(self, register: Callable[[str, Any], None]) -> None:
        register("fine_sampler", lambda info, spec: None)


def test_a_register_hook_that_raises_is_logged_by_name_and_skipped_whole(
    pm: pluggy.PluginManager, register_plugin: RegisterPlugin, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="videolmm.plugin.manager")
    register_plugin(pm, _RaisesHalfway(), "flaky-plugin")
    register_plugin(pm, _Fine(), "fine-plugin")
    reg = build_registry(pm)
    assert "half_registered" not in reg.samplers and "sampler:half_registered" not in reg.owners
    assert reg.owners["sampler:fine_sampler"] == "fine-plugin" and BUILTIN_SAMPLERS <= set(reg.samplers)
    (record,) = [r for r in caplog.records if "'flaky-plugin'" in r.getMessage()]
    assert "register_samplers raised" in record.getMessage() and "licence server" in (record.exc_text or "")


class _WrongArgName:
    @hookimpl
    def register_samplers(self, registrar: Callable[[str, Any], None]) -> None:
        """``registrar`` is not an argument of the spec."""


class _WrongResolveArg:
    @hookimpl
    def resolve_family(self, cfg: Mapping[str, Any]) -> str | None:
        """``cfg`` is not an argument of the spec (``config``)."""
        return None


@pytest.mark.parametrize(("plugin_cls", "bad_arg"), [(_WrongArgName, "registrar"), (_WrongResolveArg, "cfg")])
def test_wrong_argument_name_is_rejected(
    pm: pluggy.PluginManager, register_plugin: RegisterPlugin, plugin_cls: type, bad_arg: str
) -> None:
    with pytest.raises(pluggy.PluginValidationError, match=bad_arg):
        register_plugin(pm, plugin_cls(), "wrong-arg")
    assert not pm.has_plugin("wrong-arg")  # nothing half-registered


class _UnknownHook:
    @hookimpl
    def register_widgets(self, register: Callable[[Any], None]) -> None:
        """No such hook in the specs."""


def test_unknown_hook_fails_check_pending(pm: pluggy.PluginManager, register_plugin: RegisterPlugin) -> None:
    register_plugin(pm, _UnknownHook(), "unknown-hook")  # pluggy accepts it until check_pending
    with pytest.raises(pluggy.PluginValidationError, match="register_widgets"):
        pm.check_pending()


@pytest.mark.parametrize(("kind", "match"), [("badspec", "registrar"), ("unknown_hook", "register_widgets")])
def test_entry_point_spec_mismatch_fails_loudly(on_path: Callable[[str], None], kind: str, match: str) -> None:
    on_path(kind)
    with pytest.raises(pluggy.PluginValidationError, match=match):
        new_plugin_manager()


# ---------------------------------------------------------------------------------------------
# entry points: discovery, broken plugins, allow-list, idempotence
# ---------------------------------------------------------------------------------------------


def test_entry_point_plugins_load_and_a_broken_one_is_logged_and_skipped(
    on_path: Callable[[str], None], caplog: pytest.LogCaptureFixture
) -> None:
    on_path("good")
    caplog.set_level(logging.ERROR, logger="videolmm.plugin.manager")
    manager = new_plugin_manager()

    names = _plugin_names(manager)
    assert {"alpha", "beta", BUILTIN_PLUGIN_NAME} <= names
    assert "broken" not in names
    reg = build_registry(manager)
    assert reg.owners["sampler:alpha_first"] == "alpha"
    assert reg.owners["template:beta_plain"] == "beta"
    assert reg.owners["sampler:uniform"] == BUILTIN_PLUGIN_NAME

    records = [r for r in caplog.records if "'broken'" in r.getMessage()]
    assert len(records) == 1
    record = records[0]
    assert record.levelno == logging.ERROR
    assert f"{FAKE_PREFIX}broken" in record.getMessage()  # the entry point's value, to find the package
    assert record.exc_info is not None and record.exc_info[0] is ImportError


@pytest.mark.parametrize(
    ("env", "allow", "expected"),
    [
        (None, None, {"alpha", "beta"}),
        ("alpha", None, {"alpha"}),
        (" beta , alpha ,", None, {"alpha", "beta"}),
        ("", None, set()),
        ("broken", None, set()),
        ("alpha", ["beta"], {"beta"}),  # an explicit allow argument wins over the environment
    ],
)
def test_allow_list(
    on_path: Callable[[str], None],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    env: str | None,
    allow: list[str] | None,
    expected: set[str],
) -> None:
    on_path("good")
    if env is not None:
        monkeypatch.setenv(ALLOW_ENV, env)
    caplog.set_level(logging.ERROR, logger="videolmm.plugin.manager")
    manager = new_plugin_manager(allow=allow)

    names = _plugin_names(manager)
    assert names & FAKE_EPS == expected
    if env == "":
        assert names == {BUILTIN_PLUGIN_NAME}  # empty allow-list: no entry-point plugin at all
    broken_logged = any("'broken'" in r.getMessage() for r in caplog.records)
    # a plugin outside the allow-list is never imported, so the broken one only fails when allowed
    assert broken_logged == (env is None or (allow is None and "broken" in env))


def test_loading_entry_points_twice_registers_nothing_twice(on_path: Callable[[str], None]) -> None:
    on_path("good")
    manager = new_plugin_manager(load_entrypoints=False)
    first = load_entrypoint_plugins(manager)
    assert {"alpha", "beta"} <= set(first)
    before = manager.list_name_plugin()

    assert load_entrypoint_plugins(manager) == []
    assert manager.list_name_plugin() == before
    build_registry(manager)  # no duplicate registrations


def test_get_plugin_manager_is_idempotent() -> None:
    seen: list[pluggy.PluginManager] = []
    threads = [threading.Thread(target=lambda: seen.append(get_plugin_manager())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    shared = get_plugin_manager()
    assert len(seen) == 8 and all(m is shared for m in seen)

    before = shared.list_name_plugin()
    assert load_entrypoint_plugins(shared) == []
    assert shared.list_name_plugin() == before
    assert shared.get_plugin(BUILTIN_PLUGIN_NAME) is builtin


# ---------------------------------------------------------------------------------------------
# resolve_family: first non-None answer wins
# ---------------------------------------------------------------------------------------------


class _Claims:
    """Answers ``answer`` for one ``model_type``; records every call in ``calls``."""

    def __init__(self, model_type: str, answer: str, calls: list[str]) -> None:
        self.model_type, self.answer, self.calls = model_type, answer, calls

    @hookimpl
    def resolve_family(self, config: Mapping[str, Any]) -> str | None:  # fewer arguments than the spec
        self.calls.append(self.answer)
        return self.answer if config.get("model_type") == self.model_type else None


def test_resolve_family_first_result_wins(
    pm: pluggy.PluginManager, register_plugin: RegisterPlugin, tmp_path: Path
) -> None:
    from videolmm.load import detect_family

    def resolve(model_type: str) -> str | None:
        return pm.hook.resolve_family(config={"model_type": model_type}, pretrained="some/checkpoint")

    assert resolve("video_llava") == "video_llava"  # the built-in answers for its own types
    assert resolve("llava_onevision") is None
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text(json.dumps({"model_type": "llava_onevision"}), encoding="utf-8")
    with pytest.raises(ConfigError, match="llava_onevision"):
        detect_family(str(ckpt), pm=pm)

    calls: list[str] = []
    register_plugin(pm, _Claims("llava_onevision", "first_family", calls), "first")
    register_plugin(pm, _Claims("llava_onevision", "second_family", calls), "second")

    assert resolve("llava_onevision") == "second_family"
    assert calls == ["second_family"]  # last registered is called first; the call stops there

    calls.clear()
    assert resolve("video_llava") == "video_llava"  # both return None; the built-in (trylast) answers
    assert calls == ["second_family", "first_family"]

    assert detect_family(str(ckpt), pm=pm) == "second_family"

    register_plugin(pm, _Claims("llava_next_video", "my_next_video", calls), "override")
    assert resolve("llava_next_video") == "my_next_video"  # a plugin can take over a built-in type


# ---------------------------------------------------------------------------------------------
# generate_batch wrappers around a real tiny model
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from videolmm.toy.tiny import build_tiny_llava_next_video

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        return build_tiny_llava_next_video(tmp_path_factory.mktemp("tiny") / "llava_next_video", seed=0)


@pytest.fixture(scope="session")
def square_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from videolmm.toy.synthetic import write_moving_square_video

    path = tmp_path_factory.mktemp("videos") / "red_right.mp4"
    return write_moving_square_video(path, colour="red", direction="right", seed=1, num_frames=16, fps=8, size=64)


@pytest.fixture
def make_engine(tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[pluggy.PluginManager], Any]:
    """``make_engine(pm)``: the tiny checkpoint on CPU, 4 uniform frames, through that manager."""
    from videolmm.load import load_engine
    from videolmm.models.families.base import LoadOptions

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")

    def make(manager: pluggy.PluginManager) -> Any:
        return load_engine(str(tiny_checkpoint), pm=manager, num_frames=4, load=LoadOptions(device="cpu"))

    return make


def _requests(video: Path, n: int) -> list[Any]:
    from videolmm.types import GenerationSettings, Request

    gen = GenerationSettings(max_new_tokens=3)
    return [
        Request(question="What colour is the square?", videos=(str(video),), generation=gen, request_id=f"r{i}")
        for i in range(n)
    ]


@dataclasses.dataclass
class _Call:
    family: str
    batch_size: int
    seconds: float
    results: list[Any] | None
    error: BaseException | None


class _Tracer:
    """A new-style wrapper that records what it sees around every batch."""

    def __init__(self) -> None:
        self.calls: list[_Call] = []

    @hookimpl(wrapper=True)
    def generate_batch(self, engine: Any, batch: Any) -> Generator[None, Sequence[Any], Sequence[Any]]:
        start = time.perf_counter()
        try:
            results = yield
        except Exception as exc:
            self.calls.append(_Call(engine.settings.family, len(batch.items), time.perf_counter() - start, None, exc))
            raise
        self.calls.append(
            _Call(engine.settings.family, len(batch.items), time.perf_counter() - start, list(results), None)
        )
        return results


class _Brackets:
    """A wrapper that replaces the results: every text gets wrapped in angle brackets."""

    @hookimpl(wrapper=True)
    def generate_batch(self, engine: Any, batch: Any) -> Generator[None, Sequence[Any], Sequence[Any]]:
        results = yield
        return [dataclasses.replace(r, text=f"<{r.text}>") for r in results]


class _Boom:
    """A ``generate_batch`` implementation that always fails (called before the built-in)."""

    @hookimpl(tryfirst=True)
    def generate_batch(self, engine: Any, batch: Any) -> Sequence[Any] | None:
        raise RuntimeError("boom")


def test_generate_batch_wrapper_sees_real_results(
    pm: pluggy.PluginManager, register_plugin: RegisterPlugin, make_engine: Callable[..., Any], square_video: Path
) -> None:
    tracer = _Tracer()
    register_plugin(pm, tracer, "tracer")
    engine = make_engine(pm)

    results = engine.generate(_requests(square_video, 2), batch_size=2)

    assert len(tracer.calls) == 1
    call = tracer.calls[0]
    assert (call.family, call.batch_size, call.error) == ("llava_next_video", 2, None)
    assert call.seconds > 0
    assert call.results is not None and all(a is b for a, b in zip(call.results, results, strict=True))
    for i, res in enumerate(results):
        assert res.ok, res.error
        assert res.request_id == f"r{i}"
        assert isinstance(res.text, str)
        assert res.frames == ((0, 5, 10, 15),)  # uniform 4 of 16
        assert res.usage.visual_tokens == 4 * 4  # 4 tokens per frame (2x2 pooled 4x4 grid)
        assert 0 <= res.usage.completion_tokens <= 3


def test_generate_batch_wrapper_can_replace_results(
    pm: pluggy.PluginManager, register_plugin: RegisterPlugin, make_engine: Callable[..., Any], square_video: Path
) -> None:
    engine = make_engine(pm)
    plain = engine.generate(_requests(square_video, 1))[0]
    register_plugin(pm, _Brackets(), "brackets")  # hooks are looked up per call: no engine rebuild
    wrapped = engine.generate(_requests(square_video, 1))[0]
    assert plain.ok and wrapped.ok
    assert wrapped.text == f"<{plain.text}>"  # greedy: same text, wrapped


def test_generate_batch_failure_reaches_the_wrapper_and_is_isolated(
    pm: pluggy.PluginManager, register_plugin: RegisterPlugin, make_engine: Callable[..., Any], square_video: Path
) -> None:
    tracer = _Tracer()
    register_plugin(pm, tracer, "tracer")
    register_plugin(pm, _Boom(), "boom")
    engine = make_engine(pm)

    results = engine.generate(_requests(square_video, 2), batch_size=2)

    # the batch fails, then the engine retries each request alone: three calls, three errors seen
    assert [c.batch_size for c in tracer.calls] == [2, 1, 1]
    assert all(isinstance(c.error, RuntimeError) and c.results is None for c in tracer.calls)
    assert [r.request_id for r in results] == ["r0", "r1"]
    assert all(not r.ok and r.error == "RuntimeError: boom" for r in results)
