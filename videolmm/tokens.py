"""Prompt text → token ids exactly as the seeds build them (``tokenizer_image_token``).

The seeds never tokenize a prompt as one string. LLaVA-NeXT (``llava/mm_utils.py``,
``tokenizer_image_token``; the ``video_inference`` demo and lmms-eval's ``llava_vid`` call it),
LLaVA-Hound-DPO and Video-LLaVA (``tokenizer_X_token``, the same algorithm) split the prompt at
the visual placeholder, tokenize every text chunk **on its own** (special tokens included, so a
Llama tokenizer starts every chunk with BOS and with SentencePiece's dummy-prefix ``▁``) and
join the chunks with the visual token:

* the first chunk keeps its leading BOS; every later chunk loses its first token (that BOS);
* so ``USER: <video>\\nWhat`` gives ``... ▁USER : ▁ <video> ▁ <0x0A> What ...``: on Llama-family
  SentencePiece tokenizers the ``▁`` before ``\\n`` is id ``29871``, the artefact the checkpoints
  were trained with.

transformers' processors tokenize the whole expanded string instead; there the ``▁`` after a
special token appears only with ``legacy=True`` (Metaspace ``prepend_scheme="always"``), and
not with ``legacy=False`` (``"first"``). :func:`seed_token_ids` reproduces the seed's ids whatever
the tokenizer's ``legacy`` setting; :class:`SeedTokenization` applies it to a processor's output
(the visual token runs the processor expanded stay as they are, the text around them is
re-tokenized chunk by chunk). For byte-level BPE tokenizers (Qwen2, the tiny checkpoints) the
chunked ids equal the whole-string ids, so nothing changes there.

A leaf module (it imports only ``videolmm.errors``); torch is imported inside the functions only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from videolmm.errors import PromptError


def chunk_ids(tokenizer: Any, chunks: Sequence[str]) -> list[list[int]]:
    """Token ids of each text chunk tokenized on its own, special tokens added (as the seeds'
    ``tokenizer(chunk).input_ids``); equal chunks are tokenized once.

    The seeds load Llama-family tokenizers with ``use_fast=False`` (LLaVA-NeXT
    ``llava/model/builder.py``): SentencePiece adds its dummy ``▁`` to *every* chunk, also one that
    starts with a space (``" with"`` → ``▁ ▁with``). A tokenizers ``Metaspace`` pre-tokenizer skips
    the prefix when the text already starts with ``▁``; for those tokenizers such a chunk gets one
    more space, which gives SentencePiece's pieces.
    """
    unique = list(dict.fromkeys(chunks))
    pad_space = _metaspace_skips_leading_space(tokenizer)
    texts = [" " + c if pad_space and c.startswith(" ") else c for c in unique]
    encoded = tokenizer(texts, add_special_tokens=True)["input_ids"]
    by_text = {text: [int(i) for i in ids] for text, ids in zip(unique, encoded, strict=True)}
    return [by_text[c] for c in chunks]


def _metaspace_skips_leading_space(tokenizer: Any) -> bool:
    """True for tokenizers whose pre-tokenizer is a ``Metaspace`` that prepends ``▁`` (transformers 5
    Llama tokenizers); their prefix is skipped for text that starts with a space."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    pre = getattr(backend, "pre_tokenizer", None)
    return type(pre).__name__ == "Metaspace" and getattr(pre, "prepend_scheme", "never") != "never"


def join_chunks(tokenizer: Any, chunks: Sequence[Sequence[int]], separators: Sequence[Sequence[int]]) -> list[int]:
    """Join per-chunk ids with the visual ids between them, the seeds' way.

    Args:
        tokenizer: gives ``bos_token_id``.
        chunks: the ids of each text chunk (``len(separators) + 1`` of them).
        separators: the ids that stand where each placeholder was.

    Returns:
        BOS (when the first chunk starts with it), then every chunk without its first token
        when the first chunk started with BOS (the seeds drop ``offset`` tokens of every chunk),
        with the separators between.
    """
    if len(chunks) != len(separators) + 1:
        raise ValueError(f"{len(chunks)} chunks need {len(chunks) - 1} separators, got {len(separators)}")
    bos = getattr(tokenizer, "bos_token_id", None)
    offset = 1 if chunks and chunks[0] and bos is not None and chunks[0][0] == bos else 0
    ids: list[int] = [int(bos)] if offset else []
    for k, chunk in enumerate(chunks):
        if k:
            ids.extend(int(i) for i in separators[k - 1])
        ids.extend(int(i) for i in chunk[offset:])
    return ids


def seed_token_ids(tokenizer: Any, text: str, visual_ids: Mapping[str, int]) -> list[int]:
    """The seeds' ids for ``text``: each visual placeholder string (``<video>``, ``<image>``) becomes
    its one id, the text between is tokenized chunk by chunk (:func:`join_chunks`)."""
    pieces = _split(text, visual_ids)
    chunks, tokens = pieces[0::2], pieces[1::2]
    return join_chunks(tokenizer, chunk_ids(tokenizer, chunks), [[visual_ids[t]] for t in tokens])


def _split(text: str, tokens: Mapping[str, int] | Sequence[str]) -> list[str]:
    pattern = "|".join(re.escape(t) for t in sorted(tokens, key=len, reverse=True))
    return re.split(f"({pattern})", text)


def _visual_runs(ids: Sequence[int], visual: set[int]) -> list[list[int]]:
    """The maximal runs of consecutive visual ids in ``ids``."""
    runs: list[list[int]] = []
    previous = False
    for i in ids:
        if i in visual:
            if previous:
                runs[-1].append(i)
            else:
                runs.append([i])
        previous = i in visual
    return runs


