"""Pure task functions for ``videolmm_demo`` (no I/O at import; clips made on first use)."""

from __future__ import annotations

from typing import Any

from videolmm.tasks.synthetic_clips import clip_path


def doc_to_visual(doc: dict[str, Any]) -> list[str]:
    """The doc's clip path (an explicit ``video`` path wins over the recipe)."""
    return [doc["video"]] if doc.get("video") else [clip_path(doc)]


def doc_to_text(doc: dict[str, Any], lmms_eval_specific_kwargs: dict[str, Any] | None = None) -> str:
    """The question, with optional pre/post prompts from ``lmms_eval_specific_kwargs``."""
    kw = lmms_eval_specific_kwargs or {}
    return f"{kw.get('pre_prompt', '')}{doc['question']}{kw.get('post_prompt', '')}"


def doc_to_messages(
    doc: dict[str, Any], lmms_eval_specific_kwargs: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Chat messages (``videolmm_demo_chat``): the clip's first frame as an image, the clip, the question.

    The image is the frame the encoder drew first (made in memory, no decoding), so the message
    carries both kinds of media, as chat tasks of lmms-eval 0.7 do.
    """
    from PIL import Image

    from videolmm.toy.synthetic import moving_square_frames

    first = next(
        moving_square_frames(
            colour=doc["colour"],
            direction=doc["direction"],
            seed=int(doc["seed"]),
            num_frames=int(doc.get("num_frames", 16)),
            size=int(doc.get("size", 64)),
            travel=float(doc.get("travel", 0.6)),
        )
    )
    return [
        {
            "role": "user",
            "content": [
                {"type": "image", "url": Image.fromarray(first)},
                {"type": "video", "url": doc_to_visual(doc)[0]},
                {"type": "text", "text": doc_to_text(doc, lmms_eval_specific_kwargs)},
            ],
        }
    ]


def normalise(text: str) -> str:
    """Lower-case first word, without punctuation: ``" Red."`` → ``"red"``."""
    words = text.strip().lower().split()
    return words[0].strip(".,!?;:'\"") if words else ""


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, Any]:
    """Exact match on the first word; per-kind accuracies carry the kind along."""
    correct = float(normalise(results[0]) == doc["answer"].lower())
    out: dict[str, Any] = {"exact_match": correct}
    for kind in ("colour", "direction"):
        out[f"{kind}_acc"] = {"kind": doc["kind"], "want": kind, "correct": correct}
    return out


def aggregate_kind(items: list[dict[str, Any]]) -> float:
    """Accuracy over the docs of one kind (NaN-free: 0.0 when the split has none)."""
    mine = [it["correct"] for it in items if it["kind"] == it["want"]]
    return sum(mine) / len(mine) if mine else 0.0


def doc_to_choice(doc: dict[str, Any]) -> list[str]:
    """The answer set of the doc's kind (colour names or directions)."""
    from videolmm.toy.synthetic import COLOURS, DIRECTIONS

    return sorted(COLOURS) if doc["kind"] == "colour" else list(DIRECTIONS)
