"""Multi-turn chat: an OpenAI message history maps to the core's conversation (``Request.turns``),
malformed histories get a 400 naming the message, and a conversation served over HTTP answers
exactly as the core does in process.

The mapping tests need no app; the last two use the session's app (tests/serve/conftest.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from serve_helpers import LNV, TRAINED, ServeApp

from videolmm.load import load_engine
from videolmm.models.families.base import LoadOptions
from videolmm.serve.config import LimitsConfig, ModelConfig
from videolmm.serve.errors import ServeError
from videolmm.serve.openai import to_job
from videolmm.serve.protocol import ChatCompletionRequest
from videolmm.types import GenerationSettings, Request, Turn

MODEL = ModelConfig(model_id="m", pretrained="x", default_max_tokens=16)
LIMITS = LimitsConfig(max_videos_per_request=2, max_images_per_request=1)
VIDEO = {"type": "video_url", "video_url": {"url": "file:///v.mp4"}}
IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}


def _job(messages: list[dict[str, Any]], **body: Any) -> Any:
    req = ChatCompletionRequest.model_validate({"model": "m", "messages": messages, **body})
    return to_job(req, request_id="rid-1", model=MODEL, limits=LIMITS)


def _user(text: str, *media: dict[str, Any]) -> dict[str, Any]:
    return {"role": "user", "content": [*media, {"type": "text", "text": text}] if media else text}


# ---------------------------------------------------------------- the mapping


def test_a_chat_uis_history_maps_to_turns() -> None:
    """What a chat UI sends on turn three: system, then every earlier user and assistant message."""
    job = _job(
        [
            {"role": "system", "content": "Be brief."},
            _user("What colour?", VIDEO),
            {"role": "assistant", "content": "Red."},
            _user("Which way?"),
            {
                "role": "assistant",
                "content": [{"type": "text", "text": "Right"}, {"type": "text", "text": "then up."}],
            },
            _user("How fast?"),
        ]
    )
    assert job.system_prompt == "Be brief."
    assert job.turns == (
        Turn("user", "What colour?", videos=1),
        Turn("assistant", "Red."),
        Turn("user", "Which way?"),
        Turn("assistant", "Right\nthen up."),
    )
    assert job.question == "How fast?"
    assert [(m.kind, m.param) for m in job.media] == [("video", "messages[1].content[0].video_url.url")]


def test_media_in_a_later_turn_and_in_the_question_keep_message_order() -> None:
    job = _job(
        [
            {"role": "developer", "content": "S"},
            _user("Hi."),
            {"role": "assistant", "content": "Hello."},
            _user("What colour?", IMAGE, VIDEO),
            {"role": "assistant", "content": "Red."},
            _user("And this?", VIDEO),
        ]
    )
    assert job.turns[2] == Turn("user", "What colour?", videos=1, images=1)
    assert [m.param for m in job.media] == [
        "messages[3].content[0].image_url.url",
        "messages[3].content[1].video_url.url",
        "messages[5].content[0].video_url.url",
    ]
    assert (len(job.videos), len(job.images)) == (2, 1)


def test_a_single_question_maps_as_before() -> None:
    job = _job([{"role": "system", "content": "S"}, _user("Why?", VIDEO)])
    assert (job.turns, job.question, job.system_prompt, len(job.media)) == ((), "Why?", "S", 1)


def test_media_of_every_turn_counts_against_the_limits() -> None:
    messages = [_user("a", VIDEO, VIDEO), {"role": "assistant", "content": "b"}, _user("c", VIDEO)]
    with pytest.raises(ServeError, match="3 videos") as excinfo:
        _job(messages)
    assert excinfo.value.error.status == 400


@pytest.mark.parametrize(
    ("messages", "code", "needles"),
    [
        (
            [_user("a"), {"role": "assistant", "content": "b"}, {"role": "assistant", "content": "c"}, _user("d")],
            "invalid_conversation",
            ("messages[2]", "two assistant messages in a row"),
        ),
        ([_user("a"), _user("b")], "invalid_conversation", ("messages[1]", "two user messages in a row")),
        (
            [_user("a"), {"role": "assistant", "content": "b"}],
            "invalid_conversation",
            ("messages[1]", "ends with an assistant message"),
        ),
        (
            [{"role": "system", "content": "s"}, {"role": "assistant", "content": "b"}, _user("a")],
            "invalid_conversation",
            ("messages[1]", "starts with an assistant message"),
        ),
        (
            [_user("a"), {"role": "assistant", "content": [VIDEO]}, _user("c")],
            "invalid_conversation",
            ("messages[1].content[0]", "text only", "video_url"),
        ),
        (
            [_user("a"), {"role": "assistant", "content": None}, _user("c")],
            "invalid_request",
            ("messages[1]", "no content", "tool calls"),
        ),
        (
            [_user("a"), {"role": "tool", "content": "42"}, _user("c")],
            "unsupported_role",
            ("messages[1]", "tool messages are not supported"),
        ),
        (
            [_user("a"), {"role": "assistant", "content": "b"}, {"role": "system", "content": "s"}, _user("c")],
            "unsupported_role",
            ("messages[2]", "after the conversation began"),
        ),
        ([{"role": "system", "content": "s"}], "invalid_conversation", ("no user message",)),
    ],
)
def test_malformed_histories_get_a_400_naming_the_message(
    messages: list[dict[str, Any]], code: str, needles: tuple[str, ...]
) -> None:
    with pytest.raises(ServeError) as excinfo:
        _job(messages)
    error = excinfo.value.error
    assert (error.status, error.code) == (400, code)
    for needle in needles:
        assert needle in error.message, error.message


# ---------------------------------------------------------------- over HTTP


QUESTIONS = ("What colour is the moving square?", "Which way does it move?", "Is it still there at the end?")


@pytest.fixture(scope="module")
def engines(trained_llava_next_video: Path, tiny_llava_next_video: Path) -> dict[str, Any]:
    cpu = LoadOptions(device="cpu")
    return {
        TRAINED: load_engine(str(trained_llava_next_video), family="llava_next_video", load=cpu),
        LNV: load_engine(str(tiny_llava_next_video), family="llava_next_video", load=cpu),
    }


def test_three_turn_conversation_over_http_answers_as_the_core(serve_app: ServeApp, engines: dict[str, Any]) -> None:
    """Video in turn one, follow-ups without media, through the official openai client: each
    turn's answer (greedy) is the in-process engine's answer for the same conversation, and
    the next turn sends it back as history."""
    engine = engines[TRAINED]
    clip = str(serve_app.media_root / "red_right.mp4")
    client = serve_app.client()
    messages: list[dict[str, Any]] = []
    turns: list[Turn] = []
    for k, question in enumerate(QUESTIONS):
        if k == 0:
            messages.append(
                _user(question, {"type": "video_url", "video_url": {"url": serve_app.file_url("red_right.mp4")}})
            )
        else:
            messages.append(_user(question))
        served = client.chat.completions.create(model=TRAINED, messages=messages, max_tokens=8, temperature=0)
        (expected,) = engine.generate(
            [
                Request(
                    question=question,
                    videos=(clip,),
                    turns=tuple(turns),
                    generation=GenerationSettings(max_new_tokens=8),
                )
            ]
        )
        assert expected.ok, expected.error
        answer = served.choices[0].message.content
        assert answer == expected.text
        assert served.usage.prompt_tokens == expected.usage.prompt_tokens
        assert served.model_extra["videolmm"]["visual_tokens"] == expected.usage.visual_tokens > 0
        messages.append({"role": "assistant", "content": answer})
        turns += [Turn("user", question, videos=1 if k == 0 else 0), Turn("assistant", answer)]
    assert len(turns) == 6 and expected.prompt.count("ASSISTANT:") == 3


def test_chat_ui_history_shape_is_answered(serve_app: ServeApp, engines: dict[str, Any]) -> None:
    """The body a chat UI posts on turn two: a system message, the first user message with its
    video, the assistant's earlier answer as text parts, the new question; raw HTTP, 200, and the
    same answer and prompt size as in process."""
    body = {
        "model": LNV,
        "messages": [
            {"role": "system", "content": "You answer in one word."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What colour is the square?"},
                    {"type": "video_url", "video_url": {"url": serve_app.file_url("red_right.mp4")}},
                ],
            },
            {"role": "assistant", "content": [{"type": "text", "text": "Red."}]},
            {"role": "user", "content": "And the background?"},
        ],
        "max_tokens": 6,
        "temperature": 0,
        "stream": False,
    }
    with serve_app.http() as http:
        response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    (expected,) = engines[LNV].generate(
        [
            Request(
                question="And the background?",
                videos=(str(serve_app.media_root / "red_right.mp4"),),
                turns=(Turn("user", "What colour is the square?", videos=1), Turn("assistant", "Red.")),
                system_prompt="You answer in one word.",
                generation=GenerationSettings(max_new_tokens=6),
            )
        ]
    )
    assert expected.ok, expected.error
    assert expected.prompt.startswith("You answer in one word. USER: <video>")
    data = response.json()
    assert data["choices"][0]["message"]["content"] == expected.text
    assert data["usage"]["prompt_tokens"] == expected.usage.prompt_tokens
