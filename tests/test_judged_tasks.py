"""The judged QA tasks (zeroshot_qa/, hound_qa/): data sources in the seeds' layouts, and a run of each
family through the real lmms-eval CLI against a local judge server (real HTTP, the real openai client).

The judge's verdicts depend only on the ground-truth answers written here (see ``FakeJudge``), so the
expected accuracies, scores and failure counts are known exactly whatever the tiny model answers.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from test_judge import FakeJudge
from test_lmms_eval import response, run_cli

from videolmm.errors import MediaNotFound
from videolmm.eval.markers import ERROR_PREFIX
from videolmm.tasks.openqa.sources import SourceError, data_root, read_source, resolve_video

pytestmark = pytest.mark.timeout(900)

JUDGE_MODEL = "judge-cli-1"

# (video name, question, answer) per zero-shot dataset; a None video is never written (missing).
ZEROSHOT = {
    "MSVD_Zero_Shot_QA": (
        "videos",
        [
            ("vid_a", "what colour is the square?", "good red"),
            ("vid_b", "where does it move?", "bad left"),
            ("vid_c", "is it moving?", "junk"),
            (None, "what is missing?", "good gone"),
            ("vid_d", "how many squares?", "rate-limited good one"),
        ],
    ),
    "MSRVTT_Zero_Shot_QA": (
        "videos/all",
        [("video7010", "what is shown?", "good a"), ("video7011", "who?", "flaky bad")],
    ),
    "TGIF_Zero_Shot_QA": ("mp4", [("tumblr_a", "what happens?", "down"), ("tumblr_b", "what is it?", "good b")]),
}
HOUND_OFFICIAL = [("good yes", None), ("bad no", None), ("junk", None)]
HOUND_CAPTION = [("good", "a red square"), ("bad", "a blue square"), ("majority", "green"), ("junk", "cyan")]


def _write_frames(folder: Path, colour: str, seed: int) -> None:
    from PIL import Image

    from videolmm.toy.synthetic import moving_square_frames

    folder.mkdir(parents=True)
    for i, frame in enumerate(moving_square_frames(colour=colour, direction="right", seed=seed, num_frames=8)):
        Image.fromarray(frame).save(folder / f"c01_{i + 1:04d}.jpeg")


@pytest.fixture(scope="module")
def qa_data(tmp_path_factory: pytest.TempPathFactory, clips: dict[str, Path]) -> dict[str, Path]:
    """Local copies in the seeds' layouts: Video-LLaVA's GPT_Zero_Shot_QA and LLaVA-Hound's DATA_DIR."""
    root = tmp_path_factory.mktemp("qa-data")
    zs = root / "GPT_Zero_Shot_QA"
    for folder, (videos, rows) in ZEROSHOT.items():
        (zs / folder / videos).mkdir(parents=True)
        qs, ans = [], []
        for i, (video, question, answer) in enumerate(rows):
            name = video or f"missing_{i}"
            qs.append({"video_name": name, "question": question, "question_id": f"{folder}_{i}"})
            ans.append({"answer": answer, "question_id": f"{folder}_{i}"})
            if video:
                shutil.copy(clips["red_right"], zs / folder / videos / f"{video}.mp4")
        (zs / folder / "test_q.json").write_text(json.dumps(qs))
        (zs / folder / "test_a.json").write_text(json.dumps(ans))
    hound = root / "hound"
    tests = hound / "video_instruction" / "test"
    tests.mkdir(parents=True)
    for name, rows in (("msvd.qa.official.jsonl", HOUND_OFFICIAL), ("webvid.qa.jsonl", HOUND_CAPTION)):
        lines = []
        for i, (answer, caption) in enumerate(rows):
            video = f"test/{name.split('.')[0]}/clip{i}"
            _write_frames(hound / "video_data" / video, colour="red", seed=i)
            row = {
                "id": f"{name.split('.')[0]}_{i}",
                "video": video,
                "conversations": [
                    {"from": "human", "value": f"<video>\nWhat is in clip {i}?"},
                    {"from": "gpt", "value": answer},
                ],
            }
            if caption:
                row["caption"] = caption
            lines.append(json.dumps(row))
        (tests / name).write_text("\n".join(lines) + "\n")
    return {"zeroshot": zs, "hound": hound}


# ----------------------------------------------------------------------------- sources, in process


