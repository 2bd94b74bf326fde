"""Parity: the same greedy request gives the same text in process (lmms-eval + videolmm's model) and
over HTTP; lmms-eval's own ``openai`` model scores the demo task against the server exactly as the
in-process run does.

Both lmms-eval runs happen in this process (``lmms_eval.evaluator.simple_evaluate``), the served
one through the real HTTP server with the real openai client that lmms-eval uses.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from serve_helpers import TRAINED, ServeApp, video_message

from videolmm.eval.markers import ERROR_PREFIX
from videolmm.load import load_engine
from videolmm.models.families.base import LoadOptions
from videolmm.tasks.synthetic_clips import clip_path
from videolmm.types import GenerationSettings, Request

FRAMES = 4  # the trained checkpoint's own frame count (its videolmm.json)


def doc_to_text(doc: dict[str, Any]) -> str:
    """The demo task's prompt (its doc_to_text with no pre/post prompt): the doc's question."""
    return doc["question"]


TASK = "videolmm_demo"
METRICS = ("exact_match,none", "colour_acc,none", "direction_acc,none")

pytestmark = pytest.mark.timeout(600)


def _evaluate(model: str, model_args: str) -> dict[str, Any]:
    from lmms_eval.evaluator import simple_evaluate

    out = simple_evaluate(model=model, model_args=model_args, tasks=[TASK], batch_size=1, log_samples=True)
    assert out is not None and TASK in out["results"], out
    return out


def _responses(run: dict[str, Any]) -> dict[int, str]:
    out = {}
    for sample in run["samples"][TASK]:
        resp = sample["filtered_resps"]
        out[int(sample["doc_id"])] = resp[0] if isinstance(resp, list) else resp
    return out


def _docs(run: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {int(s["doc_id"]): s["doc"] for s in run["samples"][TASK]}


@pytest.fixture(scope="module")
def in_process(trained_llava_next_video: Path, cache_root: Path) -> dict[str, Any]:
    """videolmm's lmms-eval model (``llava_next_video``) in this process, on the whole demo task."""
    return _evaluate("llava_next_video", f"pretrained={trained_llava_next_video},device=cpu,max_frames_num={FRAMES}")


def test_one_greedy_request_gives_the_same_text_in_process_and_over_http(
    serve_app: ServeApp, in_process: dict[str, Any]
) -> None:
    doc = _docs(in_process)[0]
    expected = _responses(in_process)[0]
    assert not expected.startswith(ERROR_PREFIX), expected
    video = clip_path(doc)
    assert any(Path(video).is_relative_to(root) for root in serve_app.args.security.media_roots)
    served = serve_app.client().chat.completions.create(
        model=TRAINED,
        messages=video_message(Path(video).as_uri(), doc_to_text(doc)),
        max_tokens=8,  # the task's generation_kwargs: greedy, 8 tokens, until "\n" / "."
        temperature=0,
        stop=["\n", "."],
        extra_body={"media_io_kwargs": {"video": {"num_frames": FRAMES}}},
    )
    assert served.choices[0].message.content == expected
    assert served.model_extra["videolmm"]["frames"] == [[0, 5, 10, 15]]


def test_lmms_eval_openai_model_scores_the_same_against_the_server(
    serve_app: ServeApp, in_process: dict[str, Any], trained_llava_next_video: Path
) -> None:
    served = _evaluate(
        "openai",
        f"model={TRAINED},base_url={serve_app.base_url}/v1,api_key={serve_app.api_key},pass_video_url=True,"
        f"max_frames_num={FRAMES},num_concurrent=1,max_retries=1,timeout=60",
    )
    for metric in METRICS:
        assert served["results"][TASK][metric] == in_process["results"][TASK][metric], metric
    assert in_process["results"][TASK]["exact_match,none"] >= 0.9  # the trained checkpoint: parity on real answers
    assert served["n-samples"][TASK]["effective"] == in_process["n-samples"][TASK]["effective"] == 8

    # Per doc, each path is the core engine: lmms-eval's openai model sends no stop strings (it does not
    # forward the task's `until`), so the server's text is the engine's uncut greedy text; the in-process
    # model passes `until`, so its text is the engine's text cut at "\n" / ".".
    engine = load_engine(
        str(trained_llava_next_video), family="llava_next_video", num_frames=FRAMES, load=LoadOptions(device="cpu")
    )
    docs = _docs(in_process)
    served_text, in_process_text = _responses(served), _responses(in_process)
    for doc_id, doc in sorted(docs.items()):
        request = Request(question=doc_to_text(doc), videos=(clip_path(doc),), request_id=str(doc_id))
        uncut, cut = engine.generate(
            [
                replace(request, generation=GenerationSettings(max_new_tokens=8)),
                replace(request, generation=GenerationSettings(max_new_tokens=8, stop=("\n", "."))),
            ],
            batch_size=1,
        )
        assert served_text[doc_id] == uncut.text, doc_id
        assert in_process_text[doc_id] == cut.text, doc_id
