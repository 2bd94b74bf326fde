"""Byte-exact prompt snapshots per template (strings from the seeds' conversation code)."""

from __future__ import annotations

import pytest

from videolmm.errors import PromptError
from videolmm.models.prompts import BUILTIN_TEMPLATES, build_content

TEMPLATES = {t.name: t for t in BUILTIN_TEMPLATES}
Q = "What is the man doing?"

SNAPSHOTS = {
    # LLaVA-NeXT conv_vicuna_v1 (LLaVA-NeXT-Video-7B / 7B-DPO)
    "vicuna_v1": "A chat between a curious user and an artificial intelligence assistant. The assistant gives "
    "helpful, detailed, and polite answers to the user's questions. USER: <video>\nWhat is the man doing? "
    "ASSISTANT:",
    # LLaVA-Hound conv "v1"
    "v1": "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the user's questions. USER: <video>\nWhat is the man doing? ASSISTANT:",
    # Video-LLaVA conv_llava_v1 ("curious human")
    "llava_v1": "A chat between a curious human and an artificial intelligence assistant. The assistant gives "
    "helpful, detailed, and polite answers to the human's questions. USER: <video>\nWhat is the man doing? "
    "ASSISTANT:",
    # LLaVA-NeXT conv_mistral_direct (34B): no newline after <|im_end|>
    "mistral_direct": "<|im_start|>system\nAnswer the questions.<|im_end|><|im_start|>user\n<video>\n"
    "What is the man doing?<|im_end|><|im_start|>assistant\n",
    # LLaVA-NeXT conv_mistral_instruct (7B-32K): LLAMA_2 style with an empty system
    "mistral_instruct": "[INST] <video>\nWhat is the man doing? [/INST]",
    # LLaVA-NeXT conv_qwen_1_5 (LLaVA-Video-Qwen2)
    "qwen_1_5": "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<video>\n"
    "What is the man doing?<|im_end|>\n<|im_start|>assistant\n",
}


@pytest.mark.parametrize("name", sorted(SNAPSHOTS))
def test_template_snapshot(name: str) -> None:
    content = build_content(Q, ["<video>"])
    assert TEMPLATES[name].render(content) == SNAPSHOTS[name]


def test_every_builtin_template_has_a_snapshot_or_is_chat() -> None:
    assert {t.name for t in BUILTIN_TEMPLATES if not t.use_chat_template} == set(SNAPSHOTS)


def test_system_prompt_override() -> None:
    out = TEMPLATES["vicuna_v1"].render("<video>\nHi", system="Be brief.")
    assert out == "Be brief. USER: <video>\nHi ASSISTANT:"


def test_mixed_image_and_video_content_order() -> None:
    assert build_content(Q, ["<image>", "<video>"]) == "<image>\n<video>\n" + Q


def test_inline_placeholders_are_kept_when_counts_match() -> None:
    assert build_content("Compare <video> and <video>.", ["<video>", "<video>"]) == "Compare <video> and <video>."


@pytest.mark.parametrize(
    ("question", "placeholders"),
    [("<video>\n<video>\nTwo?", ["<video>"]), ("<image> what?", ["<video>"]), ("<video> here", [])],
)
def test_placeholder_count_mismatch_raises(question: str, placeholders: list[str]) -> None:
    with pytest.raises(PromptError, match="placeholder"):
        build_content(question, placeholders)


def test_hf_chat_needs_a_tokenizer() -> None:
    with pytest.raises(PromptError, match="chat template"):
        TEMPLATES["hf_chat"].render("<video>\nHi")


def test_hf_chat_renders_the_checkpoints_template() -> None:
    from videolmm.toy.tiny import build_tokenizer

    tok = build_tokenizer()
    out = TEMPLATES["hf_chat"].render("<video>\nWhat colour?", tokenizer=tok)
    assert out.endswith("USER: <video>\nWhat colour? ASSISTANT:")


def test_hf_chat_with_a_typed_parts_template() -> None:
    """llava-hf templates render typed parts and drop plain strings; both forms must work."""
    from videolmm.models.prompts import render_chat_template
    from videolmm.toy.tiny import build_tokenizer

    tok = build_tokenizer()
    tok.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }} {% if m['content'] is string %}{% else %}"
        "{% for c in m['content'] %}{% if c['type'] == 'video' %}<video>\n{% elif c['type'] == 'text' %}"
        "{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>{% endfor %}<|im_start|>assistant\n"
    )
    assert render_chat_template(tok, "<video>\nWhat colour?") == (
        "<|im_start|>user <video>\nWhat colour?<|im_end|><|im_start|>assistant"  # jinja drops the final newline
    )


def test_7b_32k_defaults_to_mistral_direct_as_its_maintainers_state() -> None:
    """LLaVA-VL/LLaVA-NeXT#54: "the conv model should be mistral_direct for LLaVA-NeXT-Video-7B-32K";
    mistral_instruct (transformers' chat template format) stays one option away."""
    from types import SimpleNamespace

    from videolmm.models.families.llava_next_video.family import LLAVA_NEXT_VIDEO

    def config(model_type: str, vocab: int) -> SimpleNamespace:
        return SimpleNamespace(text_config=SimpleNamespace(model_type=model_type, vocab_size=vocab))

    assert LLAVA_NEXT_VIDEO.default_template(config("mistral", 32064)) == "mistral_direct"  # 7B-32K
    assert LLAVA_NEXT_VIDEO.default_template(config("llama", 64064)) == "mistral_direct"  # 34B on Yi
    assert LLAVA_NEXT_VIDEO.default_template(config("llama", 32064)) == "vicuna_v1"  # 7B / 7B-DPO
    assert "mistral_instruct" in TEMPLATES


@pytest.mark.parametrize(
    ("name", "stop"),
    [("vicuna_v1", "</s>"), ("v1", "</s>"), ("llava_v1", "</s>"), ("mistral_instruct", "</s>")]
    + [("mistral_direct", "<|im_end|>"), ("qwen_1_5", "<|im_end|>"), ("hf_chat", "")],
)
def test_each_template_stops_at_the_seeds_separator(name: str, stop: str) -> None:
    """``conv.sep`` (``conv.sep2`` for SeparatorStyle.TWO), where the seeds' KeywordsStoppingCriteria stops."""
    assert TEMPLATES[name].stop == stop
