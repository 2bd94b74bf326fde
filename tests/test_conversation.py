"""Multi-turn conversations in the core: byte-exact prompts per template (the seeds'
``Conversation.get_prompt``), where each turn's visuals and extras go, the checks on turns, and
generation and the context check over the whole history."""

from __future__ import annotations

from pathlib import Path

import pytest

from videolmm.errors import PromptError
from videolmm.load import load_engine
from videolmm.models.engine import Engine
from videolmm.models.families.base import LoadOptions
from videolmm.models.prompts import BUILTIN_TEMPLATES, PromptTemplate, conversation_layout
from videolmm.types import GenerationSettings, Request, Turn

TEMPLATES = {t.name: t for t in BUILTIN_TEMPLATES}
CPU = LoadOptions(device="cpu")

# (role, content) as the engine hands them to the template: placeholders before the text of the
# user turn that carries the media.
TWO_TURNS = [("user", "<video>\nWhat colour?"), ("assistant", "Red."), ("user", "Which way?")]
THREE_TURNS = [*TWO_TURNS, ("assistant", "Right."), ("user", "How fast?")]
MEDIA_IN_TURN_TWO = [("user", "Hello."), ("assistant", "Hi."), ("user", "<video>\nWhat colour?")]

VICUNA = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the user's questions."
)
HUMAN = (
    "A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the human's questions."
)

# Each string is what the seed's own Conversation.get_prompt returns for the same messages
# (append_message per turn, then append_message(roles[1], None)); checked against the seeds' code
# at LLaVA-NeXT df17966, Video-LLaVA 984e65b and LLaVA-Hound-DPO ec2381f.
SNAPSHOTS: dict[str, dict[str, str]] = {
    # SeparatorStyle.TWO, sep " ", sep2 "</s>" (LLaVA-NeXT conv_vicuna_v1)
    "vicuna_v1": {
        "two": f"{VICUNA} USER: <video>\nWhat colour? ASSISTANT: Red.</s>USER: Which way? ASSISTANT:",
        "three": f"{VICUNA} USER: <video>\nWhat colour? ASSISTANT: Red.</s>USER: Which way? ASSISTANT: Right.</s>"
        "USER: How fast? ASSISTANT:",
        "media_in_two": f"{VICUNA} USER: Hello. ASSISTANT: Hi.</s>USER: <video>\nWhat colour? ASSISTANT:",
    },
    # LLaVA-Hound-DPO conv_vicuna_v1 ("v1"): the same TWO style
    "v1": {
        "two": f"{VICUNA} USER: <video>\nWhat colour? ASSISTANT: Red.</s>USER: Which way? ASSISTANT:",
        "three": f"{VICUNA} USER: <video>\nWhat colour? ASSISTANT: Red.</s>USER: Which way? ASSISTANT: Right.</s>"
        "USER: How fast? ASSISTANT:",
        "media_in_two": f"{VICUNA} USER: Hello. ASSISTANT: Hi.</s>USER: <video>\nWhat colour? ASSISTANT:",
    },
    # Video-LLaVA conv_llava_v1 ("curious human"): TWO
    "llava_v1": {
        "two": f"{HUMAN} USER: <video>\nWhat colour? ASSISTANT: Red.</s>USER: Which way? ASSISTANT:",
        "three": f"{HUMAN} USER: <video>\nWhat colour? ASSISTANT: Red.</s>USER: Which way? ASSISTANT: Right.</s>"
        "USER: How fast? ASSISTANT:",
        "media_in_two": f"{HUMAN} USER: Hello. ASSISTANT: Hi.</s>USER: <video>\nWhat colour? ASSISTANT:",
    },
    # SeparatorStyle.MPT, sep <|im_end|>, no newline (LLaVA-NeXT conv_mistral_direct)
    "mistral_direct": {
        "two": "<|im_start|>system\nAnswer the questions.<|im_end|><|im_start|>user\n<video>\nWhat colour?<|im_end|>"
        "<|im_start|>assistant\nRed.<|im_end|><|im_start|>user\nWhich way?<|im_end|><|im_start|>assistant\n",
        "three": "<|im_start|>system\nAnswer the questions.<|im_end|><|im_start|>user\n<video>\nWhat colour?<|im_end|>"
        "<|im_start|>assistant\nRed.<|im_end|><|im_start|>user\nWhich way?<|im_end|><|im_start|>assistant\nRight."
        "<|im_end|><|im_start|>user\nHow fast?<|im_end|><|im_start|>assistant\n",
        "media_in_two": "<|im_start|>system\nAnswer the questions.<|im_end|><|im_start|>user\nHello.<|im_end|>"
        "<|im_start|>assistant\nHi.<|im_end|><|im_start|>user\n<video>\nWhat colour?<|im_end|><|im_start|>assistant\n",
    },
    # SeparatorStyle.LLAMA_2, sep "", sep2 "</s>", empty system (LLaVA-NeXT conv_mistral_instruct)
    "mistral_instruct": {
        "two": "[INST] <video>\nWhat colour? [/INST] Red. </s>[INST] Which way? [/INST]",
        "three": "[INST] <video>\nWhat colour? [/INST] Red. </s>[INST] Which way? [/INST] Right. </s>"
        "[INST] How fast? [/INST]",
        "media_in_two": "[INST] Hello. [/INST] Hi. </s>[INST] <video>\nWhat colour? [/INST]",
    },
    # SeparatorStyle.CHATML, sep <|im_end|> + "\n" (LLaVA-NeXT conv_qwen, "qwen_1_5")
    "qwen_1_5": {
        "two": "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<video>\nWhat colour?"
        "<|im_end|>\n<|im_start|>assistant\nRed.<|im_end|>\n<|im_start|>user\nWhich way?<|im_end|>\n"
        "<|im_start|>assistant\n",
        "three": "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<video>\nWhat colour?"
        "<|im_end|>\n<|im_start|>assistant\nRed.<|im_end|>\n<|im_start|>user\nWhich way?<|im_end|>\n"
        "<|im_start|>assistant\nRight.<|im_end|>\n<|im_start|>user\nHow fast?<|im_end|>\n<|im_start|>assistant\n",
        "media_in_two": "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello."
        "<|im_end|>\n<|im_start|>assistant\nHi.<|im_end|>\n<|im_start|>user\n<video>\nWhat colour?<|im_end|>\n"
        "<|im_start|>assistant\n",
    },
}
CONVERSATIONS = {"two": TWO_TURNS, "three": THREE_TURNS, "media_in_two": MEDIA_IN_TURN_TWO}


