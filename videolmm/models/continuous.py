"""Iteration-level batching on transformers' own cache and forward (no forked modeling code).

:class:`RunningBatch` holds every running request in one left-padded ``DynamicCache``:

- **join**: newcomers are prefilled together (vision tower and all, one ``model(...)`` call per
  group of equal visual shapes), then their cache rows are left-padded to the running length and
  concatenated on the batch axis; the attention mask is padded the same way, and every row keeps
  its own position ids (``number of real tokens so far``), so a request computes what it would
  alone — the padding is masked out;
- **step**: one forward of one token per row;
- **leave**: a row that meets its EOS, a stop string or ``max_new_tokens`` is dropped from the
  cache at once (``batch_select_indices``), and all-padding columns on the left are trimmed.

:class:`TextStream` turns a row's token ids into deltas with a hold-back buffer, so streamed text
never shows what a stop string later cuts, and the deltas add up to the final answer.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from videolmm.models.batch import DecodedRequest, PreparedBatch, cut_at_stop
from videolmm.types import GenerationSettings, Result, Usage

#: generation_config fields whose logits processors this loop does not apply (greedy parity with
#: ``model.generate`` would break); an engine whose checkpoint sets one runs the static path.
UNSUPPORTED_GENERATION_FIELDS: dict[str, Any] = {
    **dict.fromkeys(("bad_words_ids", "min_new_tokens", "suppress_tokens", "begin_suppress_tokens", "sequence_bias")),
    **dict.fromkeys(("forced_bos_token_id", "forced_eos_token_id", "exponential_decay_length_penalty")),
    **{"repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "encoder_no_repeat_ngram_size": 0, "min_length": 0},
    "renormalize_logits": False,
}


def continuous_unsupported(model: Any) -> str | None:
    """Why ``model`` cannot run the continuous loop faithfully, or None when it can."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    layers = {type(layer).__name__ for layer in DynamicCache(config=model.config).layers}
    if layers - {DynamicLayer.__name__}:
        return f"its cache has {sorted(layers)} layers (sliding window): rows cannot be merged"
    config = getattr(model, "generation_config", None)
    for name, default in UNSUPPORTED_GENERATION_FIELDS.items():
        value = getattr(config, name, default)
        if value not in (default, None) and not (isinstance(value, (list, tuple)) and not value):
            return f"its generation_config sets {name}={value!r}"
    return None


class TextStream:
    """The text of one request as its tokens arrive, released only where it is final.

    Args:
        tokenizer: decodes the token ids (special tokens skipped, as the final answer does).
        stop: stop strings; text from the first one on is never shown.
    """

    def __init__(self, tokenizer: Any, stop: Sequence[str]) -> None:
        self.tokenizer = tokenizer
        self.stop = tuple(s for s in stop if s)
        self.emitted = ""
        self.stopped = False

    def _text(self, ids: Sequence[int]) -> tuple[str, bool]:
        text = self.tokenizer.decode(list(ids), skip_special_tokens=True)
        cut = min((p for p in (text.find(s) for s in self.stop) if p != -1), default=-1)
        return (text[:cut], True) if cut != -1 else (text, False)

    def update(self, ids: Sequence[int]) -> str:
        """New releasable text after ``ids`` (the row's generated ids so far)."""
        text, self.stopped = self._text(ids)
        if not self.stopped:
            text = text[: len(text) - self._held(text)]
        text = text.lstrip().rstrip()  # the answer is stripped: hold trailing space until more text comes
        return self._release(text)

    def finish(self, final: str) -> str:
        """The rest of the final answer (``final`` as the result reports it)."""
        return self._release(final)

    def _held(self, text: str) -> int:
        """Characters at the end of ``text`` that may still turn out to start a stop string (or
        are an incomplete multi-byte character)."""
        held = len(text) - len(text.rstrip("\ufffd"))
        body = text[: len(text) - held]
        for s in self.stop:
            for k in range(min(len(s) - 1, len(body)), 0, -1):
                if body.endswith(s[:k]):
                    held = max(held, k + (len(text) - len(body)))
                    break
        return held

    def _release(self, text: str) -> str:
        if not text.startswith(self.emitted):
            return ""  # a tokenizer that re-spaced earlier text: keep what was shown; the result is authoritative
        delta, self.emitted = text[len(self.emitted) :], text
        return delta


@dataclass
class Row:
    """One running request.

    Attributes:
        item: the decoded request.
        prompt: its rendered prompt.
        prompt_tokens: prompt tokens (visual placeholders included, padding not).
        visual_tokens: visual placeholder tokens in the prompt.
        stream: its text stream.
        ids: generated token ids so far.
        generator: torch RNG for sampled requests (seeded when the request gives a seed).
        admitted: ``perf_counter`` when it joined the batch.
        first_token_s: seconds from admission to its first token.
        done: why it finished (``"stop"``, ``"length"``) or None while running.
        sink: called with each text delta (streaming); None collects only the result.
    """

    item: DecodedRequest
    prompt: str
    prompt_tokens: int
    visual_tokens: int
    stream: TextStream
    ids: list[int] = field(default_factory=list)
    generator: Any = None
    admitted: float = field(default_factory=time.perf_counter)
    first_token_s: float | None = None
    done: str | None = None
    sink: Any = None
    prefill_s: float = 0.0
    error: str | None = None

    @property
    def generation(self) -> GenerationSettings:
        return self.item.request.generation