def test_video_llava_layout_is_joined_by_position(qa_data) -> None:
    from videolmm.tasks.zeroshot_qa.utils import SOURCES

    docs = read_source(SOURCES["msrvtt_qa"], {"VIDEOLMM_ZEROSHOT_QA_ROOT": str(qa_data["zeroshot"])})
    assert [(d["id"], d["question"], d["answer"], d["video"]) for d in docs] == [
        ("MSRVTT_Zero_Shot_QA_0", "what is shown?", "good a", "video7010"),
        ("MSRVTT_Zero_Shot_QA_1", "who?", "flaky bad", "video7011"),
    ]
    video = resolve_video(docs[0], None, (".avi", ".mp4"))
    assert video == str(qa_data["zeroshot"] / "MSRVTT_Zero_Shot_QA" / "videos" / "all" / "video7010.mp4")
    assert resolve_video(docs[0], {"video_root": "/elsewhere"}, ()) == "/elsewhere/video7010"  # a task argument wins


def test_missing_video_names_every_candidate(qa_data) -> None:
    from videolmm.tasks.zeroshot_qa.utils import SOURCES, doc_to_visual

    docs = read_source(SOURCES["msvd_qa"], {"VIDEOLMM_ZEROSHOT_QA_ROOT": str(qa_data["zeroshot"])})
    with pytest.raises(MediaNotFound, match=r"videos/missing_3\.\*.*missing_3\.mp4, missing_3\.avi"):
        doc_to_visual(docs[3])


def test_mismatched_question_and_answer_files_are_refused(tmp_path: Path) -> None:
    from videolmm.tasks.zeroshot_qa.utils import SOURCES

    folder = tmp_path / "TGIF_Zero_Shot_QA"
    folder.mkdir()
    (folder / "test_q.json").write_text(json.dumps([{"video_name": "a", "question": "q", "question_id": 1}]))
    (folder / "test_a.json").write_text(json.dumps([{"answer": "x", "question_id": 2}]))
    with pytest.raises(SourceError, match="question_id 1 != answer's 2"):
        read_source(SOURCES["tgif_qa"], {"VIDEOLMM_ZEROSHOT_QA_ROOT": str(tmp_path)})


