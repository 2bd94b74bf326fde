"""Train a tiny checkpoint to watch synthetic clips, through the core's own input path.

Every training example is built exactly as inference builds it: the clip is decoded and
sampled by :meth:`Engine.decode` (the family's decoder and sampler), the prompt is rendered
by :meth:`Engine.render_prompt` (the family's template) and the processor is run by
:meth:`Engine.processor_inputs`. Only the answer tokens (and the closing ``</s>``) carry loss.

CPU-sized: inputs are decoded and processed once, then cached as tensors.
"""

from __future__ import annotations

import json
import math
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from videolmm.toy.train.recipe import QUESTIONS, Recipe, clip_recipe, heldout_docs

MANIFEST_NAME = "videolmm_trained.json"


@dataclass
class Example:
    """One cached training example (tensors for a single question)."""

    kind: str  # question kind
    input_ids: Any  # (L,) long
    labels: Any  # (L,) long, -100 outside the answer
    pixel_values_videos: Any  # (T, 3, H, W) float


def _write_clips(docs: list[dict[str, Any]], folder: Path) -> list[str]:
    from videolmm.tasks.synthetic_clips import clip_name
    from videolmm.toy.synthetic import write_moving_square_video

    paths = []
    for doc in docs:
        path = folder / clip_name(doc)
        if not path.exists():
            write_moving_square_video(
                path, colour=doc["colour"], direction=doc["direction"], seed=doc["seed"],
                num_frames=doc["num_frames"], fps=doc["fps"], size=doc["size"], travel=doc["travel"],
            )  # fmt: skip
        paths.append(str(path))
    return paths


OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}


def _example(engine: Any, item: Any, kind: str, answer: str, pixels: Any = None) -> Example:
    """Tokenise one (decoded clip, question, answer) exactly as inference would, loss on the answer."""
    import torch

    prompt = engine.render_prompt(item.request, item.videos)
    full = engine.processor_inputs([item], [f"{prompt} {answer}{engine.processor.tokenizer.eos_token}"])
    ctx_len = engine.processor_inputs([item], [prompt])["input_ids"].shape[1]
    ids = full["input_ids"][0]
    labels = torch.full_like(ids, -100)
    labels[ctx_len:] = ids[ctx_len:]
    return Example(kind, ids, labels, full["pixel_values_videos"][0] if pixels is None else pixels)


def build_examples(engine: Any, docs: list[dict[str, Any]], folder: Path, *, reversed_copies: bool) -> list[Example]:
    """Decode, prompt and process every (clip, question) pair through the engine's path.

    With ``reversed_copies``, each clip also gives a direction example decoded with the
    sampler's ``reverse`` option (the core's own frame-order knob) and the opposite answer:
    the same pixels in the other order, so only frame order tells the two apart.
    """
    from dataclasses import replace

    from videolmm.types import Request

    media = engine.settings.media
    backwards = replace(media, sampling=replace(media.sampling, reverse=True))
    examples = []
    for doc, path in zip(docs, _write_clips(docs, folder), strict=True):
        items = {kind: engine.decode(Request(question=q, videos=(path,))) for kind, q in QUESTIONS.items()}
        if reversed_copies:
            items["reversed"] = engine.decode(
                Request(question=QUESTIONS["direction"], videos=(path,), media=backwards)
            )
        for item in items.values():
            if item.error:
                raise RuntimeError(f"training clip failed to decode: {item.error}")
        colour = _example(engine, items["colour"], "colour", doc["colour"])
        examples.append(colour)  # the direction example shares the same processed frames
        examples.append(
            _example(engine, items["direction"], "direction", doc["direction"], colour.pixel_values_videos)
        )
        if reversed_copies:
            examples.append(_example(engine, items["reversed"], "direction", OPPOSITE[doc["direction"]]))
    return examples


def _collate(batch: list[Example], pad_id: int) -> dict[str, Any]:
    import torch

    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, e in enumerate(batch):  # left padding, as at inference
        n = len(e.input_ids)
        ids[row, width - n :] = e.input_ids
        labels[row, width - n :] = e.labels
        mask[row, width - n :] = 1
    pixels = torch.stack([e.pixel_values_videos for e in batch])
    return {"input_ids": ids, "attention_mask": mask, "labels": labels, "pixel_values_videos": pixels}


