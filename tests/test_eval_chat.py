"""lmms-eval chat messages → the core's conversation pieces (videolmm.eval.requests.messages_to_conversation)."""

from __future__ import annotations

import pytest
from PIL import Image

from videolmm.errors import ConfigError
from videolmm.eval.requests import messages_to_conversation
from videolmm.types import Turn


def test_one_user_message_with_media_is_a_plain_question() -> None:
    image = Image.new("RGB", (8, 8))
    conv = messages_to_conversation(
        [
            {
                "role": "user",
                "content": [
                    {"type": "image", "url": image},
                    {"type": "video", "url": "/clips/a.mp4"},
                    {"type": "text", "text": "What moves?"},
                ],
            }
        ]
    )
    assert (conv.question, conv.videos, conv.turns, conv.system_prompt) == ("What moves?", ("/clips/a.mp4",), (), None)
    assert conv.images == (image,)


def test_a_history_becomes_turns_with_their_media_counted_in_order() -> None:
    conv = messages_to_conversation(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "video", "url": "a.mp4"}, {"type": "text", "text": "Colour?"}]},
            {"role": "assistant", "content": "Red."},
            {"role": "user", "content": [{"type": "video", "url": "b.mp4"}, {"type": "text", "text": "And here?"}]},
        ]
    )
    assert conv.system_prompt == "Be brief."
    assert conv.turns == (Turn("user", "Colour?", 1, 0), Turn("assistant", "Red.", 0, 0))
    assert conv.videos == ("a.mp4", "b.mp4") and conv.question == "And here?"


@pytest.mark.parametrize(
    ("messages", "needle"),
    [
        ([{"role": "user", "content": [{"type": "audio", "url": "a.wav"}]}], "messages[0]: content of type 'audio'"),
        (
            [{"role": "user", "content": [{"type": "video", "url": {"path": "a.mp4", "video_start": 1}}]}],
            "video_start/video_end",
        ),
        ([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "end with a user message"),
        ([{"role": "user", "content": "q"}, {"role": "user", "content": "q2"}], "messages[1]: expected an assistant"),
        (
            [{"role": "user", "content": "q"}, {"role": "assistant", "content": [{"type": "image", "url": "x.png"}]}],
            "assistant message cannot carry",
        ),
        ([{"role": "user", "content": "q"}, {"role": "system", "content": "late"}], "messages[1]: a system message"),
        ([{"role": "tool", "content": "x"}], "role 'tool'"),
    ],
)
def test_what_the_core_cannot_answer_is_refused_naming_the_message(messages: list, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        messages_to_conversation(messages)