def test_rows_given_by_a_yaml_override_are_normalised(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    from videolmm.tasks.zeroshot_qa.utils import SOURCES, doc_to_visual, msvd_qa_docs

    monkeypatch.delenv("VIDEOLMM_ZEROSHOT_QA_ROOT", raising=False)
    rows = datasets.Dataset.from_list([{"video_name": "v9", "question": "q?", "question_id": 9, "answer": "a"}])
    (doc,) = list(msvd_qa_docs(rows))
    assert (doc["id"], doc["question"], doc["answer"], doc["video_root"]) == ("9", "q?", "a", "")
    with pytest.raises(SourceError, match="no video root"):
        doc_to_visual(doc)
    with pytest.raises(MediaNotFound, match="/data/v9"):  # the task argument is used
        doc_to_visual(doc, {"video_root": "/data"})
    assert SOURCES["msvd_qa"].root_env == "VIDEOLMM_ZEROSHOT_QA_ROOT"


def test_without_a_local_copy_the_error_says_what_to_set() -> None:
    from videolmm.tasks.zeroshot_qa.utils import SOURCES

    with pytest.raises(SourceError, match="VIDEOLMM_ZEROSHOT_QA_ROOT.*Google Drive"):
        data_root(SOURCES["msvd_qa"], {})


def test_hound_default_is_the_seed_hub_dataset() -> None:
    from videolmm.tasks.hound_qa.utils import CAPTIONED, OFFICIAL

    assert {s.hub_repo for s in (*OFFICIAL.values(), *CAPTIONED.values())} == {
        "ShareGPTVideo/test_video_and_instruction"
    }
    assert OFFICIAL["tgif"].files == ("video_instruction/test/tgif.qa.official.jsonl",)
    assert CAPTIONED["ssv2"].files == ("video_instruction/test/ssv2.qa.jsonl",)
    # the session is offline (conftest): the hub fetch fails and the error names the way out
    with pytest.raises(SourceError, match="ShareGPTVideo/test_video_and_instruction.*VIDEOLMM_HOUND_ROOT"):
        data_root(OFFICIAL["msvd"], {})


def test_a_hub_snapshot_without_frames_is_reported_when_the_task_is_built(
    qa_data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The hub route fetches the annotation files only: with no video root set, say so up front."""
    import logging

    from videolmm.tasks.hound_qa.utils import OFFICIAL
    from videolmm.tasks.openqa import sources

    snapshot = tmp_path / "snapshot"  # what hf_hub_download leaves: the annotations, no video_data/
    shutil.copytree(qa_data["hound"] / "video_instruction", snapshot / "video_instruction")
    monkeypatch.setattr(sources, "_hub_root", lambda source: snapshot)  # the hub itself is unreachable here
    caplog.set_level(logging.WARNING, logger=sources.__name__)
    assert read_source(OFFICIAL["msvd"], {})
    assert "VIDEOLMM_HOUND_VIDEO_ROOT" in caplog.text and str(snapshot / "video_data") in caplog.text
    caplog.clear()
    assert read_source(OFFICIAL["msvd"], {"VIDEOLMM_HOUND_VIDEO_ROOT": str(tmp_path)})
    assert not caplog.records  # a configured video root: nothing to say


def test_hound_rows_are_normalised_like_the_seed(qa_data) -> None:
    from videolmm.tasks.hound_qa.utils import CAPTIONED, OFFICIAL

    env = {"VIDEOLMM_HOUND_ROOT": str(qa_data["hound"])}
    doc = read_source(OFFICIAL["msvd"], env)[0]
    assert (doc["question"], doc["answer"], doc["caption"]) == ("What is in clip 0?", "good yes", None)
    assert resolve_video(doc, None) == str(qa_data["hound"] / "video_data" / "test" / "msvd" / "clip0")
    env["VIDEOLMM_HOUND_VIDEO_ROOT"] = "/frames"
    assert resolve_video(read_source(OFFICIAL["msvd"], env)[0], None) == "/frames/test/msvd/clip0"
    with pytest.raises(SourceError, match="lack the caption"):
        read_source(replace(CAPTIONED["msvd"], files=OFFICIAL["msvd"].files), env)


# ----------------------------------------------------------------------------- the real CLI

TASKS = "zeroshot_qa,hound_msvd_qa_official,hound_webvid_qa"


def _cli(ckpt: Path, out: Path, judge: FakeJudge, data: dict[str, Path], cache: Path):
    env = {
        "VIDEOLMM_ZEROSHOT_QA_ROOT": str(data["zeroshot"]),
        "VIDEOLMM_HOUND_ROOT": str(data["hound"]),
        "VIDEOLMM_JUDGE_BASE_URL": judge.base_url,
        "VIDEOLMM_JUDGE_MODEL": JUDGE_MODEL,
        "VIDEOLMM_JUDGE_API_KEY": "test-key",
        "VIDEOLMM_JUDGE_CACHE": str(cache),
        "VIDEOLMM_JUDGE_MAX_ATTEMPTS": "3",
        "VIDEOLMM_JUDGE_BACKOFF": "0.01",
        "NO_PROXY": "127.0.0.1,localhost",  # the judge is on loopback, whatever proxy the machine has
    }
    args = ["--model", "llava_next_video", "--model_args", f"pretrained={ckpt},device=cpu,max_frames_num=4",
            "--tasks", TASKS, "--batch_size", "4", "--gen_kwargs", "max_new_tokens=4"]  # fmt: skip
    return run_cli(args, out, env_extra=env)


@pytest.fixture(scope="module")
def judged_runs(tiny_llava_next_video: Path, cache_root: Path, qa_data, tmp_path_factory):
    """The same run twice with one judge cache: (first results, first samples, second results, requests)."""
    cache = tmp_path_factory.mktemp("judge-cache") / "judge.sqlite"
    with FakeJudge() as judge:
        first, samples, _ = _cli(tiny_llava_next_video, tmp_path_factory.mktemp("run1"), judge, qa_data, cache)
        after_first = judge.count()
        down_first = judge.prompts_with("Correct Answer: down")
        second, samples2, _ = _cli(tiny_llava_next_video, tmp_path_factory.mktemp("run2"), judge, qa_data, cache)
        calls = {"first": after_first, "second": judge.count() - after_first, "down_first": down_first}
    return first, samples, second, samples2, calls


def _metrics(results: dict, task: str) -> dict:
    return {k.split(",")[0]: v for k, v in results["results"][task].items() if k.endswith(",none")}


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        # 5 docs: yes 4, no 1, junk (parse failure), missing video (model failure), 429 then yes 4
        (
            "msvd_qa",
            {"accuracy": 200 / 3, "score": 3.0, "judge_failures": 0, "parse_failures": 1, "model_failures": 1},
        ),
        ("msrvtt_qa", {"accuracy": 50.0, "score": 2.5, "judge_failures": 0, "parse_failures": 0, "model_failures": 0}),
        # the judge is down for one doc: a judge failure, not a "no"
        ("tgif_qa", {"accuracy": 100.0, "score": 4.0, "judge_failures": 1, "parse_failures": 0, "model_failures": 0}),
        # "I cannot judge..." holds "no" (in "cannot"): the seed's raw-reply rule counts it, with no score
        ("hound_msvd_qa_official", {"accuracy": 100 / 3, "score": 2.5, "judge_failures": 0, "parse_failures": 1}),
        # Score 4, Score 2, majority vote 3, no number at all (a parse failure, not the seed's default 1)
        ("hound_webvid_qa", {"accuracy": 200 / 3, "score": 3.0, "judge_failures": 0, "parse_failures": 1}),
    ],
)
def test_cli_scores_each_family_as_the_seeds_do(judged_runs, task: str, expected: dict) -> None:
    first, _, second, _, _ = judged_runs
    got = _metrics(first, task)
    assert got["judge_model"] == JUDGE_MODEL
    for name, value in expected.items():
        assert got[name] == pytest.approx(value), (name, got)
    assert _metrics(second, task) == got  # the cached re-run scores the same


def test_cli_group_is_the_unweighted_mean(judged_runs) -> None:
    group = _metrics(judged_runs[0], "zeroshot_qa")
    assert group["accuracy"] == pytest.approx((200 / 3 + 50 + 100) / 3)
    assert group["score"] == pytest.approx((3.0 + 2.5 + 4.0) / 3)


def test_cli_rerun_hits_the_cache(judged_runs) -> None:
    _, _, _, samples2, calls = judged_runs
    # first run: 5 + 3 + (3 attempts + 1) + 3 + 4 requests; the re-run asks only about the failed call again
    assert calls["first"] == 19 and calls["down_first"] == 3
    assert calls["second"] == 3
    cached = [s["accuracy"]["cached"] for task in samples2.values() for s in task if s["accuracy"]["judge_reply"]]
    assert cached and all(cached)


def test_cli_samples_carry_the_verdict_and_the_judge(judged_runs) -> None:
    _, samples, _, _, _ = judged_runs
    msvd = {s["accuracy"]["id"]: s for s in samples["msvd_qa"]}  # the samples log keeps no doc; the record has its id
    assert len(msvd) == 5
    missing = msvd["MSVD_Zero_Shot_QA_3"]
    text = response(missing)
    assert text.startswith(ERROR_PREFIX + "MediaNotFound") and "missing_3.mp4" in text
    record = missing["model_failures"]
    assert (record["status"], record["judge_model"], record["judge_reply"]) == ("model_failure", None, None)
    for doc_id in ("MSVD_Zero_Shot_QA_0", "MSVD_Zero_Shot_QA_4"):
        assert not response(msvd[doc_id]).startswith(ERROR_PREFIX)
        rec = msvd[doc_id]["accuracy"]
        assert (rec["status"], rec["judge_model"], rec["judge_pred"], rec["judge_score"]) == (
            "scored",
            JUDGE_MODEL,
            "yes",
            4,
        )
    assert msvd["MSVD_Zero_Shot_QA_4"]["accuracy"]["attempts"] == 2  # 429, then the reply
    down = samples["tgif_qa"][0]["judge_failures"]
    assert down["status"] == "judge_failure" and down["judge_score"] is None and down["attempts"] == 3
    webvid = {s["score"]["id"]: s["score"] for s in samples["hound_webvid_qa"]}
    assert webvid["webvid_2"]["note"] and webvid["webvid_3"]["status"] == "parse_failure"
    for s in samples["hound_webvid_qa"]:
        assert not response(s).startswith(ERROR_PREFIX), response(s)  # frame folders decode
        assert s["input"].startswith("What is in clip")  # <video> stripped, as LLaVA-Hound does


def test_nan_is_reported_when_nothing_could_be_judged() -> None:
    from videolmm.tasks.zeroshot_qa.utils import accuracy, judge_models

    assert math.isnan(accuracy([{"status": "judge_failure", "judge_pred": None}]))
    assert judge_models([]) == "none"


def test_env_is_read_at_call_time_not_import(monkeypatch: pytest.MonkeyPatch, qa_data) -> None:
    import importlib

    monkeypatch.delenv("VIDEOLMM_ZEROSHOT_QA_ROOT", raising=False)
    utils = importlib.import_module("videolmm.tasks.zeroshot_qa.utils")
    monkeypatch.setenv("VIDEOLMM_ZEROSHOT_QA_ROOT", str(qa_data["zeroshot"]))
    assert len(read_source(utils.SOURCES["tgif_qa"])) == 2
