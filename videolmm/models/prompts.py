"""Conversation templates, byte-exact to the seeds' own code.

A template turns the user *content* (visual placeholders, then the question) into the exact
prompt string a checkpoint was trained with. The strings below follow the seeds'
``conversation.py`` (LLaVA-NeXT, Video-LLaVA, LLaVA-Hound) — see docs/models.md and
``../shared/docs/seed-facts.md`` §1 — and are pinned by snapshot tests.

``hf_chat`` instead renders the checkpoint's own chat template (``tokenizer.apply_chat_template``).

A conversation (earlier user and assistant turns before the question) is rendered by the
template's ``style``, each a copy of one branch of the seeds' ``Conversation.get_prompt``
(LLaVA-VL/LLaVA-NeXT ``llava/conversation.py`` @ df17966; Video-LLaVA
``videollava/conversation.py`` @ 984e65b and LLaVA-Hound-DPO ``llava_hound_dpo/llava/conversation.py``
@ ec2381f have the same ``TWO`` branch):

* ``two`` (``SeparatorStyle.TWO``, sep ``" "``, sep2 ``"</s>"``; vicuna_v1, v1, llava_v1):
  ``{sys} USER: {u1} ASSISTANT: {a1}</s>USER: {u2} ASSISTANT:``
* ``mpt`` (``SeparatorStyle.MPT``, sep ``<|im_end|>``, roles ``<|im_start|>user\n`` /
  ``<|im_start|>assistant\n``; mistral_direct):
  ``<|im_start|>system\n{sys}<|im_end|><|im_start|>user\n{u1}<|im_end|><|im_start|>assistant\n{a1}<|im_end|>...``
* ``llama_2`` (``SeparatorStyle.LLAMA_2``, conv_mistral_instruct: sep ``""``, sep2 ``"</s>"``):
  ``[INST] {u1} [/INST] {a1} </s>[INST] {u2} [/INST]``; a non-empty system is wrapped
  ``<<SYS>>\n{sys}\n<</SYS>>\n\n`` into the first user turn.
* ``chatml`` (``SeparatorStyle.CHATML``, sep ``<|im_end|>``; qwen_1_5):
  ``<|im_start|>system\n{sys}<|im_end|>\n<|im_start|>user\n{u1}<|im_end|>\n<|im_start|>assistant\n{a1}<|im_end|>\n...``

As in the seeds, an empty message renders its role alone (``if message: ... else: ...``). A
single turn is always rendered by ``format`` (byte-identical to single-question prompts).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from videolmm.errors import PromptError
from videolmm.types import Turn

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
        style: how earlier turns are rendered (one of :data:`CONVERSATION_STYLES`: ``two``,
            ``mpt``, ``llama_2``, ``chatml``); empty for a template that renders one turn only
            (a conversation is then refused). Chat-template templates render any conversation.
        stop: the separator the seeds stop at (``conv.sep``, or ``conv.sep2`` for the TWO style:
            their ``KeywordsStoppingCriteria``); it matters where it is not the tokenizer's EOS
            (``<|im_end|>`` is plain text to Mistral's tokenizer).
    """

    name: str
    format: str = "{content}"
    system: str = ""
    description: str = ""
    use_chat_template: bool = False
    style: str = ""
    stop: str = ""

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
            if sys_msg and "{system}" not in self.format and self.style in CONVERSATION_STYLES:
                # a format without a system slot (LLAMA_2's): the seed still wraps a given system message
                return CONVERSATION_STYLES[self.style](sys_msg, [content])
            return self.format.format(system=sys_msg, content=content)
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            raise PromptError(f"template {self.name!r} needs a tokenizer with a chat template")
        return render_chat_template(tokenizer, content, sys_msg)

    def render_conversation(
        self, messages: Sequence[tuple[str, str]], *, system: str | None = None, tokenizer: Any = None
    ) -> str:
        """Return the prompt for a conversation ending with a user turn.

        Args:
            messages: ``(role, content)`` pairs, ``user`` and ``assistant`` alternating from a
                user turn and ending with one; user content holds its placeholders (see
                :func:`build_content`).
            system: replaces the template's system message when not None.
            tokenizer: needed only by chat-template templates (``hf_chat``).

        Returns:
            The full prompt text, ending where the next answer starts. One message renders
            exactly as :meth:`render`.

        Raises:
            PromptError: the roles do not alternate, or the template renders single turns only.
        """
        _check_roles(messages)
        if len(messages) == 1:
            return self.render(messages[0][1], system=system, tokenizer=tokenizer)
        sys_msg = self.system if system is None else system
        if self.use_chat_template:
            if tokenizer is None or not getattr(tokenizer, "chat_template", None):
                raise PromptError(f"template {self.name!r} needs a tokenizer with a chat template")
            return render_chat_messages(tokenizer, messages, sys_msg)
        if self.style not in CONVERSATION_STYLES:
            raise PromptError(
                f"template {self.name!r} renders a single question (no conversation style); "
                "send the question without earlier turns"
            )
        return CONVERSATION_STYLES[self.style](sys_msg, [m for _, m in messages])


