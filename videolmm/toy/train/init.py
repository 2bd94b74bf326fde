"""Initial (random) checkpoints at the trained model's widths.

Starts from the family's tiny checkpoint (same classes, tokenizer, processor, chat template)
and rescales its vision geometry and widths to :class:`~videolmm.toy.train.recipe.ModelSize`.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from videolmm.toy.train.recipe import ModelSize, Recipe


def _resize_processor_config(path: Path, old: int, new: int, patch_size: int) -> None:
    """Scale every frame size in ``processor_config.json`` from ``old`` to ``new`` pixels and set
    the patch size (the processor's token count depends on both)."""
    cfg = json.loads(path.read_text())
    if "patch_size" in cfg:
        cfg["patch_size"] = patch_size
    for key in ("image_processor", "video_processor"):
        sub = cfg.get(key)
        if not sub:
            continue
        sub["size"] = {"shortest_edge": new}
        sub["crop_size"] = {"height": new, "width": new}
        if "image_grid_pinpoints" in sub:
            sub["image_grid_pinpoints"] = [[h * new // old, w * new // old] for h, w in sub["image_grid_pinpoints"]]
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def _resize_config(config: Any, size: ModelSize, old_image: int) -> None:
    vc, tc = config.vision_config, config.text_config
    vc.image_size, vc.patch_size = size.image_size, size.patch_size
    vc.hidden_size, vc.intermediate_size, vc.num_hidden_layers = (
        size.vision_hidden,
        2 * size.vision_hidden,
        size.vision_layers,
    )
    vc.projection_dim = size.vision_hidden
    tc.hidden_size, tc.intermediate_size, tc.num_hidden_layers = (
        size.text_hidden,
        size.text_intermediate,
        size.text_layers,
    )
    tc.head_dim = size.text_hidden // tc.num_attention_heads
    grid = size.image_size // size.patch_size
    config.image_seq_length = grid * grid
    if getattr(config, "image_grid_pinpoints", None):
        config.image_grid_pinpoints = [
            [h * size.image_size // old_image, w * size.image_size // old_image]
            for h, w in config.image_grid_pinpoints
        ]


def build_initial_checkpoint(recipe: Recipe, out_dir: str | Path) -> Path:
    """Write the untrained checkpoint a training run starts from (deterministic by ``recipe.seed``).

    Returns:
        ``out_dir``, loadable with ``videolmm.load.load_engine``.
    """
    import torch
    from transformers import AutoConfig

    from videolmm.models.families.base import import_string
    from videolmm.plugin.manager import get_registry

    out = Path(out_dir)
    family = get_registry().family(recipe.family)
    with tempfile.TemporaryDirectory() as tmp:
        base = family.build_tiny(Path(tmp) / "base", seed=recipe.seed, geometry="tiny")
        config = AutoConfig.from_pretrained(base)
        old_image = config.vision_config.image_size
        _resize_config(config, recipe.size, old_image)
        torch.manual_seed(recipe.seed)
        model = import_string(family.model_class)(config)
        model.generation_config = import_string("transformers.GenerationConfig").from_pretrained(base)
        model.save_pretrained(out)
        for f in base.iterdir():
            if f.name not in ("config.json", "model.safetensors", "generation_config.json"):
                (out / f.name).write_bytes(f.read_bytes())
    _resize_processor_config(out / "processor_config.json", old_image, recipe.size.image_size, recipe.size.patch_size)
    return out
