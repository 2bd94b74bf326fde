"""lmms-eval's injected ``until``: ignored; a task's own ``until``: applied (issue 16, item 3).

The end-to-end test runs real lmms-eval tasks (``simple_evaluate`` in-process, real YAML task
configs through its ``TaskManager``) on the tiny checkpoint. lmms-eval injects ``[fewshot_delimiter]``
into a task that sets no ``until``; the test sets that delimiter to a piece of the model's own
answer, so a run that honoured the injected value would cut the answer there.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from videolmm.eval.requests import generation_from_kwargs
from videolmm.eval.until import InjectedUntil, install, task_stop

SYNTHETIC = Path(__file__).resolve().parents[1] / "videolmm" / "tasks" / "synthetic"


def test_the_injected_until_is_marked_and_a_tasks_own_is_not() -> None:
    from lmms_eval.api.task import TaskConfig

    assert install() and install()  # idempotent
    none_set = TaskConfig(task="a", output_type="generate_until", generation_kwargs={"max_new_tokens": 4})
    no_kwargs = TaskConfig(task="b", output_type="generate_until")
    own = TaskConfig(task="c", output_type="generate_until", generation_kwargs={"until": ["\n\n"]})
    own_empty = TaskConfig(task="d", output_type="generate_until", generation_kwargs={"until": []})
    assert none_set.generation_kwargs["until"] == ["\n\n"]  # lmms-eval still sees its value
    assert isinstance(none_set.generation_kwargs["until"], InjectedUntil)
    assert isinstance(no_kwargs.generation_kwargs["until"], InjectedUntil)
    assert type(own.generation_kwargs["until"]) is list
    # lmms-eval deep-copies generation_kwargs into every request: the mark survives
    copied = copy.deepcopy(none_set.generation_kwargs)
    assert task_stop(copied) == () and generation_from_kwargs(copied, 16).stop == ()
    assert task_stop(copy.deepcopy(own.generation_kwargs)) == ("\n\n",)
    assert task_stop(own_empty.generation_kwargs) == ()
    assert task_stop({"until": "###"}) == ("###",)  # --gen_kwargs until=### replaces the value


@pytest.fixture(scope="module")
def task_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("until-tasks")
    (folder / "utils.py").write_text("from videolmm.tasks.synthetic.utils import doc_to_text, doc_to_visual\n")
    return folder


def write_task(folder: Path, name: str, generation: str, extra: str = "") -> None:
    (folder / f"{name}.yaml").write_text(
        f"task: {name}\ndataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {SYNTHETIC / 'demo.jsonl'}\n"
        "test_split: test\noutput_type: generate_until\n"
        "doc_to_visual: !function utils.doc_to_visual\ndoc_to_text: !function utils.doc_to_text\n"
        "doc_to_target: answer\nmetric_list:\n  - metric: exact_match\n"
        f"{generation}{extra}"
    )


def answers(model, folder: Path, tasks: list[str]) -> dict[str, list[str]]:
    from lmms_eval.evaluator import simple_evaluate
    from lmms_eval.tasks import TaskManager

    out = simple_evaluate(
        model=model,
        tasks=tasks,
        limit=3,
        task_manager=TaskManager(include_path=str(folder), include_defaults=False),
        log_samples=True,
        predict_only=True,
        bootstrap_iters=0,
    )
    samples = out["samples"]
    return {t: [s["resps"][0][0] for s in sorted(samples[t], key=lambda s: s["doc_id"])] for t in tasks}


def test_a_task_without_until_is_not_cut_at_lmms_evals_default(tiny_llava_next_video: Path, task_folder: Path) -> None:
    from videolmm.eval.model import VideoLMM

    model = VideoLMM(pretrained=str(tiny_llava_next_video), device="cpu", max_frames_num=4, batch_size=3)
    write_task(task_folder, "u16_free", "generation_kwargs:\n  max_new_tokens: 12\n  until: []\n")
    free = answers(model, task_folder, ["u16_free"])["u16_free"]
    row, text = max(enumerate(free), key=lambda p: len(p[1].strip()))
    text = text.strip()
    assert len(text) >= 3, free
    cut = text[len(text) // 2 :][:2]  # a piece of the answer after its start
    literal = cut.replace("\\", "\\\\").replace('"', '\\"')
    # no until: lmms-eval injects [fewshot_delimiter] = [cut]; with it set by the task: applied
    write_task(
        task_folder, "u16_injected", "generation_kwargs:\n  max_new_tokens: 12\n", f'fewshot_delimiter: "{literal}"\n'
    )
    write_task(task_folder, "u16_own", f'generation_kwargs:\n  max_new_tokens: 12\n  until: ["{literal}"]\n')
    got = answers(model, task_folder, ["u16_injected", "u16_own"])
    assert got["u16_injected"][row].strip() == text  # not cut at the injected value
    assert got["u16_own"][row].strip() == text[: text.index(cut)].strip()  # the task's own until applies


def test_the_separator_stops_where_it_is_text_not_the_eos(tiny_llava_next_video: Path) -> None:
    """mistral_direct's ``<|im_end|>`` is plain text to a tokenizer without it (Mistral's: 7B-32K): the
    seeds stop there, so the request gets it as a stop string; ``</s>`` is the EOS and needs none."""
    from lmms_eval.api.instance import Instance

    from videolmm.eval.model import VideoLMM

    def stops(template: str) -> tuple[str, ...]:
        model = VideoLMM(pretrained=str(tiny_llava_next_video), device="cpu", conv_template=template)
        args = ("Q?", {"max_new_tokens": 4, "until": InjectedUntil(["\n\n"])}, None, 0, "t", "test")
        return model._to_request(
            Instance("generate_until", args, 0, {"task": "t", "doc_id": 0, "repeats": 1})
        ).generation.stop

    assert stops("mistral_direct") == ("<|im_end|>",)
    assert stops("vicuna_v1") == ()


def test_the_marker_patches_only_the_lmms_eval_versions_it_was_tested_with(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from dataclasses import dataclass, field

    from videolmm.eval import until

    @dataclass
    class FakeTaskConfig:
        generation_kwargs: dict | None = field(default=None)

        def __post_init__(self) -> None:
            if self.generation_kwargs is None:
                self.generation_kwargs = {"until": ["\n\n"]}

    original = FakeTaskConfig.__post_init__
    monkeypatch.setattr(until, "version", lambda name: "0.9.0")
    assert until.install(FakeTaskConfig) is False and FakeTaskConfig.__post_init__ is original
    assert "injected until=[fewshot_delimiter] stays applied" in caplog.text
    monkeypatch.setattr(until, "version", lambda name: "0.7.3")
    assert until.install(FakeTaskConfig) is True
    assert isinstance(FakeTaskConfig().generation_kwargs["until"], InjectedUntil)
    until.uninstall(FakeTaskConfig)
    assert FakeTaskConfig.__post_init__ is original