# ---------------------------------------------------------------- templates


@pytest.mark.parametrize("shape", sorted(CONVERSATIONS))
@pytest.mark.parametrize("name", sorted(SNAPSHOTS))
def test_conversation_snapshot(name: str, shape: str) -> None:
    assert TEMPLATES[name].render_conversation(CONVERSATIONS[shape]) == SNAPSHOTS[name][shape]


def test_every_builtin_template_has_conversation_snapshots() -> None:
    assert {t.name for t in BUILTIN_TEMPLATES if not t.use_chat_template} == set(SNAPSHOTS)


@pytest.mark.parametrize("name", sorted(SNAPSHOTS))
def test_one_turn_renders_as_the_single_question(name: str) -> None:
    template = TEMPLATES[name]
    assert template.render_conversation([("user", "<video>\nQ?")]) == template.render("<video>\nQ?")
    assert template.render_conversation([("user", "<video>\nQ?")], system="S") == template.render(
        "<video>\nQ?", system="S"
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("vicuna_v1", "Be brief. USER: <video>\nWhat colour? ASSISTANT: Red.</s>USER: Which way? ASSISTANT:"),
        (
            "mistral_instruct",  # LLAMA_2's wrap_sys on the first user message
            "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\n<video>\nWhat colour? [/INST] Red. </s>[INST] Which way? [/INST]",
        ),
        (
            "mistral_direct",
            "<|im_start|>system\nBe brief.<|im_end|><|im_start|>user\n<video>\nWhat colour?<|im_end|>"
            "<|im_start|>assistant\nRed.<|im_end|><|im_start|>user\nWhich way?<|im_end|><|im_start|>assistant\n",
        ),
        (
            "qwen_1_5",
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n<video>\nWhat colour?<|im_end|>\n"
            "<|im_start|>assistant\nRed.<|im_end|>\n<|im_start|>user\nWhich way?<|im_end|>\n<|im_start|>assistant\n",
        ),
    ],
)
def test_conversation_system_override(name: str, expected: str) -> None:
    assert TEMPLATES[name].render_conversation(TWO_TURNS, system="Be brief.") == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [  # the seeds' `if message:` else-branch: an empty message renders its role alone
        ("vicuna_v1", f"{VICUNA} USER: <video>\nWhat colour? ASSISTANT:USER: Which way? ASSISTANT:"),
        ("mistral_instruct", "[INST] <video>\nWhat colour? [/INST][INST] Which way? [/INST]"),
    ],
)
def test_empty_assistant_message_follows_the_seed(name: str, expected: str) -> None:
    messages = [TWO_TURNS[0], ("assistant", ""), TWO_TURNS[2]]
    assert TEMPLATES[name].render_conversation(messages) == expected