def retokenize_row(tokenizer: Any, text: str, row_ids: Sequence[int], visual_ids: Mapping[str, int]) -> list[int]:
    """The seeds' ids for one prompt whose placeholders a processor has already expanded.

    Args:
        tokenizer: the checkpoint's tokenizer.
        text: the prompt as rendered (each placeholder once, before the processor's expansion).
        row_ids: the processor's ids for it, padding removed.
        visual_ids: placeholder string → its id.

    Returns:
        The text chunks tokenized as :func:`seed_token_ids` does, with each placeholder
        replaced by the run of visual ids the processor put there (placeholders with nothing
        between them share one run, as their expansions touch).

    Raises:
        PromptError: the processor's visual runs do not match the placeholders.
    """
    chunks = _split(text, visual_ids)[0::2]
    # placeholders with an empty chunk between them expand into one run (the seeds' empty chunk adds nothing)
    merged = chunks if len(chunks) == 1 else [chunks[0], *(c for c in chunks[1:-1] if c), chunks[-1]]
    runs = _visual_runs(row_ids, set(visual_ids.values()))
    if len(runs) != len(merged) - 1:
        raise PromptError(
            f"the processor's ids hold {len(runs)} visual run(s) where the prompt has {len(merged) - 1} "
            "placeholder group(s)"
        )
    return join_chunks(tokenizer, chunk_ids(tokenizer, merged), runs)


class SeedTokenization:
    """Processor mixin: the processor's own output, with ``input_ids`` / ``attention_mask``
    rebuilt as the seeds tokenize (:func:`retokenize_row`), padded on the tokenizer's side.

    Put it first among the bases: ``class P(SeedTokenization, LlavaNextVideoProcessor)``.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        outputs = super().__call__(*args, **kwargs)  # type: ignore[misc]
        text = kwargs.get("text")
        if text is None or "input_ids" not in outputs:
            return outputs
        texts = [text] if isinstance(text, str) else list(text)
        tokenizer = self.tokenizer  # type: ignore[attr-defined]
        visual = _placeholder_ids(self, tokenizer)
        if not visual:
            return outputs
        aligned = [k for k in ("token_type_ids", "mm_token_type_ids") if k in outputs]
        if aligned:
            raise PromptError(
                f"seed tokenization rebuilds input_ids but cannot realign {aligned}; do not request them"
            )
        side = kwargs.get("padding_side") or getattr(tokenizer, "padding_side", "right")
        return _rebuild(outputs, texts, tokenizer, visual, kwargs.get("return_tensors"), side == "left")


def _placeholder_ids(processor: Any, tokenizer: Any) -> dict[str, int]:
    visual: dict[str, int] = {}
    for kind in ("video", "image"):
        token = getattr(processor, f"{kind}_token", None)
        if token:
            token_id = tokenizer.convert_tokens_to_ids(token)
            if token_id is not None and token_id != getattr(tokenizer, "unk_token_id", None):
                visual[token] = int(token_id)
    return visual


def _rebuild(
    outputs: Any, texts: list[str], tokenizer: Any, visual: Mapping[str, int], tensors: Any, left: bool
) -> Any:
    ids_in, mask_in = outputs["input_ids"], outputs.get("attention_mask")
    rows: list[list[int]] = []
    for r, text in enumerate(texts):
        ids = [int(i) for i in ids_in[r]]
        mask = [int(m) for m in mask_in[r]] if mask_in is not None else [1] * len(ids)
        kept = [i for i, m in zip(ids, mask, strict=True) if m]
        rows.append(retokenize_row(tokenizer, text, kept, visual))
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    new_ids, new_mask = [], []
    for row in rows:
        fill = width - len(row)
        new_ids.append([pad] * fill + row if left else row + [pad] * fill)
        new_mask.append([0] * fill + [1] * len(row) if left else [1] * len(row) + [0] * fill)
    if tensors == "pt":
        import torch

        outputs["input_ids"] = torch.tensor(new_ids, dtype=ids_in.dtype)
        outputs["attention_mask"] = torch.tensor(new_mask, dtype=mask_in.dtype if mask_in is not None else torch.long)
    else:
        outputs["input_ids"] = new_ids
        outputs["attention_mask"] = new_mask
    return outputs


def separator_stop(separator: str | None, tokenizer: Any) -> str:
    """The conversation separator the seeds stop at, when it is text rather than a special token.

    The seeds' wrappers stop generation at the template's separator. Where that separator is the
    tokenizer's EOS (or another special token) generation stops there anyway; where it is plain text
    to the tokenizer (``mistral_direct``'s ``<|im_end|>`` on Mistral's tokenizer: LLaVA-NeXT-Video-7B-32K)
    it must be a stop string. Both doors (lmms-eval and Serve) add the returned string to a generation
    request's stop strings; ``""`` when there is none to add.
    """
    special = set(getattr(tokenizer, "all_special_tokens", ()))
    return separator if separator and separator not in special else ""


__all__ = ["SeedTokenization", "chunk_ids", "join_chunks", "retokenize_row", "seed_token_ids", "separator_stop"]


def __getattr__(name: str) -> Any:
    """``SeedTokenizedVideoLlavaProcessor``: transformers' ``VideoLlavaProcessor`` with
    :class:`SeedTokenization` (Video-LLaVA's seed builds ids with ``tokenizer_image_token``; its eight
    adjacent ``<image>`` are one visual run). Created on first use: importing this module imports
    no transformers."""
    if name != "SeedTokenizedVideoLlavaProcessor":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from transformers import VideoLlavaProcessor

    cls = type(name, (SeedTokenization, VideoLlavaProcessor), {"__module__": __name__, "__doc__": __getattr__.__doc__})
    globals()[name] = cls
    return cls