def _check_roles(messages: Sequence[tuple[str, str]]) -> None:
    if not messages:
        raise PromptError("a conversation needs at least one user turn")
    for i, (role, _) in enumerate(messages):
        want = "user" if i % 2 == 0 else "assistant"
        if role != want:
            raise PromptError(f"turn {i} is {role!r} but {want!r} was expected: turns alternate from a user turn")
    if messages[-1][0] != "user":
        raise PromptError("a conversation must end with a user turn (the one to answer)")


# Each style below follows one branch of Conversation.get_prompt in LLaVA-VL/LLaVA-NeXT
# llava/conversation.py (df17966); ``texts`` alternate user, assistant, ..., user and the open
# assistant slot (the seeds' ``append_message(roles[1], None)``) is rendered last.


def _style_two(system: str, texts: Sequence[str]) -> str:
    """``SeparatorStyle.TWO`` with sep ``" "``, sep2 ``"</s>"``, roles ``USER``/``ASSISTANT``
    (LLaVA-NeXT conv_vicuna_v1; Video-LLaVA conv_llava_v1; LLaVA-Hound conv_vicuna_v1 "v1")."""
    seps = (" ", "</s>")
    out = system + seps[0]
    for i, message in enumerate([*texts, None]):
        role = ("USER", "ASSISTANT")[i % 2]
        out += f"{role}: {message}{seps[i % 2]}" if message else f"{role}:"
    return out


def _style_mpt(system: str, texts: Sequence[str]) -> str:
    """``SeparatorStyle.MPT`` with sep ``<|im_end|>`` (LLaVA-NeXT conv_mistral_direct): no newline."""
    sep = "<|im_end|>"
    out = f"<|im_start|>system\n{system}{sep}"
    for i, message in enumerate([*texts, None]):
        role = ("<|im_start|>user\n", "<|im_start|>assistant\n")[i % 2]
        out += f"{role}{message}{sep}" if message else role
    return out


def _style_llama_2(system: str, texts: Sequence[str]) -> str:
    """``SeparatorStyle.LLAMA_2`` with sep ``""``, sep2 ``"</s>"`` (LLaVA-NeXT conv_mistral_instruct)."""
    sep, sep2 = "", "</s>"
    out = ""
    for i, message in enumerate(texts):
        if not message:
            continue
        if i == 0 and system:
            message = f"<<SYS>>\n{system}\n<</SYS>>\n\n{message}"
        out += f"{sep}[INST] {message} [/INST]" if i % 2 == 0 else f" {message} {sep2}"
    return out


def _style_chatml(system: str, texts: Sequence[str]) -> str:
    """``SeparatorStyle.CHATML`` with sep ``<|im_end|>`` (LLaVA-NeXT conv_qwen, ``qwen_1_5``); the
    system block is always written, as ``format`` writes it."""
    sep = "<|im_end|>"
    out = f"<|im_start|>system\n{system}{sep}\n"
    for i, message in enumerate([*texts, None]):
        role = ("<|im_start|>user", "<|im_start|>assistant")[i % 2]
        out += f"{role}\n{message}{sep}\n" if message else f"{role}\n"
    return out


#: Conversation styles by name (``PromptTemplate.style``).
CONVERSATION_STYLES = {
    "two": _style_two,
    "mpt": _style_mpt,
    "llama_2": _style_llama_2,
    "chatml": _style_chatml,
}


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
    """Render one user turn with the checkpoint's chat template (see :func:`render_chat_messages`)."""
    return render_chat_messages(tokenizer, [("user", content)], system)


def render_chat_messages(tokenizer: Any, messages: Sequence[tuple[str, str]], system: str = "") -> str:
    """Render a conversation with the checkpoint's chat template: the system message (when not
    empty), then every ``(role, content)`` message, then the generation prompt.

    llava-hf templates render typed parts (``{"type": "video"}``, ``{"type": "text"}``) and
    drop plain-string content; simpler templates take a string. The typed form (for every
    message, assistant text as one text part) is tried first and kept when it carries every
    placeholder and every text; else the string form.

    Raises:
        PromptError: neither form keeps the texts and their placeholders.
    """

    def render(form: str) -> str:
        chat: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
        for role, content in messages:
            typed: Any = _typed_parts(content) if role == "user" else [{"type": "text", "text": content}]
            chat.append({"role": role, "content": typed if form == "typed" else content})
        return tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)

    def complete(prompt: str) -> bool:
        texts = [p["text"] for _, c in messages for p in _typed_parts(c) if p["type"] == "text"]
        want = {tok: sum(c.count(tok) for _, c in messages) for tok in PLACEHOLDERS}
        return all(t in prompt for t in texts) and all(prompt.count(tok) >= n for tok, n in want.items())

    last_error: Exception | None = None
    for form in ("typed", "string"):
        try:
            prompt = render(form)
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