def test_hf_chat_renders_the_whole_message_list() -> None:
    from videolmm.toy.tiny import build_tokenizer

    out = TEMPLATES["hf_chat"].render_conversation(THREE_TURNS, system="S", tokenizer=build_tokenizer())
    assert out == (
        "S USER: <video>\nWhat colour? ASSISTANT: Red.</s>USER: Which way? ASSISTANT: Right.</s>USER: How fast? "
        "ASSISTANT:"
    )


@pytest.mark.parametrize("name", ["vicuna_v1", "v1", "llava_v1", "qwen_1_5", "mistral_direct"])
def test_hf_chat_with_a_converted_checkpoints_template_matches_the_builtin(name: str) -> None:
    """A converted checkpoint's chat template (videolmm.convert) gives the same conversation."""
    from videolmm.convert.chat_templates import chat_template
    from videolmm.toy.tiny import build_tokenizer

    tokenizer = build_tokenizer()
    tokenizer.chat_template = chat_template(name)
    hf = TEMPLATES["hf_chat"].render_conversation(THREE_TURNS, system=TEMPLATES[name].system, tokenizer=tokenizer)
    assert hf == TEMPLATES[name].render_conversation(THREE_TURNS)


@pytest.mark.parametrize(
    ("messages", "match"),
    [
        ([("assistant", "a"), ("user", "q")], "turn 0 is 'assistant'"),
        ([("user", "q"), ("user", "q2")], "turn 1 is 'user'"),
        ([("user", "q"), ("assistant", "a")], "end with a user turn"),
        ([], "at least one user turn"),
    ],
)
def test_malformed_conversations_are_refused(messages: list[tuple[str, str]], match: str) -> None:
    with pytest.raises(PromptError, match=match):
        TEMPLATES["vicuna_v1"].render_conversation(messages)


def test_a_single_turn_template_refuses_a_conversation_but_renders_one_turn() -> None:
    plain = PromptTemplate(name="plain", format="Q: {content}\nA:")
    assert plain.render_conversation([("user", "<video>\nx")]) == "Q: <video>\nx\nA:"
    with pytest.raises(PromptError, match="single question"):
        plain.render_conversation(TWO_TURNS)


# ---------------------------------------------------------------- turns and their visuals


def test_layout_assigns_the_flat_visuals_to_turns_in_order() -> None:
    turns = (Turn("user", "a", videos=1, images=1), Turn("assistant", "b"), Turn("user", "c"), Turn("assistant", "d"))
    slots = conversation_layout(turns, "e", n_videos=2, n_images=1)
    assert [(s.role, s.text, s.videos, s.images) for s in slots] == [
        ("user", "a", range(0, 1), range(0, 1)),
        ("assistant", "b", range(1, 1), range(1, 1)),
        ("user", "c", range(1, 1), range(1, 1)),
        ("assistant", "d", range(1, 1), range(1, 1)),
        ("user", "e", range(1, 2), range(1, 1)),
    ]


@pytest.mark.parametrize(
    ("turns", "match"),
    [
        ((Turn("assistant", "a"),), r"turns\[0\] is 'assistant'"),
        ((Turn("user", "a"), Turn("user", "b")), r"turns\[1\] is 'user'"),
        ((Turn("user", "a"),), "last of the turns must be an assistant turn"),
        ((Turn("user", "a"), Turn("assistant", "b", videos=1)), r"turns\[1\]: an assistant turn carries no"),
        ((Turn("user", "a"), Turn("assistant", "see <video>")), r"turns\[1\]: an assistant turn carries no"),
        ((Turn("user", "a", videos=2), Turn("assistant", "b")), "carry 2 video"),
        ((Turn("user", "a", images=-1), Turn("assistant", "b")), "negative"),
    ],
)
def test_layout_refuses_malformed_turns_naming_the_request(turns: tuple[Turn, ...], match: str) -> None:
    with pytest.raises(PromptError, match=match) as excinfo:
        conversation_layout(turns, "q", n_videos=1, n_images=0, request_id="r-7")
    assert "request r-7" in str(excinfo.value)


@pytest.fixture(scope="module")
def lnv(tiny_llava_next_video: Path) -> Engine:
    return load_engine(str(tiny_llava_next_video), num_frames=4, load=CPU)