class RunningBatch:
    """Requests generating together, one token per step, joining and leaving at step boundaries.

    Args:
        engine: the engine (model, processor, prompt rendering, context check).
    """

    def __init__(self, engine: Any) -> None:
        import torch

        self.engine = engine
        self.model = engine.model
        self.tokenizer = engine.processor.tokenizer
        self.rows: list[Row] = []
        self.cache: Any = None
        self.mask: Any = None  # (B, L) attention mask of the cached tokens
        self.last: Any = None  # (B,) the token each row feeds next
        config = self.model.generation_config
        eos = config.eos_token_id if config.eos_token_id is not None else []
        eos = [eos] if isinstance(eos, int) else list(eos)
        # the static path cuts the text at EOS or padding: stop there too
        stops = (*eos, self.tokenizer.eos_token_id, self.tokenizer.pad_token_id)
        self.stop_ids = {int(i) for i in stops if i is not None}
        self.top_k = int(getattr(config, "top_k", 0) or 0)
        params = inspect.signature(self.model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self._torch = torch

    def __len__(self) -> int:
        return len(self.rows)

    # ------------------------------------------------------------------ join

    def admit(self, items: Sequence[DecodedRequest], sinks: Sequence[Any] | None = None) -> list[Row]:
        """Prefill ``items`` (equal visual shapes) and merge them into the running batch.

        Rows that finish on their first token (EOS, a stop string, ``max_new_tokens=1``) are
        returned already done and never join.

        Raises:
            Exception: whatever preprocessing or the model raises for this group (the caller
                retries one by one so that only the culprit fails).
        """
        from transformers import DynamicCache

        torch = self._torch
        start = time.perf_counter()
        batch: PreparedBatch = self.engine.prepare(list(items), items[0].request.generation)
        self.engine.check_context(batch, per_request=True)
        inputs = batch.inputs
        mask = inputs["attention_mask"]
        positions = mask.long().cumsum(-1) - 1
        positions.masked_fill_(mask == 0, 1)
        cache = DynamicCache(config=self.model.config)
        with torch.inference_mode():
            out = self.model(
                **inputs, position_ids=positions, use_cache=True, logits_to_keep=1, **{self._cache_kw: cache}
            )
        prefill_s = time.perf_counter() - start
        rows = []
        for i, item in enumerate(items):
            gen = item.request.generation
            generator = None
            if gen.do_sample:
                generator = torch.Generator(device=self.model.device)
                generator.manual_seed(gen.seed if gen.seed is not None else int(torch.seed() % (2**63)))
            rows.append(
                Row(
                    item=item,
                    prompt=batch.prompts[i],
                    prompt_tokens=int(mask[i].sum()),
                    visual_tokens=batch.visual_tokens[i],
                    stream=TextStream(self.tokenizer, gen.stop),
                    generator=generator,
                    admitted=start,
                    sink=sinks[i] if sinks else None,
                    prefill_s=prefill_s,
                )
            )
        tokens = self._pick(out.logits[:, -1, :], rows)
        self._record(rows, tokens)
        keep = [i for i, row in enumerate(rows) if row.done is None]
        if keep:
            index = torch.tensor(keep, device=mask.device)
            for layer in cache.layers:
                layer.batch_select_indices(index)
            self._merge(cache, mask[index], tokens[index], [rows[i] for i in keep])
        return rows

    def _merge(self, cache: Any, mask: Any, tokens: Any, rows: list[Row]) -> None:
        torch = self._torch
        if not self._plain(cache):
            raise RuntimeError("continuous batching needs plain DynamicLayer caches (no sliding window)")
        if self.cache is None:
            self.cache, self.mask, self.last, self.rows = cache, mask, tokens, list(rows)
            return
        length = max(self.mask.shape[1], mask.shape[1])

        def left(t: Any, dim_len: int) -> Any:
            pad = length - dim_len
            if pad == 0:
                return t
            shape = list(t.shape)
            shape[-2 if t.dim() == 4 else -1] = pad
            zeros = torch.zeros(shape, dtype=t.dtype, device=t.device)
            return torch.cat([zeros, t], dim=-2 if t.dim() == 4 else -1)

        old_len, new_len = self.mask.shape[1], mask.shape[1]
        for mine, theirs in zip(self.cache.layers, cache.layers, strict=True):
            mine.keys = torch.cat([left(mine.keys, old_len), left(theirs.keys, new_len)], dim=0)
            mine.values = torch.cat([left(mine.values, old_len), left(theirs.values, new_len)], dim=0)
        self.mask = torch.cat([left(self.mask, old_len), left(mask, new_len)], dim=0)
        self.last = torch.cat([self.last, tokens], dim=0)
        self.rows.extend(rows)

    @staticmethod
    def _plain(cache: Any) -> bool:
        from transformers.cache_utils import DynamicLayer

        return all(type(layer) is DynamicLayer for layer in cache.layers)

    # ------------------------------------------------------------------ step

    def step(self) -> list[Row]:
        """Generate one token for every running row; returns the rows that finished."""
        torch = self._torch
        if not self.rows:
            return []
        length = self.mask.shape[1]
        positions = self.mask.sum(-1, keepdim=True).long()
        mask = torch.cat([self.mask, torch.ones_like(self.mask[:, :1])], dim=1)
        with torch.inference_mode():
            out = self.model(
                input_ids=self.last[:, None],
                attention_mask=mask,
                position_ids=positions,
                cache_position=torch.tensor([length], device=mask.device),
                use_cache=True,
                **{self._cache_kw: self.cache},
            )
        self.mask = mask
        tokens = self._pick(out.logits[:, -1, :], self.rows)
        self.last = tokens
        self._record(self.rows, tokens)
        return self.drop([i for i, row in enumerate(self.rows) if row.done is not None])

    def drop(self, indices: Sequence[int]) -> list[Row]:
        """Remove rows (finished or cancelled) from the batch; returns them."""
        torch = self._torch
        gone = set(indices)
        if not gone:
            return []
        removed = [row for i, row in enumerate(self.rows) if i in gone]
        keep = [i for i in range(len(self.rows)) if i not in gone]
        if not keep:
            self.rows, self.cache, self.mask, self.last = [], None, None, None
            return removed
        index = torch.tensor(keep, device=self.mask.device)
        for layer in self.cache.layers:
            layer.batch_select_indices(index)
        self.mask, self.last = self.mask[index], self.last[index]
        self.rows = [self.rows[i] for i in keep]
        first = int((self.mask.sum(0) > 0).nonzero()[0])  # columns of padding only, on the left
        if first > 0:
            self.mask = self.mask[:, first:]
            for layer in self.cache.layers:
                layer.keys, layer.values = layer.keys[..., first:, :], layer.values[..., first:, :]
        return removed

    # ------------------------------------------------------------------ tokens

    def _pick(self, logits: Any, rows: Sequence[Row]) -> Any:
        """Greedy argmax per row; sampled rows go through temperature, top-k and top-p as
        ``model.generate`` applies them."""
        from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

        torch = self._torch
        tokens = logits.argmax(dim=-1)
        for i, row in enumerate(rows):
            gen = row.generation
            if not gen.do_sample:
                continue
            scores = logits[i : i + 1].float()
            scores = TemperatureLogitsWarper(gen.temperature)(None, scores)
            if self.top_k:
                scores = TopKLogitsWarper(self.top_k)(None, scores)
            if gen.top_p is not None and gen.top_p < 1.0:
                scores = TopPLogitsWarper(gen.top_p)(None, scores)
            probs = torch.softmax(scores, dim=-1)
            tokens[i] = torch.multinomial(probs, 1, generator=row.generator)[0, 0]
        return tokens

    def _record(self, rows: Sequence[Row], tokens: Any) -> None:
        now = time.perf_counter()
        for row, token in zip(rows, tokens.tolist(), strict=True):
            if row.first_token_s is None:
                row.first_token_s = now - row.admitted
            if token in self.stop_ids:
                row.done = "stop"
                continue
            row.ids.append(int(token))
            delta = row.stream.update(row.ids)
            if row.stream.stopped:
                row.done = "stop"
            elif len(row.ids) >= row.generation.max_new_tokens:
                row.done = "length"
            if delta and row.sink is not None:
                try:
                    row.sink(delta)
                except Exception as exc:  # a broken consumer fails its own request only
                    row.done, row.error = "error", f"{type(exc).__name__}: the stream consumer failed: {exc}"


def row_result(row: Row, finish: str) -> Result:
    """The finished row's :class:`Result` (the same text the static path gives)."""
    gen = row.generation
    text = cut_at_stop(row.stream.tokenizer.decode(row.ids, skip_special_tokens=True), gen.stop).strip()
    elapsed = time.perf_counter() - row.admitted
    return Result(
        request_id=row.item.request.request_id,
        text=text,
        usage=Usage(row.prompt_tokens, len(row.ids), row.visual_tokens),
        prompt=row.prompt,
        timings={
            "decode": row.item.decode_seconds,
            "preprocess_prefill": row.prefill_s,
            "first_token": row.first_token_s or 0.0,
            "generate": elapsed,
        },
        frames=tuple(v.indices for v in row.item.videos),
        timestamps=tuple(v.timestamps for v in row.item.videos),
        finish_reason=finish,
    )


__all__ = ["RunningBatch", "Row", "TextStream", "continuous_unsupported", "row_result"]
