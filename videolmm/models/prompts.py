"""Conversation templates, byte-exact to the seeds' own code.

A template turns the user *content* (visual placeholders, then the question) into the exact
prompt string a checkpoint was trained with. The strings below follow the seeds'
``conversation.py`` (LLaVA-NeXT, Video-LLaVA, LLaVA-Hound) — see docs/models.md and
``../shared/docs/seed-facts.md`` §1 — and are pinned by snapshot tests.

``hf_chat`` instead renders the checkpoint's own chat template (``tokenizer.apply_chat_template``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from videolmm.errors import PromptError

VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
#: The placeholder strings the core understands in user text.
PLACEHOLDERS = ("<image>", "<video>")

LLAVA_V1_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)


@dataclass(frozen=True)
class PromptTemplate:
    """One conversation format.

    Attributes:
        name: registry name (``vicuna_v1``, ``mistral_direct``, ...).
        format: the single-turn prompt with ``{system}`` and ``{content}`` fields, ending where
            the assistant's answer starts.
        system: the default system message (empty when the format has none).
        description: where the format comes from.
        use_chat_template: render with the tokenizer's chat template instead of ``format``.
    """

    name: str
    format: str = "{content}"
    system: str = ""
    description: str = ""
    use_chat_template: bool = False

    def render(self, content: str, *, system: str | None = None, tokenizer: Any = None) -> str:
        """Return the prompt for one user turn.

        Args:
            content: visual placeholders and question, e.g. ``"<video>\\nWhat happens?"``.
            system: replaces the template's system message when not None.
            tokenizer: needed only by chat-template templates (``hf_chat``).

        Returns:
            The full prompt text, ending where generation starts.
        """
        sys_msg = self.system if system is None else system
        if not self.use_chat_template:
            return self.format.format(system=sys_msg, content=content)
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            raise PromptError(f"template {self.name!r} needs a tokenizer with a chat template")
        return render_chat_template(tokenizer, content, sys_msg)


def _typed_parts(content: str) -> list[dict[str, str]]:
    """Split content into the typed parts multimodal chat templates expect."""
    parts: list[dict[str, str]] = []
    pattern = "(" + "|".join(re.escape(p) for p in PLACEHOLDERS) + ")"
    for piece in re.split(pattern, content):
        if piece in PLACEHOLDERS:
            parts.append({"type": piece.strip("<>")})
        elif piece.strip("\n"):
            parts.append({"type": "text", "text": piece.strip("\n")})
    return parts


def render_chat_template(tokenizer: Any, content: str, system: str = "") -> str:
    """Render one user turn with the checkpoint's chat template.

    llava-hf templates render typed parts (``{"type": "video"}``, ``{"type": "text"}``) and
    drop plain-string content; simpler templates take a string. The typed form is tried
    first and kept when it carries every placeholder and the text; else the string form.

    Raises:
        PromptError: neither form keeps the question and its placeholders.
    """

    def render(user_content: Any) -> str:
        messages: list[dict[str, Any]] = [{"role": "user", "content": user_content}]
        if system:
            messages.insert(0, {"role": "system", "content": system})
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def complete(prompt: str) -> bool:
        text_ok = all(p["text"] in prompt for p in parts if p["type"] == "text")
        return text_ok and all(prompt.count(tok) >= content.count(tok) for tok in PLACEHOLDERS)

    parts = _typed_parts(content)
    last_error: Exception | None = None
    for candidate in (parts, content):
        try:
            prompt = render(candidate)
        except Exception as exc:  # a template that rejects this content form; try the other
            last_error = exc
            continue
        if complete(prompt):
            return prompt
    raise PromptError("the checkpoint's chat template dropped the question or its placeholders") from last_error


def build_content(question: str, placeholders: Sequence[str]) -> str:
    """Put one placeholder line per visual before the question, as the seeds do.

    ``build_content("Why?", ["<video>"])`` → ``"<video>\\nWhy?"``. A question that already
    contains placeholders is used as written; then their count must match the visuals.

    Raises:
        PromptError: the question holds a different number of placeholders than visuals.
    """
    if not any(tok in question for tok in PLACEHOLDERS):
        return "".join(f"{tok}\n" for tok in placeholders) + question
    for tok in PLACEHOLDERS:
        want = sum(1 for p in placeholders if p == tok)
        have = question.count(tok)
        if have != want:
            raise PromptError(
                f"prompt has {have} {tok} placeholder(s) but the request has {want} matching input(s): "
                f"{question[:80]!r}"
            )
    return question


BUILTIN_TEMPLATES: tuple[PromptTemplate, ...] = (
    PromptTemplate(
        name="vicuna_v1",
        format="{system} USER: {content} ASSISTANT:",
        system=VICUNA_SYSTEM,
        description="LLaVA-NeXT conv_vicuna_v1 (SeparatorStyle.TWO, sep ' '): LLaVA-NeXT-Video-7B / 7B-DPO",
    ),
    PromptTemplate(
        name="v1",
        format="{system} USER: {content} ASSISTANT:",
        system=VICUNA_SYSTEM,
        description="LLaVA-Hound conv 'v1' (curious user): LLaVA-Hound Pretrain / SFT / DPO",
    ),
    PromptTemplate(
        name="llava_v1",
        format="{system} USER: {content} ASSISTANT:",
        system=LLAVA_V1_SYSTEM,
        description="Video-LLaVA conv_llava_v1 (curious human): Video-LLaVA-7B",
    ),
    PromptTemplate(
        name="mistral_direct",
        format="<|im_start|>system\n{system}<|im_end|><|im_start|>user\n{content}<|im_end|><|im_start|>assistant\n",
        system="Answer the questions.",
        description="LLaVA-NeXT conv_mistral_direct (MPT style, no newline after <|im_end|>): LLaVA-NeXT-Video-34B",
    ),
    PromptTemplate(
        name="mistral_instruct",
        format="[INST] {content} [/INST]",
        description="LLaVA-NeXT conv_mistral_instruct (LLAMA_2 style, empty system): LLaVA-NeXT-Video-7B-32K",
    ),
    PromptTemplate(
        name="qwen_1_5",
        format="<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{content}<|im_end|>\n<|im_start|>assistant\n",
        system="You are a helpful assistant.",
        description="LLaVA-NeXT conv_qwen_1_5 (CHATML): LLaVA-Video-7B/72B-Qwen2",
    ),
    PromptTemplate(
        name="hf_chat",
        use_chat_template=True,
        description="the checkpoint's own chat template (tokenizer.apply_chat_template)",
    ),
)


__all__ = ["BUILTIN_TEMPLATES", "LLAVA_V1_SYSTEM", "PromptTemplate", "VICUNA_SYSTEM", "build_content"]