def _lr_at(step: int, recipe: Recipe) -> float:
    if step < recipe.warmup:
        return recipe.lr * (step + 1) / recipe.warmup
    progress = (step - recipe.warmup) / max(1, recipe.steps - recipe.warmup)
    return recipe.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def evaluate(engine: Any, docs: list[dict[str, Any]], folder: Path, batch_size: int = 16) -> dict[str, float]:
    """Greedy accuracy per question kind on ``docs`` through ``engine.generate``."""
    from videolmm.tasks.synthetic.utils import normalise
    from videolmm.types import GenerationSettings, Request

    paths = _write_clips(docs, folder)
    gen = GenerationSettings(max_new_tokens=8, stop=("\n", "."))
    reqs = [Request(question=d["question"], videos=(p,), generation=gen) for d, p in zip(docs, paths, strict=True)]
    results = engine.generate(reqs, batch_size=batch_size)
    correct: dict[str, list[float]] = {}
    for doc, res in zip(docs, results, strict=True):
        correct.setdefault(doc["kind"], []).append(float(res.ok and normalise(res.text or "") == doc["answer"]))
    return {f"{k}_acc": sum(v) / len(v) for k, v in sorted(correct.items())}


def train(
    recipe: Recipe,
    out_dir: str | Path,
    *,
    log: Callable[[str], None] = print,
    eval_every: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Train ``recipe.family`` and write the checkpoint plus ``videolmm_trained.json`` to ``out_dir``.

    Args:
        recipe: what to train.
        out_dir: where the checkpoint goes.
        log: progress sink.
        eval_every: score 24 held-out clips every this many steps (0: only at the end).
        progress: show a tqdm bar over the optimiser steps (loss in its postfix) instead of a
            log line every 100 steps.

    Returns:
        The manifest: recipe, seconds, final loss and held-out accuracy per question kind.
    """
    import torch

    from videolmm.load import load_engine
    from videolmm.models.families.base import LoadOptions
    from videolmm.toy.train.init import build_initial_checkpoint

    out = Path(out_dir)
    start = time.perf_counter()
    torch.manual_seed(recipe.seed)
    random.seed(recipe.seed)
    with tempfile.TemporaryDirectory() as tmp:
        clips = Path(tmp) / "clips"
        clips.mkdir()
        build_initial_checkpoint(recipe, out)
        engine = load_engine(str(out), num_frames=recipe.frames, load=LoadOptions(device="cpu"))
        docs = [clip_recipe(s, recipe) for s in range(recipe.num_clips)]
        examples = build_examples(engine, docs, clips, reversed_copies=recipe.reversed_copies)
        log(f"{recipe.family}: {len(examples)} examples ready in {time.perf_counter() - start:.0f}s")

        model = engine.model
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, betas=(0.9, 0.95), weight_decay=recipe.weight_decay)
        pad_id = engine.processor.tokenizer.pad_token_id
        order: list[int] = []
        ema = None
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=recipe.steps, desc=f"train {recipe.family}", unit="step")
        for step in range(recipe.steps):
            if len(order) < recipe.batch_size:
                order += random.sample(range(len(examples)), len(examples))
            batch = [examples[order.pop()] for _ in range(recipe.batch_size)]
            for group in opt.param_groups:
                group["lr"] = _lr_at(step, recipe)
            loss = model(**_collate(batch, pad_id)).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{ema:.4f}", refresh=False)
            elif step % 100 == 0 or step == recipe.steps - 1:
                log(f"{recipe.family}: step {step:5d} loss {ema:.4f} ({time.perf_counter() - start:.0f}s)")
            if eval_every and step and step % eval_every == 0:
                model.eval()
                log(f"{recipe.family}: step {step:5d} held-out {evaluate(engine, heldout_docs(recipe, 24), clips)}")
                model.train()
        if bar is not None:
            bar.close()
        model.eval()
        accuracy = evaluate(engine, heldout_docs(recipe), clips)
        log(f"{recipe.family}: held-out {accuracy}")
        model.save_pretrained(out)
    manifest = {
        "family": recipe.family,
        "recipe": recipe.to_dict(),
        "final_loss_ema": round(float(ema or 0.0), 5),
        "heldout_accuracy": accuracy,
        "heldout_clips": recipe.heldout_clips,
        "train_seconds": round(time.perf_counter() - start, 1),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    (out / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    # the settings it was trained with become the checkpoint's defaults (see engine.CHECKPOINT_DEFAULTS)
    (out / "videolmm.json").write_text(json.dumps({"num_frames": recipe.frames}, indent=2) + "\n")
    (out / "videolmm_tiny.json").unlink(missing_ok=True)
    return manifest
