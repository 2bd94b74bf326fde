"""Jinja chat templates that render the seeds' conversation formats byte-exact.

The engine builds prompts itself (:mod:`videolmm.models.prompts`); these templates are what a
converted (or tiny) checkpoint stores as its tokenizer's ``chat_template``, so that
``tokenizer.apply_chat_template`` and the ``hf_chat`` template give the same single-turn prompt
as the seed's conversation, system prompt included (transformers' own templates for these
checkpoints omit it, seed-facts §1a). Multi-turn follows the seeds' separator rules.

Content may be a string or a list of typed parts (``{"type": "video"}``, ``{"type": "text",
"text": ...}``): placeholders first, one per line, then the text.
"""

from __future__ import annotations

from videolmm.errors import ConfigError
from videolmm.models.prompts import BUILTIN_TEMPLATES

_CONTENT = (
    "{%- macro content(c) -%}"
    "{%- if c is string -%}{{ c }}"
    "{%- else -%}"
    "{%- for part in c if part['type'] in ['image', 'video'] -%}{{ '<' + part['type'] + '>\\n' }}{%- endfor -%}"
    "{{ c | selectattr('type', 'equalto', 'text') | map(attribute='text') | join('\\n') }}"
    "{%- endif -%}"
    "{%- endmacro -%}"
)


def _system(default: str) -> str:
    return (
        "{%- if messages and messages[0]['role'] == 'system' -%}"
        "{%- set sys = content(messages[0]['content']) -%}{%- set msgs = messages[1:] -%}"
        "{%- else -%}"
        f"{{%- set sys = {default!r} -%}}{{%- set msgs = messages -%}}"
        "{%- endif -%}"
    )


def _vicuna(system: str) -> str:
    """LLaVA ``SeparatorStyle.TWO``: ``{sys} USER: {q} ASSISTANT: {a}</s>USER: ...``."""
    return (
        _CONTENT + _system(system) + "{{ sys + ' ' }}"
        "{%- for m in msgs -%}"
        "{%- if m['role'] == 'user' -%}{{ 'USER: ' + content(m['content']) + ' ' }}"
        "{%- else -%}{{ 'ASSISTANT: ' + content(m['content']) + '</s>' }}{%- endif -%}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{ 'ASSISTANT:' }}{%- endif -%}"
    )


def _chatml(system: str, newline: str) -> str:
    """LLaVA ``CHATML`` (``newline="\\n"``, qwen_1_5) or ``MPT`` (``newline=""``, mistral_direct)."""
    nl = repr(newline)
    return (
        _CONTENT
        + _system(system)
        + f"{{%- if sys -%}}{{{{ '<|im_start|>system\\n' + sys + '<|im_end|>' + {nl} }}}}{{%- endif -%}}"
        "{%- for m in msgs -%}"
        f"{{{{ '<|im_start|>' + m['role'] + '\\n' + content(m['content']) + '<|im_end|>' + {nl} }}}}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
    )


def _llama2(system: str) -> str:
    """LLaVA ``LLAMA_2``: ``[INST] {q} [/INST] {a} </s><s>[INST] ...`` (system wrapped in <<SYS>>)."""
    return (
        _CONTENT + _system(system) + "{%- for m in msgs -%}"
        "{%- if m['role'] == 'user' -%}"
        "{%- set q = content(m['content']) -%}"
        "{%- if loop.first and sys -%}{%- set q = '<<SYS>>\\n' + sys + '\\n<</SYS>>\\n\\n' + q -%}{%- endif -%}"
        "{{ ('' if loop.first else '<s>') + '[INST] ' + q + ' [/INST]' }}"
        "{%- else -%}{{ ' ' + content(m['content']) + ' </s>' }}{%- endif -%}"
        "{%- endfor -%}"
    )


def chat_template(template: str) -> str:
    """The Jinja chat template for one of the seeds' conversation templates.

    Args:
        template: ``vicuna_v1``, ``v1``, ``llava_v1``, ``qwen_1_5``, ``mistral_direct`` or
            ``mistral_instruct``.

    Returns:
        A Jinja string for ``tokenizer.chat_template``.

    Raises:
        ConfigError: no chat template is defined for ``template``.
    """
    systems = {t.name: t.system for t in BUILTIN_TEMPLATES}
    builders = {
        "vicuna_v1": lambda: _vicuna(systems["vicuna_v1"]),
        "v1": lambda: _vicuna(systems["v1"]),
        "llava_v1": lambda: _vicuna(systems["llava_v1"]),
        "qwen_1_5": lambda: _chatml(systems["qwen_1_5"], "\n"),
        "mistral_direct": lambda: _chatml(systems["mistral_direct"], ""),
        "mistral_instruct": lambda: _llama2(systems["mistral_instruct"]),
    }
    if template not in builders:
        raise ConfigError(f"no chat template for conversation {template!r}; known: {sorted(builders)}")
    return builders[template]()


__all__ = ["chat_template"]