@dataclass(frozen=True)
class TurnSlot:
    """Where one turn of a request sits: its role, text and slice of the request's visuals.

    Attributes:
        role: ``user`` or ``assistant``.
        text: the turn's text (the question for the last turn).
        videos: ``range`` of indices into ``Request.videos`` this turn carries.
        images: ``range`` of indices into ``Request.images`` this turn carries.
    """

    role: str
    text: str
    videos: range
    images: range


def conversation_layout(
    turns: Sequence[Turn], question: str, n_videos: int, n_images: int, *, request_id: str = ""
) -> list[TurnSlot]:
    """Check a request's turns and assign its flat visuals to them, in prompt order.

    The question is the last user turn and carries the visuals the earlier turns do not.

    Raises:
        PromptError: naming the turn: roles that do not alternate from a user turn or do not end
            with an assistant turn before the question, visuals in an assistant turn, negative
            counts, or more visuals than the request has.
    """
    who = f"request {request_id}: " if request_id else ""
    slots: list[TurnSlot] = []
    v = i = 0
    for k, turn in enumerate(turns):
        want = "user" if k % 2 == 0 else "assistant"
        if turn.role != want:
            raise PromptError(
                f"{who}turns[{k}] is {turn.role!r} but {want!r} was expected: turns alternate user and "
                "assistant from a user turn"
            )
        if turn.videos < 0 or turn.images < 0:
            raise PromptError(f"{who}turns[{k}] has a negative visual count")
        if turn.role == "assistant" and (turn.videos or turn.images or any(t in turn.text for t in PLACEHOLDERS)):
            raise PromptError(f"{who}turns[{k}]: an assistant turn carries no images or videos")
        slots.append(TurnSlot(turn.role, turn.text, range(v, v + turn.videos), range(i, i + turn.images)))
        v, i = v + turn.videos, i + turn.images
    if turns and turns[-1].role != "assistant":
        raise PromptError(f"{who}the last of the turns must be an assistant turn: the question is the next user turn")
    if v > n_videos or i > n_images:
        raise PromptError(
            f"{who}the turns carry {v} video(s) and {i} image(s) but the request has {n_videos} and {n_images}"
        )
    slots.append(TurnSlot("user", question, range(v, n_videos), range(i, n_images)))
    return slots


BUILTIN_TEMPLATES: tuple[PromptTemplate, ...] = (
    PromptTemplate(
        name="vicuna_v1",
        format="{system} USER: {content} ASSISTANT:",
        system=VICUNA_SYSTEM,
        description="LLaVA-NeXT conv_vicuna_v1 (SeparatorStyle.TWO, sep ' '): LLaVA-NeXT-Video-7B / 7B-DPO",
        style="two",
        stop="</s>",
    ),
    PromptTemplate(
        name="v1",
        format="{system} USER: {content} ASSISTANT:",
        system=VICUNA_SYSTEM,
        description="LLaVA-Hound conv 'v1' (curious user): LLaVA-Hound Pretrain / SFT / DPO",
        style="two",
        stop="</s>",
    ),
    PromptTemplate(
        name="llava_v1",
        format="{system} USER: {content} ASSISTANT:",
        system=LLAVA_V1_SYSTEM,
        description="Video-LLaVA conv_llava_v1 (curious human): Video-LLaVA-7B",
        style="two",
        stop="</s>",
    ),
    PromptTemplate(
        name="mistral_direct",
        format="<|im_start|>system\n{system}<|im_end|><|im_start|>user\n{content}<|im_end|><|im_start|>assistant\n",
        system="Answer the questions.",
        description="LLaVA-NeXT conv_mistral_direct (MPT style, no newline after <|im_end|>): LLaVA-NeXT-Video-34B "
        "/ 34B-DPO, and 7B-32K as its maintainers state (LLaVA-VL/LLaVA-NeXT#54)",
        style="mpt",
        stop="<|im_end|>",
    ),
    PromptTemplate(
        name="mistral_instruct",
        format="[INST] {content} [/INST]",
        description="LLaVA-NeXT conv_mistral_instruct (LLAMA_2 style, empty system): the format of 7B-32K's "
        "transformers chat template; an option for 7B-32K (conv_template=mistral_instruct)",
        style="llama_2",
        stop="</s>",
    ),
    PromptTemplate(
        name="qwen_1_5",
        format="<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{content}<|im_end|>\n<|im_start|>assistant\n",
        system="You are a helpful assistant.",
        description="LLaVA-NeXT conv_qwen_1_5 (CHATML): LLaVA-Video-7B/72B-Qwen2",
        style="chatml",
        stop="<|im_end|>",
    ),
    PromptTemplate(
        name="hf_chat",
        use_chat_template=True,
        description="the checkpoint's own chat template (tokenizer.apply_chat_template)",
    ),
)


__all__ = [
    "BUILTIN_TEMPLATES",
    "CONVERSATION_STYLES",
    "LLAVA_V1_SYSTEM",
    "PromptTemplate",
    "VICUNA_SYSTEM",
    "build_content",
    "conversation_layout",
    "render_chat_messages",
    "TurnSlot",
]