def test_engine_puts_each_turns_visuals_before_its_text(lnv: Engine, clips: dict[str, Path]) -> None:
    video = str(clips["red_right"])
    request = Request(
        question="And this one?",
        videos=(video, video),
        images=("img",),
        turns=(Turn("user", "What colour?", videos=1, images=1), Turn("assistant", "Red.")),
    )
    assert lnv.render_prompt(request) == (
        f"{VICUNA} USER: <image>\n<video>\nWhat colour? ASSISTANT: Red.</s>USER: <video>\nAnd this one? ASSISTANT:"
    )


def test_engine_without_turns_renders_as_before(lnv: Engine) -> None:
    request = Request(question="What colour?", videos=("v",), images=("i",), system_prompt="S")
    assert lnv.render_prompt(request) == "S USER: <image>\n<video>\nWhat colour? ASSISTANT:"


def test_time_instruction_goes_with_the_turn_that_carries_the_video(
    tiny_llava_video_qwen2: Path, clips: dict[str, Path]
) -> None:
    engine = load_engine(str(tiny_llava_video_qwen2), num_frames=4, load=CPU, load_model=False)
    video = str(clips["red_right"])
    frames = [engine.load_video(video)]
    turns = (Turn("user", "What colour?", videos=1), Turn("assistant", "Red."))
    request = Request(question="Which way?", videos=(video,), turns=turns)
    prompt = engine.render_prompt(request, frames)
    single = engine.render_prompt(Request(question="What colour?", videos=(video,)), frames)
    first_turn = single[: single.index("<|im_start|>assistant\n")]
    assert prompt == (
        f"{first_turn}<|im_start|>assistant\nRed.<|im_end|>\n<|im_start|>user\nWhich way?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert prompt.count("The video lasts for") == 1
    assert "\nThe video lasts for" in first_turn and first_turn.endswith(".\nWhat colour?<|im_end|>\n")


def test_conversation_generates_greedily_over_the_whole_history(lnv: Engine, clips: dict[str, Path]) -> None:
    video = str(clips["red_right"])
    gen = GenerationSettings(max_new_tokens=4)
    turns = (Turn("user", "What colour is the square?", videos=1), Turn("assistant", "Red."))
    multi, again, single = lnv.generate(
        [
            Request(question="Which way does it move?", videos=(video,), turns=turns, generation=gen),
            Request(question="Which way does it move?", videos=(video,), turns=turns, generation=gen),
            Request(question="Which way does it move?", videos=(video,), generation=gen),
        ]
    )
    assert multi.ok and single.ok, (multi.error, single.error)
    assert multi.text == again.text
    assert multi.usage.visual_tokens == single.usage.visual_tokens > 0
    assert multi.usage.prompt_tokens > single.usage.prompt_tokens
    assert "ASSISTANT: Red.</s>USER: Which way does it move? ASSISTANT:" in multi.prompt


def test_a_long_history_is_refused_by_the_context_check(lnv: Engine, clips: dict[str, Path]) -> None:
    """The context check counts every turn: a short question after a long history is refused."""
    history = (
        Turn("user", "Describe the clip.", videos=1),
        Turn("assistant", "word " * 1500),
        Turn("user", "More."),
        Turn("assistant", "word " * 1500),
    )
    short = (history[0], Turn("assistant", "word " * 100))
    clip = str(clips["red_right"])
    gen = GenerationSettings(max_new_tokens=2)
    long_one, short_one = lnv.generate(
        [
            Request(question="Why?", videos=(clip,), turns=history, generation=gen, request_id="hx"),
            Request(question="Why?", videos=(clip,), turns=short, generation=gen),
        ]
    )
    assert long_one.error is not None and long_one.error.startswith("ContextLengthExceeded")
    assert "request hx" in long_one.error and "exceed the model's context" in long_one.error
    assert short_one.ok, short_one.error


def test_mistral_instruct_wraps_a_given_system_message_on_a_single_turn_too() -> None:
    """LLAMA_2's ``wrap_sys`` applies to the first user message whatever the turn count; with the
    template's own (empty) system message a single turn is the plain ``[INST] ... [/INST]``."""
    from videolmm.models.prompts import BUILTIN_TEMPLATES

    template = {t.name: t for t in BUILTIN_TEMPLATES}["mistral_instruct"]
    assert template.render("<video>\nQ?") == "[INST] <video>\nQ? [/INST]"
    assert template.render("<video>\nQ?", system="S") == "[INST] <<SYS>>\nS\n<</SYS>>\n\n<video>\nQ? [/INST]"
