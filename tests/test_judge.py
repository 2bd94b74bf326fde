"""The judge package: seed prompts (snapshots), parsers, settings, and the real ``openai`` client over
real HTTP against a local OpenAI-compatible judge server started here (429, 500, timeouts, junk).

:class:`FakeJudge` is also used by ``tests/test_judged_tasks.py``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from videolmm.tasks.judge import (
    HOUND_CAPTION_QA,
    HOUND_OFFICIAL_QA,
    VIDEO_CHATGPT_QA,
    JudgeCache,
    JudgeClient,
    JudgeConfigError,
    JudgeRequest,
    JudgeSettings,
    accuracy,
    cache_key,
    judge_failures,
    judge_models,
    judge_prediction,
    mean_score,
    model_failure,
    model_failures,
    parse_failures,
)
from videolmm.tasks.judge.prompts import parse_caption_score, parse_hound_official, parse_python_dict

# ----------------------------------------------------------------------------- a judge server


class FakeJudge:
    """An OpenAI-compatible ``/v1/chat/completions`` server on 127.0.0.1 that answers like the seeds' judges.

    The reply depends only on the ground-truth answer inside the prompt, so tests know it in advance:

    * ``good...`` → ``{'pred': 'yes', 'score': 4.8}`` (or ``Explanation: ...\\nScore: 4`` for the caption prompt)
    * ``bad...`` → ``{'pred': 'no', 'score': 1}`` (or ``Score: 2``)
    * ``junk`` → prose with no verdict; ``majority`` → numbers but no ``Score:`` line
    * ``rate-limited <x>`` → 429 (``Retry-After: 0``) the first time this prompt is seen, then as ``<x>``
    * ``flaky <x>`` → 500 the first time, then as ``<x>``; ``slow <x>`` → sleeps ``slow_s`` the first time
    * ``down`` → 503 always; ``refused`` → 400 always; ``overflow`` → ``{'pred': 'yes', 'score': 1e999}``

    Counts every request (``requests``) and the most requests in flight at once (``max_in_flight``).
    """

    def __init__(self, delay_s: float = 0.0, slow_s: float = 3.0) -> None:
        self.delay_s = delay_s
        self.slow_s = slow_s
        self.requests: list[dict[str, Any]] = []
        self.retry_counts: list[str | None] = []  # the SDK's x-stainless-retry-count on each request
        self.seen: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        judge = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with judge._lock:
                    judge.retry_counts.append(self.headers.get("x-stainless-retry-count"))
                status, headers, payload = judge.answer(self.path, body)
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    for k, v in {**headers, "Content-Type": "application/json"}.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> FakeJudge:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def prompts_with(self, text: str) -> int:
        with self._lock:
            return sum(1 for r in self.requests if text in r["messages"][-1]["content"])

    @staticmethod
    def _verdict(answer: str, caption: bool) -> str:
        if answer.startswith("overflow"):
            return "Explanation: perfect.\nScore: " + "9" * 400 if caption else "{'pred': 'yes', 'score': 1e999}"
        if answer.startswith("junk"):
            return "I cannot judge this one, sorry."
        if answer.startswith("majority"):
            return "Explanation: between 3 and 5, probably 3." if caption else "maybe"
        good = not answer.startswith("bad")
        if caption:
            return f"Explanation: {'matches' if good else 'wrong'} the caption.\nScore: {4 if good else 2}"
        return "{'pred': 'yes', 'score': 4.8}" if good else "{'pred': 'no', 'score': 1}"

    def answer(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, str], dict[str, Any]]:
        user = body["messages"][-1]["content"]
        key = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        with self._lock:
            self.requests.append(body)
            self.seen[key] += 1
            first = self.seen[key] == 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay_s:
                time.sleep(self.delay_s)
            if not path.endswith("/chat/completions"):
                return 404, {}, {"error": {"message": f"no route {path}"}}
            match = re.search(r"(?:Correct Answer|\*\*Ground Truth Answer\*\*): (.*)", user)
            answer = match.group(1) if match else ""
            word, _, rest = answer.partition(" ")
            if word == "down":
                return 503, {}, {"error": {"message": "judge is down"}}
            if word == "refused":
                return 400, {}, {"error": {"message": "bad request"}}
            if word in ("rate-limited", "flaky", "slow"):
                if first and word == "rate-limited":
                    return 429, {"Retry-After": "0"}, {"error": {"message": "slow down"}}
                if first and word == "flaky":
                    return 500, {}, {"error": {"message": "oops"}}
                if first and word == "slow":
                    time.sleep(self.slow_s)
                answer = rest
            text = self._verdict(answer, caption="Ground Truth Video Caption" in user)
            return (
                200,
                {},
                {
                    "id": "chatcmpl-test",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body["model"],
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                    ],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                },
            )
        finally:
            with self._lock:
                self.in_flight -= 1


@pytest.fixture(scope="module")
def judge_server():
    with FakeJudge() as server:
        yield server


def settings(server: FakeJudge, tmp_path: Path, **overrides: Any) -> JudgeSettings:
    base = {
        "model": "judge-test-1",
        "base_url": server.base_url,
        "api_key": "test-key",
        "timeout_s": 5.0,
        "max_attempts": 3,
        "backoff_s": 0.01,
        "max_concurrency": 4,
        "cache_path": str(tmp_path / "judge.sqlite"),
    }
    return JudgeSettings(**{**base, **overrides})


def vcgpt(answer: str, prediction: str = "a prediction", question: str = "What is shown?") -> JudgeRequest:
    messages = VIDEO_CHATGPT_QA.messages(question=question, answer=answer, prediction=prediction)
    return JudgeRequest(messages, temperature=0.0)


# ----------------------------------------------------------------------------- prompts: byte-exact snapshots

Q, A, P, C = "What is the man doing?", "cooking", "He is cooking pasta.", "A man cooks pasta in a kitchen."

# mbzuai-oryx/Video-ChatGPT quantitative_evaluation/evaluate_activitynet_qa.py (= Video-LLaVA eval_video_qa.py)
VCGPT_SYSTEM = (
    "You are an intelligent chatbot designed for evaluating the correctness of generative outputs for question-answer "
    "pairs. Your task is to compare the predicted answer with the correct answer and determine if they match "
    "meaningfully. Here's how you can accomplish the task:------##INSTRUCTIONS: - Focus on the meaningful match "
    "between the predicted answer and the correct answer.\n- Consider synonyms or paraphrases as valid matches.\n"
    "- Evaluate the correctness of the prediction compared to the answer."
)
VCGPT_USER = (
    "Please evaluate the following video-based question-answer pair:\n\nQuestion: What is the man doing?\n"
    "Correct Answer: cooking\nPredicted Answer: He is cooking pasta.\n\nProvide your evaluation only as a yes/no and "
    "score where the score is an integer value between 0 and 5, with 5 indicating the highest meaningful match. "
    "Please generate the response in the form of a Python dictionary string with keys 'pred' and 'score', where "
    "value of 'pred' is  a string of 'yes' or 'no' and value of 'score' is in INTEGER, not STRING.DO NOT PROVIDE ANY "
    "OTHER OUTPUT TEXT OR EXPLANATION. Only provide the Python dictionary string. For example, your response should "
    "look like this: {'pred': 'yes', 'score': 4.8}."
)
# RifleZhang/LLaVA-Hound-DPO llava_hound_dpo/test/eval/eval_official_qa.py after format_docstring
HOUND_SYSTEM = (
    "You are an intelligent chatbot designed for evaluating the correctness of generative outputs for question-answer "
    "pairs. \nYour task is to compare the predicted answer with the correct answer and determine if they match "
    "meaningfully. Here's how you can accomplish the task:\n------\n##INSTRUCTIONS: \n- Focus on the meaningful "
    "match between the predicted answer and the correct answer.\n- Consider synonyms or paraphrases as valid "
    "matches.\n- Evaluate the correctness of the prediction compared to the answer."
)
HOUND_USER = (
    "Please evaluate the following video-based question-answer pair:\n\nQuestion: What is the man doing?\n"
    "Correct Answer: cooking\nPredicted Answer: He is cooking pasta.\n\nProvide your evaluation only as a yes/no and "
    "score where the score is an integer value between 0 and 5, with 5 indicating the highest meaningful match. \n"
    "Please generate the response in the form of a Python dictionary string with keys 'pred' and 'score', where "
    "value of 'pred' is a string of 'yes' or 'no' and value of 'score' is in INTEGER, not STRING.\nDO NOT PROVIDE "
    "ANY OTHER OUTPUT TEXT OR EXPLANATION. Only provide the Python dictionary string. \nFor example, your response "
    "should look like this: {'pred': 'yes', 'score': 4.8}."
)
# RifleZhang/LLaVA-Hound-DPO dpo_experiment/test/eval/eval_qa.py after format_docstring
HOUND_CAPTION_USER = (
    "Given the following inputs:\n\n1. **Ground Truth Video Caption**: A man cooks pasta in a kitchen.\n"
    "2. **Question Related to the Caption**: What is the man doing?\n3. **Ground Truth Answer**: cooking\n"
    "4. **Model Predicted Answer**: He is cooking pasta.\n\nYour task is to evaluate the model's predicted answer "
    "against the ground truth answer, based on the context provided by the video caption and the question. Consider "
    "the following criteria for evaluation:\n\n- **Relevance**: Does the predicted answer directly address the "
    "question posed, considering the information provided in the video caption?\n- **Accuracy**: Compare the "
    "predicted answer to the ground truth answer. Does the prediction accurately reflect the information given in "
    "the ground truth answer without introducing factual inaccuracies?\n- **Clarity**: Assess the clarity of the "
    "predicted answer. Look for issues such as repetition, unclear descriptions, or any grammatical errors that "
    "could hinder understanding.\n- **Completeness**: Determine if the predicted answer fully covers the scope of "
    "the ground truth answer. Does it leave out critical information or does it include all necessary details?\n\n"
    "**Output Format**:\nExplanation: <brief judgement of prediction>\nScore: <an integer score of quality from 1-5>"
)


@pytest.mark.parametrize(
    ("protocol", "expected"),
    [
        (VIDEO_CHATGPT_QA, [("system", VCGPT_SYSTEM), ("user", VCGPT_USER)]),
        (HOUND_OFFICIAL_QA, [("system", HOUND_SYSTEM), ("user", HOUND_USER)]),
        (HOUND_CAPTION_QA, [("user", HOUND_CAPTION_USER)]),
    ],
    ids=lambda v: getattr(v, "name", ""),
)
def test_prompts_are_the_seeds_byte_for_byte(protocol, expected) -> None:
    messages = protocol.messages(question=Q, answer=A, prediction=P, caption=C)
    assert [(m["role"], m["content"]) for m in messages] == expected


def test_protocol_sampling_and_defaults() -> None:
    assert (VIDEO_CHATGPT_QA.default_model, VIDEO_CHATGPT_QA.temperature, VIDEO_CHATGPT_QA.top_p) == (
        "gpt-3.5-turbo",
        0.0,
        None,
    )
    for p in (HOUND_OFFICIAL_QA, HOUND_CAPTION_QA):
        assert (p.default_model, p.temperature, p.top_p, p.max_prediction_words) == (
            "gpt-3.5-turbo-0301",
            0.0,
            1.0,
            256,
        )
    with pytest.raises(ValueError, match="caption"):
        HOUND_CAPTION_QA.messages(question=Q, answer=A, prediction=P)


def test_hound_truncates_predictions_to_256_words_and_video_chatgpt_does_not() -> None:
    long = " ".join(f"w{i}" for i in range(300))
    hound = HOUND_OFFICIAL_QA.messages(question=Q, answer=A, prediction=long)[-1]["content"]
    assert "w254 w255\n" in hound and "w256" not in hound
    assert "w299" in VIDEO_CHATGPT_QA.messages(question=Q, answer=A, prediction=long)[-1]["content"]


def test_braces_in_inputs_pass_through_untouched() -> None:
    content = VIDEO_CHATGPT_QA.messages(question="{x}?", answer="{'a': 1}", prediction="{}")[-1]["content"]
    assert "Question: {x}?\nCorrect Answer: {'a': 1}\nPredicted Answer: {}\n" in content


# ----------------------------------------------------------------------------- parsers: the seeds' output forms


@pytest.mark.parametrize(
    ("reply", "pred", "score", "parsed"),
    [
        ("{'pred': 'yes', 'score': 4.8}", "yes", 4, True),  # the prompt's own example; int() truncates
        ('{"pred": "no", "score": 0}', "no", 0, True),
        ("  {'pred': 'Yes', 'score': '5'}", "yes", 5, True),
        ("{'pred': 'maybe', 'score': 3}", None, 3, False),  # score used, accuracy skips it, counted as a problem
        ("{'pred': 'yes'}", None, None, False),
        ("Sure! {'pred': 'yes', 'score': 4}", None, None, False),  # literal_eval fails, as in the seeds
        ("junk", None, None, False),
        ("['yes', 4]", None, None, False),
        ("{'pred': 'yes', 'score': 1e999}", "yes", None, False),  # inf: int() would raise OverflowError
        ("{'pred': 'no', 'score': -1e999}", "no", None, False),
        ("{'pred': 'yes', 'score': " + "9" * 400 + "}", "yes", None, False),  # an int no float mean can hold
    ],
)
def test_parse_python_dict(reply, pred, score, parsed) -> None:
    v = parse_python_dict(reply)
    assert (v.pred, v.score, v.parsed) == (pred, score, parsed)
    assert parsed or v.problem


@pytest.mark.parametrize(
    ("reply", "pred", "score", "parsed"),
    [
        ("{'pred': 'yes', 'score': 4.8}", "yes", 4, True),
        ('{"pred": "no", "score":2}', "no", 2, True),
        ("Sure! {'pred': 'yes', 'score': 4}", "yes", 4, True),  # regex, not literal_eval
        ("{'pred': 'yes'}", "yes", None, False),  # accuracy counts it, the score mean does not
        ("I do not know", "no", None, False),  # "no" is in the raw reply ("not"), exactly as the seed reads it
        ("junk", None, None, False),
        ("{'pred': 'yes', 'score': " + "9" * 5000 + "}", "yes", None, False),  # past int()'s 4300-digit limit
    ],
)
def test_parse_hound_official(reply, pred, score, parsed) -> None:
    v = parse_hound_official(reply)
    assert (v.pred, v.score, v.parsed) == (pred, score, parsed)


@pytest.mark.parametrize(
    ("reply", "pred", "score", "note"),
    [
        ("Explanation: fine.\nScore: 4", "yes", 4.0, False),
        ("Score: 2", "no", 2.0, False),
        ("Explanation: close.\nScore: 3", "yes", 3.0, False),  # >= 3 passes
        ("Score: 4.5", "yes", 4.5, False),
        ("between 3 and 5, probably 3", "yes", 3.0, True),  # majority vote
        ("2 or 4", "yes", 3.0, True),  # tie → mean of the tied
    ],
)
def test_parse_caption_score(reply, pred, score, note) -> None:
    v = parse_caption_score(reply)
    assert (v.pred, v.score, v.parsed, v.note is not None) == (pred, score, True, note)


def test_caption_reply_without_numbers_is_a_parse_failure_not_a_score_of_one() -> None:
    v = parse_caption_score("I cannot judge this one, sorry.")
    assert (v.pred, v.score, v.parsed) == (None, None, False)


@pytest.mark.parametrize(
    "reply", ["Score: " + "9" * 400, "between " + "9" * 400 + " and 3", "9" * 308 + " or " + "8" * 308]
)
def test_caption_scores_that_overflow_are_parse_failures(reply: str) -> None:
    v = parse_caption_score(reply)
    assert (v.pred, v.score, v.parsed) == (None, None, False)
    assert "finite" in v.problem or "overflow" in v.problem


# ----------------------------------------------------------------------------- settings from the environment


def test_settings_from_env_reads_lmms_eval_variables() -> None:
    env = {
        "OPENAI_API_URL": "http://judge.local:9000/v1/chat/completions",
        "OPENAI_API_KEY": "sk-secret",
        "MODEL_VERSION": "m1",
    }
    s = JudgeSettings.from_env("gpt-3.5-turbo", env)
    assert (s.base_url, s.api_key, s.model) == ("http://judge.local:9000/v1", "sk-secret", "m1")
    assert s.cache_path and s.cache_path.endswith("judge-cache.sqlite")
    assert "sk-secret" not in repr(s)  # the key stays out of logs


def test_settings_precedence_and_defaults() -> None:
    env = {
        "VIDEOLMM_JUDGE_BASE_URL": "http://127.0.0.1:8000/v1/",
        "OPENAI_API_URL": "http://elsewhere/v1/chat/completions",
        "VIDEOLMM_JUDGE_MODEL": "local-judge",
        "MODEL_VERSION": "ignored",
        "VIDEOLMM_JUDGE_CACHE": "off",
        "VIDEOLMM_JUDGE_CONCURRENCY": "2",
        "VIDEOLMM_JUDGE_BREAKER": "0",
        "VIDEOLMM_CACHE": "/tmp/x",
    }
    s = JudgeSettings.from_env("gpt-3.5-turbo", env)
    assert (s.base_url, s.model, s.api_key, s.cache_path, s.max_concurrency, s.breaker_threshold) == (
        "http://127.0.0.1:8000/v1",
        "local-judge",
        "EMPTY",  # a custom server with no key configured
        None,
        2,
        0,
    )
    seed = JudgeSettings.from_env("gpt-3.5-turbo-0301", {"VIDEOLMM_CACHE": "/tmp/x"})
    assert (seed.model, seed.base_url, seed.api_key, seed.cache_path, seed.breaker_threshold, seed.backoff_s) == (
        "gpt-3.5-turbo-0301",
        None,
        None,
        "/tmp/x/judge-cache.sqlite",
        5,
        0.5,
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [("VIDEOLMM_JUDGE_TIMEOUT", "soon"), ("VIDEOLMM_JUDGE_MAX_ATTEMPTS", "0"), ("VIDEOLMM_JUDGE_BREAKER", "-1")],
)
def test_bad_settings_name_the_variable(name, value) -> None:
    with pytest.raises(JudgeConfigError, match=name):
        JudgeSettings.from_env("m", {name: value})


# ----------------------------------------------------------------------------- the client over real HTTP


def test_reply_is_cached_so_a_rerun_makes_zero_calls(judge_server: FakeJudge, tmp_path: Path, reliability) -> None:
    s = settings(judge_server, tmp_path)
    before = judge_server.count()
    first = JudgeClient(s).complete(vcgpt("good one"))
    assert first.ok and not first.cached and first.attempts == 1
    assert (first.text, first.model, first.served_model) == (
        "{'pred': 'yes', 'score': 4.8}",
        "judge-test-1",
        "judge-test-1",
    )
    assert judge_server.count() == before + 1
    sent = judge_server.requests[-1]
    assert (sent["model"], sent["temperature"], "top_p" in sent) == ("judge-test-1", 0.0, False)
    again = JudgeClient(s).complete(vcgpt("good one"))  # a new client (a new run), the same cache file
    assert again.cached and again.text == first.text and again.attempts == 0
    assert judge_server.count() == before + 1
    reliability(
        "Load and faults",
        "judge reply cached; a re-run (new client, same cache file) asks the same prompt",
        "judge",
        "answered from the SQLite cache, zero HTTP calls",
        f"first run: {first.attempts} call(s); re-run: cached={again.cached}, attempts={again.attempts}, "
        f"server calls during the re-run: {judge_server.count() - before - 1}",
    )
    # another judge model or another prompt is another key
    other = JudgeClient(settings(judge_server, tmp_path, model="judge-test-2")).complete(vcgpt("good one"))
    assert not other.cached
    assert not JudgeClient(s).complete(vcgpt("good one", prediction="else")).cached
    assert judge_server.count() == before + 3


@pytest.mark.parametrize("behaviour", ["rate-limited", "flaky"])
def test_429_and_500_are_retried_then_succeed(
    judge_server: FakeJudge, tmp_path: Path, behaviour: str, reliability
) -> None:
    before = judge_server.count()
    s = settings(judge_server, tmp_path)
    reply = JudgeClient(s).complete(vcgpt(f"{behaviour} bad answer"))
    assert reply.ok and reply.attempts == 2 and reply.text == "{'pred': 'no', 'score': 1}"
    assert judge_server.count() == before + 2
    rerun = JudgeClient(s).complete(vcgpt(f"{behaviour} bad answer"))
    assert rerun.cached and rerun.text == reply.text and judge_server.count() == before + 2
    status = {"rate-limited": 429, "flaky": 500}[behaviour]
    reliability(
        "Load and faults",
        f"judge answers HTTP {status} once, then 200",
        "judge",
        "retried with backoff, reply cached, a re-run makes zero calls",
        f"attempts={reply.attempts}, ok={reply.ok}, server calls={judge_server.count() - before}; "
        f"re-run cached={rerun.cached} with 0 further calls",
    )


def test_timeouts_are_retried(judge_server: FakeJudge, tmp_path: Path, reliability) -> None:
    timeout_s = 1.0  # under the fake's slow_s; the retry must answer within it on a busy machine
    client = JudgeClient(settings(judge_server, tmp_path, timeout_s=timeout_s))
    before = judge_server.count()
    reply = client.complete(vcgpt("slow good"))
    assert reply.ok and reply.attempts == 2
    calls = judge_server.count()
    rerun = JudgeClient(settings(judge_server, tmp_path, timeout_s=timeout_s)).complete(vcgpt("slow good"))
    assert rerun.cached and rerun.text == reply.text and judge_server.count() == calls  # a re-run: zero calls
    reliability(
        "Load and faults",
        f"judge times out once (client timeout {timeout_s:g} s), then answers",
        "judge",
        "the timed-out attempt is retried; the reply counts and is cached; a re-run makes zero calls",
        f"attempts={reply.attempts}, ok={reply.ok}, server calls={calls - before}; "
        f"re-run cached={rerun.cached} with {judge_server.count() - calls} further calls",
    )


def test_a_judge_that_stays_down_is_a_counted_failure_after_bounded_attempts(
    judge_server: FakeJudge, tmp_path, reliability
) -> None:
    # the SDK's own retries (max_retries = attempts - 1), its schedule scaled to backoff_s = 0.05:
    # 0.05, 0.1, 0.2 s, each jittered down by at most 25 %
    client = JudgeClient(settings(judge_server, tmp_path, max_attempts=4, backoff_s=0.05))
    before = judge_server.count()
    t0 = time.monotonic()
    reply = client.complete(vcgpt("down"))
    elapsed = time.monotonic() - t0
    assert not reply.ok and reply.text is None and reply.attempts == 4
    assert reply.error and reply.error.startswith("InternalServerError")
    assert judge_server.count() == before + 4
    assert judge_server.retry_counts[-4:] == ["0", "1", "2", "3"]  # the SDK retried, and said so
    assert 0.26 <= elapsed < 2.0, elapsed  # 0.35 s x (0.75..1) of backoff, not the SDK's default 3.5 s
    assert client.cache is not None and len(client.cache) == 0  # failures are not cached
    reliability(
        "Load and faults",
        "judge stays down (HTTP 503 on every attempt)",
        "judge",
        "bounded attempts with the SDK's exponential backoff, then a counted failure that is not cached",
        f"attempts={reply.attempts} (server saw x-stainless-retry-count {judge_server.retry_counts[-4:]}), "
        f"{elapsed:.2f} s, error={reply.error[:60]!r}, cached entries={len(client.cache)}",
    )


def test_circuit_breaker_stops_calling_a_dead_judge(judge_server: FakeJudge, tmp_path: Path, reliability) -> None:
    client = JudgeClient(settings(judge_server, tmp_path, max_attempts=2, breaker_threshold=3))

    def judge(answer: str) -> dict:
        return judge_prediction(VIDEO_CHATGPT_QA, question=Q, answer=answer, prediction=P, client=client)

    before = judge_server.count()
    assert judge("good fresh")["status"] == "scored"
    assert [judge("refused")["status"] for _ in range(4)] == ["judge_failure"] * 4  # one request's 400s: no trip
    assert not client.breaker_open
    t0 = time.monotonic()
    records = [judge(f"down {i}") for i in range(20)]
    elapsed = time.monotonic() - t0
    assert client.breaker_open and client.short_circuited == 17
    assert judge_server.count() == before + 1 + 4 + 3 * 2  # 3 failed calls of 2 attempts; then none
    assert [r["status"] for r in records] == ["judge_failure"] * 20
    assert [r["attempts"] for r in records] == [2, 2, 2] + [0] * 17
    tripped = records[-1]["problem"]
    assert tripped.startswith("JudgeCircuitOpen: the judge at http://127.0.0.1:")
    assert "failed 3 consecutive calls" in tripped and "InternalServerError" in tripped
    assert judge_failures(records) == 20 and math.isnan(accuracy(records))
    assert judge("good later")["problem"] == tripped  # stays open for the run
    assert (
        JudgeClient(settings(judge_server, tmp_path))
        .complete(JudgeRequest(VIDEO_CHATGPT_QA.messages(question=Q, answer="good fresh", prediction=P)))
        .cached
    )  # the cache still answers
    reliability(
        "Load and faults",
        "judge down for a whole run: 20 docs, breaker threshold 3, 2 attempts per call",
        "judge",
        "after 3 consecutive failed calls no more calls; the rest are judge failures at once, visibly",
        f"server calls {judge_server.count() - before - 5} (3 calls x 2 attempts), {client.short_circuited} docs "
        f"answered by the breaker, {elapsed:.2f} s for all 20; problem={tripped[:70]!r}...",
    )


def test_a_success_resets_the_breaker_count(judge_server: FakeJudge, tmp_path: Path) -> None:
    client = JudgeClient(settings(judge_server, tmp_path, max_attempts=1, breaker_threshold=2, cache_path=None))
    for i in range(3):
        assert client.complete(vcgpt(f"down {i}")).error.startswith("InternalServerError")
        assert client.complete(vcgpt(f"good {i}")).ok
    assert not client.breaker_open
    off = JudgeClient(settings(judge_server, tmp_path, max_attempts=1, breaker_threshold=0, cache_path=None))
    assert all(off.complete(vcgpt(f"down {i}")).attempts == 1 for i in range(4)) and not off.breaker_open


def test_cache_is_keyed_on_the_base_url(judge_server: FakeJudge, tmp_path: Path) -> None:
    port = judge_server.server.server_address[1]
    first = JudgeClient(settings(judge_server, tmp_path)).complete(vcgpt("good keyed"))
    other_url = settings(
        judge_server, tmp_path, base_url=f"http://localhost:{port}/v1"
    )  # another judge, same model id
    again = JudgeClient(other_url).complete(vcgpt("good keyed"))
    assert first.ok and not first.cached and again.ok and not again.cached
    assert JudgeClient(other_url).complete(vcgpt("good keyed")).cached
    msgs = [{"role": "user", "content": "x"}]
    assert cache_key("m", msgs, {}, base_url="http://a/v1") == cache_key("m", msgs, {}, base_url="http://a/v1/")
    assert len({cache_key("m", msgs, {}, base_url=u) for u in (None, "http://a/v1", "http://b/v1")}) == 3


@pytest.mark.parametrize("protocol", [VIDEO_CHATGPT_QA, HOUND_CAPTION_QA], ids=lambda p: p.name)
def test_an_overflowing_score_is_a_parse_failure(
    judge_server: FakeJudge, tmp_path: Path, protocol, reliability
) -> None:
    client = JudgeClient(settings(judge_server, tmp_path))
    record = judge_prediction(protocol, question=Q, answer="overflow", prediction=P, caption=C, client=client)
    assert (record["status"], record["judge_score"]) == ("parse_failure", None)
    assert "not a finite number" in record["problem"]
    assert json.dumps(record) and math.isnan(mean_score([record]))
    reliability(
        "Hostile inputs",
        f"judge replies with an overflowing score ({protocol.name}: {record['judge_reply'][-40:]!r})",
        "judge",
        "a counted parse failure, never a crash or an infinite mean",
        f"status={record['status']}, problem={record['problem'][:70]!r}",
    )


def test_client_errors_are_not_retried(judge_server: FakeJudge, tmp_path: Path) -> None:
    before = judge_server.count()
    reply = JudgeClient(settings(judge_server, tmp_path)).complete(vcgpt("refused"))
    assert not reply.ok and reply.attempts == 1 and reply.error.startswith("BadRequestError")
    assert judge_server.count() == before + 1


def test_no_api_key_fails_without_a_request(tmp_path: Path) -> None:
    reply = JudgeClient(JudgeSettings(model="gpt-3.5-turbo", cache_path=None)).complete(vcgpt("good"))
    assert not reply.ok and reply.attempts == 0 and "VIDEOLMM_JUDGE_API_KEY" in reply.error


def test_complete_many_bounds_concurrency(tmp_path: Path) -> None:
    with FakeJudge(delay_s=0.15) as server:
        client = JudgeClient(settings(server, tmp_path, max_concurrency=3))
        replies = client.complete_many([vcgpt(f"good {i}") for i in range(12)])
        assert [r.ok for r in replies] == [True] * 12
        assert server.count() == 12
        assert 2 <= server.max_in_flight <= 3


def test_threads_sharing_one_client_respect_its_bound(tmp_path: Path) -> None:
    # lmms-eval calls process_results from its own thread pool; the client's bound still holds
    with FakeJudge(delay_s=0.15) as server:
        client = JudgeClient(settings(server, tmp_path, max_concurrency=2, cache_path=None))
        threads = [threading.Thread(target=client.complete, args=(vcgpt(f"good {i}"),)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert server.count() == 8 and server.max_in_flight == 2


# ----------------------------------------------------------------------------- the cache


def _write_keys(path: str, worker: int, n: int) -> int:
    cache = JudgeCache(path, busy_timeout_s=10)
    for i in range(n):
        cache.put(cache_key("m", [{"role": "user", "content": f"{worker}-{i}"}], {}), model="m", request={}, reply="r")
    return n


def test_cache_survives_concurrent_writers(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.sqlite")
    JudgeCache(path)
    with ProcessPoolExecutor(max_workers=2) as pool:
        assert sum(pool.map(_write_keys, [path, path], [0, 1], [60, 60])) == 120
    threads = [threading.Thread(target=_write_keys, args=(path, 2 + t, 20)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    cache = JudgeCache(path)
    assert len(cache) == 200
    assert cache.get(cache_key("m", [{"role": "user", "content": "1-59"}], {})).reply == "r"
    import sqlite3

    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_cache_key_covers_model_messages_and_sampling() -> None:
    msgs = [{"role": "user", "content": "x"}]
    keys = {
        cache_key("a", msgs, {"temperature": 0.0}),
        cache_key("b", msgs, {"temperature": 0.0}),
        cache_key("a", [{"role": "user", "content": "y"}], {"temperature": 0.0}),
        cache_key("a", msgs, {"temperature": 0.0, "top_p": 1.0}),
    }
    assert len(keys) == 4


# ----------------------------------------------------------------------------- records and aggregations


def test_records_keep_failures_apart_from_scores(judge_server: FakeJudge, tmp_path: Path) -> None:
    client = JudgeClient(settings(judge_server, tmp_path, max_attempts=2))

    def judge(answer: str, protocol=VIDEO_CHATGPT_QA) -> dict:
        return judge_prediction(protocol, question=Q, answer=answer, prediction=P, caption=C, client=client)

    good, bad, junk, down = judge("good"), judge("bad"), judge("junk"), judge("down")
    failed = model_failure(VIDEO_CHATGPT_QA, error="[videolmm error] MediaNotFound: /v.mp4: not found")
    assert [r["status"] for r in (good, bad, junk, down, failed)] == [
        "scored",
        "scored",
        "parse_failure",
        "judge_failure",
        "model_failure",
    ]
    assert (good["judge_pred"], good["judge_score"], good["judge_model"]) == ("yes", 4, "judge-test-1")
    assert junk["judge_reply"] == "I cannot judge this one, sorry." and junk["judge_model"] == "judge-test-1"
    assert down["judge_score"] is None and down["judge_pred"] is None and "InternalServerError" in down["problem"]
    assert "score" not in good  # lmms-eval reads a `score` key as a number for its CLT stderr
    items = [good, bad, junk, down, failed]
    assert json.loads(json.dumps(items)) == items
    assert (accuracy(items), mean_score(items)) == (50.0, 2.5)
    assert (judge_failures(items), parse_failures(items), model_failures(items)) == (1, 1, 1)
    assert judge_models(items) == "judge-test-1"
    assert math.isnan(accuracy([down, failed])) and math.isnan(mean_score([down, failed]))
    assert judge_models([down, failed]) == "none"
    caption = judge("majority", HOUND_CAPTION_QA)
    assert (caption["status"], caption["judge_score"], caption["note"] is not None) == ("scored", 3.0, True)


def test_importing_the_judge_imports_neither_openai_nor_lmms_eval() -> None:
    code = (
        "import sys, videolmm.tasks.judge\n"
        "print(sorted(m for m in ('openai', 'lmms_eval', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
