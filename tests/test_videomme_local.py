"""``videomme_local``: lmms-eval's built-in videomme code (prompt, answer extraction, scoring) on a local
Video-MME-schema file with synthetic videos, end to end through ``lmms-eval --model llava_next_video``.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_lmms_eval import response, run_cli

from videolmm.eval.markers import ERROR_PREFIX

pytestmark = pytest.mark.timeout(900)

OURS = Path(importlib.util.find_spec("videolmm.tasks").submodule_search_locations[0]) / "videomme_local"
THEIRS = Path(importlib.util.find_spec("lmms_eval").submodule_search_locations[0]) / "tasks" / "videomme"
#: Keys videomme_local sets itself (everything else must equal lmms-eval's videomme.yaml).
OVERRIDDEN = {"task", "dataset_path", "dataset_kwargs", "process_docs", "doc_to_visual", "process_results"}


class _FunctionTagLoader(yaml.SafeLoader):
    """Reads ``!function a.b`` as the string ``"!function a.b"`` so YAMLs compare as text."""


_FunctionTagLoader.add_constructor("!function", lambda loader, node: f"!function {loader.construct_scalar(node)}")


def _load(path: Path) -> dict:
    return yaml.load(path.read_text(), Loader=_FunctionTagLoader)  # noqa: S506 - a SafeLoader subclass


def _by_module_path(value):
    """lmms-eval's ``!function utils.x`` as videomme_local spells it: by module path."""
    if isinstance(value, str) and value.startswith("!function utils."):
        return value.replace("!function utils.", "!function lmms_eval.tasks.videomme.utils.")
    if isinstance(value, dict):
        return {k: _by_module_path(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_by_module_path(v) for v in value]
    return value


def test_yaml_mirrors_the_installed_lmms_eval_videomme() -> None:
    ours, theirs = _load(OURS / "videomme_local.yaml"), _by_module_path(_load(THEIRS / "videomme.yaml"))
    for key in (set(ours) | set(theirs)) - OVERRIDDEN - {"metric_list"}:
        assert ours.get(key) == theirs.get(key), (
            f"videomme_local.yaml drifted from lmms-eval's videomme.yaml at {key!r}"
        )
    assert ours["metric_list"][0] == theirs["metric_list"][0]  # lmms-eval's score and aggregation
    assert [m["metric"] for m in ours["metric_list"][1:]] == ["model_failures"]
    assert ours["doc_to_text"] == "!function lmms_eval.tasks.videomme.utils.videomme_doc_to_text"


def test_video_paths_match_lmms_eval_and_a_missing_one_is_returned(tmp_path: Path, monkeypatch) -> None:
    data = tmp_path / "videomme" / "data"
    data.mkdir(parents=True)
    (data / "vid1.mp4").write_bytes(b"x")
    (data / "vid2.mkv").write_bytes(b"x")
    code = (
        "from lmms_eval.tasks.videomme.utils import videomme_doc_to_visual as theirs\n"
        "from videolmm.tasks.videomme_local.utils import doc_to_visual as ours\n"
        "for v in ('vid1', 'vid2'):\n"
        "    assert theirs({'videoID': v}) == ours({'videoID': v}), (theirs({'videoID': v}), ours({'videoID': v}))\n"
        "print('same')\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("VIDEOLMM_VIDEOMME")}
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "HF_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.stdout.strip() == "same", out.stderr[-3000:]

    from videolmm.tasks.videomme_local.utils import doc_to_visual

    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.delenv("VIDEOLMM_VIDEOMME_VIDEO_ROOT", raising=False)
    assert doc_to_visual({"videoID": "gone"}) == [str(data / "gone.mp4")]  # lmms-eval would sys.exit here
    monkeypatch.setenv("VIDEOLMM_VIDEOMME_VIDEO_ROOT", "/videos")
    assert doc_to_visual({"videoID": "vid1"}) == ["/videos/vid1.mp4"]


def test_without_data_the_error_says_what_to_set(monkeypatch) -> None:
    import datasets

    from videolmm.tasks.openqa.sources import SourceError
    from videolmm.tasks.videomme_local.utils import load_docs

    monkeypatch.delenv("VIDEOLMM_VIDEOMME_DATA", raising=False)
    stub = datasets.Dataset.from_list([{"videolmm_source": "stub"}])
    with pytest.raises(SourceError, match="VIDEOLMM_VIDEOMME_DATA.*lmms-eval/Video-MME"):
        load_docs(stub)
    monkeypatch.setenv("VIDEOLMM_VIDEOMME_DATA", "/nowhere/videomme.txt")
    with pytest.raises(SourceError, match="expected one of"):
        load_docs(stub)


# ----------------------------------------------------------------------------- the real CLI

DOCS = [
    ("syn-001", "short", "Knowledge", "Humanity & History", "Counting Problem", "A"),
    ("syn-002", "medium", "Sports Competition", "Football", "Action Recognition", "B"),
    ("syn-003", "long", "Life Record", "Pet & Animal", "Object Recognition", "C"),
    ("syn-missing", "short", "Multilingual", "Multilingual", "OCR Problems", "D"),
]


@pytest.fixture(scope="module")
def videomme_run(tiny_llava_next_video: Path, cache_root: Path, clips, tmp_path_factory):
    root = tmp_path_factory.mktemp("videomme-local")
    videos = root / "hf" / "videomme" / "data"  # where lmms-eval's videomme looks: $HF_HOME/videomme/data
    videos.mkdir(parents=True)
    rows = []
    for i, (vid, duration, domain, sub, task_type, answer) in enumerate(DOCS):
        if vid != "syn-missing":
            shutil.copy(clips["blue_up" if i % 2 else "red_right"], videos / f"{vid}.mp4")
        rows.append(
            {
                "video_id": f"{i:03d}",
                "duration": duration,
                "domain": domain,
                "sub_category": sub,
                "url": "",
                "videoID": vid,
                "question_id": f"{i:03d}-1",
                "task_type": task_type,
                "question": "Which way does the square move?",
                "options": ["A. Left.", "B. Right.", "C. Up.", "D. Down."],
                "answer": answer,
            }
        )
    data = root / "videomme.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    results, samples, proc = run_cli(
        ["--model", "llava_next_video", "--model_args", f"pretrained={tiny_llava_next_video},device=cpu",
         "--tasks", "videomme_local", "--batch_size", "2"],
        root / "out",
        env_extra={"HF_HOME": str(root / "hf"), "VIDEOLMM_VIDEOMME_DATA": str(data)},
    )  # fmt: skip
    return results, samples["videomme_local"], rows


def test_cli_runs_lmms_eval_videomme_code_end_to_end(videomme_run) -> None:
    from lmms_eval.tasks.videomme.utils import videomme_doc_to_text, videomme_process_results

    results, samples, rows = videomme_run
    metrics = results["results"]["videomme_local"]
    assert results["n-samples"]["videomme_local"]["effective"] == len(DOCS) == len(samples)
    assert metrics["model_failures,none"] == 1
    kwargs = results["configs"]["videomme_local"]["lmms_eval_specific_kwargs"]["default"]
    correct = 0.0
    for s in sorted(samples, key=lambda s: s["doc_id"]):
        row = rows[s["doc_id"]]
        assert s["input"] == videomme_doc_to_text(row, kwargs)  # lmms-eval's prompt, verbatim
        text = response(s)
        if row["videoID"] == "syn-missing":
            assert text.startswith(ERROR_PREFIX + "MediaNotFound") and "syn-missing.mp4" in text
            assert s["model_failures"]["failed"] is True
        else:
            assert not text.startswith(ERROR_PREFIX), text
            assert s["model_failures"]["failed"] is False
        # lmms-eval's own scoring of this sample, recomputed from the logged answer
        assert s["videomme_perception_score"] == videomme_process_results(row, [text])["videomme_perception_score"]
        correct += s["videomme_perception_score"]["score"]
    assert metrics["videomme_perception_score,none"] == pytest.approx(100 * correct / len(DOCS))
