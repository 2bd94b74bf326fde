"""lmms-eval integration: the real CLI in subprocesses, asserting on the results files.

lmms-eval's CLI exits 0 even when a run fails, so every test reads results JSON and samples
JSONL instead of trusting the exit code.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from videolmm.eval.model import ERROR_PREFIX

VENV_BIN = Path(sys.executable).parent

pytestmark = pytest.mark.timeout(900)


def run_cli(args: list[str], out: Path, env_extra: dict[str, str] | None = None, launcher: list[str] | None = None):
    """Run lmms-eval; return (results dict, samples list per task, completed process)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **(env_extra or {})}
    cmd = (launcher or [str(VENV_BIN / "lmms-eval")]) + args + ["--output_path", str(out), "--log_samples"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=800)
    results_files = sorted(out.rglob("*_results.json"))
    assert results_files, f"no results file; lmms-eval said:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    results = json.loads(results_files[-1].read_text())
    samples: dict[str, list[dict]] = {}
    for f in out.rglob("*_samples_*.jsonl"):
        task = f.stem.split("_samples_", 1)[1]
        samples[task] = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
    return results, samples, proc


def response(sample: dict) -> str:
    resp = sample["filtered_resps"]
    return resp[0] if isinstance(resp, list) else resp


@pytest.fixture(scope="module")
def demo_run(tiny_llava_next_video: Path, cache_root: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("demo-run")
    return run_cli(
        [
            "--model", "llava_next_video",
            "--model_args", f"pretrained={tiny_llava_next_video},device=cpu,max_frames_num=8",
            "--tasks", "videolmm_demo,videolmm_demo_mc",
            "--batch_size", "4",
        ],
        out,
    )  # fmt: skip


def test_cli_llava_next_video_on_demo(demo_run) -> None:
    results, samples, _ = demo_run
    demo = results["results"]["videolmm_demo"]
    assert {"exact_match,none", "colour_acc,none", "direction_acc,none"} <= set(demo)
    assert results["n-samples"]["videolmm_demo"]["effective"] == 8
    assert len(samples["videolmm_demo"]) == 8
    for s in samples["videolmm_demo"]:
        assert not response(s).startswith(ERROR_PREFIX), response(s)
        # prompt tokens include 8 frames × 4 pooled tokens (tiny CLIP 4×4 grid, stride 2)
        assert s["token_counts"][0]["input_tokens"] > 32


@pytest.fixture(scope="module")
def chat_run(tiny_llava_next_video: Path, cache_root: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("chat-run")
    return run_cli(
        [
            "--model", "llava_next_video_chat",
            "--model_args", f"pretrained={tiny_llava_next_video},device=cpu,max_frames_num=8",
            "--tasks", "videolmm_demo,videolmm_demo_chat",
            "--batch_size", "4",
        ],
        out,
    )  # fmt: skip


def test_chat_class_answers_a_simple_task_as_the_simple_class_does(demo_run, chat_run) -> None:
    """lmms-eval builds the messages from doc_to_visual/doc_to_text: same requests, same answers."""
    _, simple, _ = demo_run
    _, chat, _ = chat_run
    by_doc = {s["doc_id"]: s for s in simple["videolmm_demo"]}
    assert len(chat["videolmm_demo"]) == 8
    for s in chat["videolmm_demo"]:
        assert response(s) == response(by_doc[s["doc_id"]])
        assert s["token_counts"][0]["input_tokens"] == by_doc[s["doc_id"]]["token_counts"][0]["input_tokens"]


def test_chat_task_with_an_image_and_a_video_per_message_runs(demo_run, chat_run) -> None:
    results, samples, _ = chat_run
    _, simple, _ = demo_run
    assert results["n-samples"]["videolmm_demo_chat"]["effective"] == 8
    assert {"exact_match,none", "colour_acc,none"} <= set(results["results"]["videolmm_demo_chat"])
    video_only = {s["doc_id"]: s["token_counts"][0]["input_tokens"] for s in simple["videolmm_demo"]}
    for s in samples["videolmm_demo_chat"]:
        assert not response(s).startswith(ERROR_PREFIX), response(s)
        assert s["token_counts"][0]["input_tokens"] > video_only[s["doc_id"]]  # the image's tokens too


def test_cli_multiple_choice_uses_loglikelihood(demo_run) -> None:
    results, samples, _ = demo_run
    assert 0.0 <= results["results"]["videolmm_demo_mc"]["acc,none"] <= 1.0
    from videolmm.tasks.synthetic.utils import doc_to_choice

    for s in samples["videolmm_demo_mc"]:
        # the sample log writes numbers as strings; lmms-eval 0.7 ranks by argmin, so we hand it -logprob
        lls = [-float(r[0]) for r in s["filtered_resps"]]
        choices = doc_to_choice(
            {"kind": "colour" if s["target"] in ("red", "green", "blue", "yellow", "magenta", "cyan") else "direction"}
        )
        assert len(lls) == len(choices) and all(x < 0 for x in lls)
        assert len(set(lls)) > 1  # different choices, different likelihoods
        # lmms-eval computed acc from the (logprob, is_greedy) tuples it received intact
        assert s["acc"] == float(choices[lls.index(max(lls))] == s["target"])


def test_cli_generic_id_detects_video_llava(tiny_video_llava: Path, cache_root: Path, tmp_path: Path) -> None:
    results, samples, _ = run_cli(
        ["--model", "videolmm", "--model_args", f"pretrained={tiny_video_llava},device=cpu",
         "--tasks", "videolmm_demo", "--batch_size", "2", "--limit", "4"],
        tmp_path,
    )  # fmt: skip
    assert results["results"]["videolmm_demo"]["exact_match,none"] >= 0.0
    assert len(samples["videolmm_demo"]) == 4
    for s in samples["videolmm_demo"]:
        assert not response(s).startswith(ERROR_PREFIX), response(s)
        assert s["token_counts"][0]["input_tokens"] > 17 * 8  # 8 frames × (16 patches + CLS)


def test_corrupt_video_fails_only_its_sample(
    tiny_llava_next_video: Path, cache_root: Path, broken_video: Path, tmp_path: Path
) -> None:
    """A task variant via --include_path (the documented alternative to the bridge)."""
    import videolmm.tasks

    base = Path(videolmm.tasks.__file__).parent / "synthetic" / "videolmm_demo.yaml"
    docs = [json.loads(line) for line in (base.parent / "demo.jsonl").read_text().splitlines()[:4]]
    docs[1]["video"] = str(broken_video)
    docs[2]["video"] = str(tmp_path / "missing.mp4")
    task_dir = tmp_path / "tasks"
    task_dir.mkdir()
    (task_dir / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (task_dir / "broken_demo.yaml").write_text(
        f"include: {base}\ntask: videolmm_demo_broken\ndataset_kwargs:\n  data_files:\n    test: docs.jsonl\n"
    )
    results, samples, _ = run_cli(
        ["--model", "llava_next_video", "--model_args", f"pretrained={tiny_llava_next_video},device=cpu",
         "--tasks", "videolmm_demo_broken", "--include_path", str(task_dir), "--batch_size", "4"],
        tmp_path / "out",
    )  # fmt: skip
    by_id = {s["doc_id"]: response(s) for s in samples["videolmm_demo_broken"]}
    assert len(by_id) == 4
    assert by_id[1].startswith(ERROR_PREFIX) and str(broken_video) in by_id[1]
    assert by_id[2].startswith(ERROR_PREFIX + "MediaNotFound") and "missing.mp4" in by_id[2]
    assert not by_id[0].startswith(ERROR_PREFIX) and not by_id[3].startswith(ERROR_PREFIX)
    assert "exact_match,none" in results["results"]["videolmm_demo_broken"]


def test_accelerate_two_processes_shard_by_rank(tiny_llava_next_video: Path, cache_root: Path, tmp_path: Path) -> None:
    # On CPU, accelerate's multi-process launcher is `--multi_gpu` with ACCELERATE_USE_CPU (gloo backend);
    # plain `--cpu --num_processes 2` silently runs one process.
    launcher = [str(VENV_BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "lmms_eval"]  # fmt: skip
    results, samples, proc = run_cli(
        ["--model", "llava_next_video",
         "--model_args", f"pretrained={tiny_llava_next_video},device=cpu,max_frames_num=4",
         "--tasks", "videolmm_demo", "--batch_size", "2"],
        tmp_path,
        env_extra={"OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true", "VIDEOLMM_LOG_LEVEL": "INFO"},
        launcher=launcher,
    )  # fmt: skip
    assert sorted(s["doc_id"] for s in samples["videolmm_demo"]) == list(range(8))
    assert results["n-samples"]["videolmm_demo"]["effective"] == 8
    log = proc.stdout + proc.stderr
    # each rank logs the share of requests it generated: 4 + 4
    assert "videolmm rank 0/2: 4 generate_until requests" in log, log[-3000:]
    assert "videolmm rank 1/2: 4 generate_until requests" in log


# ----------------------------------------------------------------------------- in-process checks


def test_our_ids_never_replace_lmms_eval_builtins() -> None:
    from lmms_eval import models

    from videolmm.eval.manifests import CHAT_MODEL_IDS, MODEL_IDS

    builtin = set(models.AVAILABLE_SIMPLE_MODELS) | set(getattr(models, "AVAILABLE_CHAT_TEMPLATE_MODELS", {}))
    assert not (set(MODEL_IDS) | set(CHAT_MODEL_IDS)) & builtin
    for mid, path in MODEL_IDS.items():  # and lmms-eval resolves ours to our classes
        resolved = models.MODEL_REGISTRY_V2.resolve(mid)
        assert (resolved.class_path, resolved.model_type) == (path, "simple")
    for mid, path in CHAT_MODEL_IDS.items():
        resolved = models.MODEL_REGISTRY_V2.resolve(mid)
        assert (resolved.class_path, resolved.model_type) == (path, "chat")
        models.get_model(mid)  # imports the class and passes lmms-eval's is_simple check


def test_task_bridge_indexes_our_tasks_and_is_idempotent() -> None:
    import lmms_eval.models  # noqa: F401 - loading the model entry points installs the bridge
    from lmms_eval.tasks import TaskManager

    from videolmm.eval import task_bridge

    assert task_bridge.install() is True  # already installed: no second wrapper
    inner = TaskManager.initialize_tasks.__wrapped__
    assert not getattr(inner, "__videolmm_task_bridge__", False)
    tm = TaskManager("ERROR")
    assert {"videolmm_demo", "videolmm_demo_mc"} <= set(tm.all_tasks)
    assert "videomme" in tm.all_tasks  # defaults still there
    only_ours = TaskManager("ERROR", include_path=task_bridge.task_folders()[0], include_defaults=False)
    assert "videomme" not in only_ours.all_tasks


def test_model_discovery_stays_torch_free_and_the_bridge_arrives_with_the_tasks_module() -> None:
    """``import lmms_eval.models`` runs our entry point; neither it nor the bridge may import torch."""
    script = (
        "import sys\n"
        "import lmms_eval.models as m\n"
        "assert 'torch' not in sys.modules, 'model discovery imported torch'\n"
        "assert m.MODEL_REGISTRY_V2.resolve('llava_next_video').class_path.startswith('videolmm.')\n"
        "from lmms_eval.tasks import TaskManager\n"
        "assert getattr(TaskManager.initialize_tasks, '__videolmm_task_bridge__', False), 'bridge missing'\n"
        "print('ok')\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]


def test_task_bridge_refuses_unknown_versions(monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    from videolmm.eval import task_bridge

    class FakeTaskManager:
        def initialize_tasks(self, include_path=None, include_defaults=True):
            return include_path

    monkeypatch.setattr(task_bridge, "version", lambda name: "0.9.0")
    assert task_bridge.install(FakeTaskManager) is False
    assert "--include_path" in caplog.text
    monkeypatch.setattr(task_bridge, "version", lambda name: "0.7.3")
    assert task_bridge.install(FakeTaskManager) is True
    assert task_bridge.task_folders()[0] in FakeTaskManager().initialize_tasks(include_path="/x")
    task_bridge.uninstall(FakeTaskManager)
    assert FakeTaskManager().initialize_tasks(include_path="/x") == "/x"


def test_loglikelihood_shim_survives_the_pinned_evaluator() -> None:
    from lmms_eval.api.instance import unwrap_generation_output

    from videolmm.eval.compat import loglikelihood_output

    assert unwrap_generation_output(loglikelihood_output(-2.5, True))[0] == (2.5, True)


def test_model_class_direct(tiny_llava_next_video: Path) -> None:
    from videolmm.eval.model import LlavaNextVideo, generation_from_kwargs, split_visuals

    lm = LlavaNextVideo(pretrained=str(tiny_llava_next_video), device="cpu", conv_template="vicuna_v1",
                        num_frames=4, mm_spatial_pool_stride=1)  # fmt: skip
    assert lm.engine.settings.media.sampling.num_frames == 4
    assert lm.engine.config.spatial_pool_stride == 1
    with pytest.raises(NotImplementedError, match="multi-round"):
        lm.generate_until_multi_round([])
    with pytest.raises(Exception, match="family"):
        LlavaNextVideo(pretrained=str(tiny_llava_next_video), device="cpu", family="video_llava")
    gen = generation_from_kwargs({"until": "\n", "max_new_tokens": 5, "temperature": 0.7, "do_sample": True}, 9)
    assert (gen.stop, gen.max_new_tokens, gen.temperature) == (("\n",), 5, 0.7)
    videos, images = split_visuals(["a.mp4", "b.PNG", "frames_dir"])
    assert videos == ("a.mp4", "frames_dir") and images == ("b.PNG",)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__]))
