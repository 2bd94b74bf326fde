"""Pieces of the original-layout tiny checkpoints (:mod:`videolmm.toy.tiny_originals`).

A tokenizer like the originals' (no ``<image>`` / ``<video>`` / pad tokens), state dicts with the
originals' key prefixes and dtypes, the ``rotary_emb.inv_freq`` buffers older transformers saved,
transformers 4.x-style text configs, and sharded weight files with their index. torch,
transformers and tokenizers are imported inside the functions only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from videolmm.toy import tiny

__all__ = [
    "legacy_text_config",
    "original_tokenizer",
    "padded_vocab",
    "projector_state",
    "rotary_buffers",
    "save_weights",
    "seed_weights",
    "state_dict",
    "trained_bpe",
    "write_json",
]


def original_tokenizer(style: str, vocab_size: int | None = None) -> Any:
    """A tokenizer like the originals': no ``<image>`` / ``<video>`` / pad tokens.

    Args:
        style: ``llama`` (``<unk> <s> </s>``, ``<s>`` prepended) or ``qwen``
            (``<|endoftext|> <|im_start|> <|im_end|>``, no BOS, pad ``<|endoftext|>``).
        vocab_size: pad the BPE vocabulary with unused entries to this length (Yi-34B's 64000, so
            that added tokens get Yi's ids); None keeps the trained 384.

    Returns:
        A ``PreTrainedTokenizerFast``.
    """
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>"] if style == "llama" else ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    backend = trained_bpe(specials, vocab_size)
    if style == "llama":
        backend.post_processor = processors.TemplateProcessing(single="<s>:0 $A:0", special_tokens=[("<s>", 1)])
        return PreTrainedTokenizerFast(
            tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>", model_max_length=4096
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>", model_max_length=32768
    )


def trained_bpe(specials: list[str] | tuple[str, ...], vocab_size: int | None = None) -> Any:
    """A byte-level BPE ``tokenizers.Tokenizer`` trained on the tiny corpus (384 entries, ``specials``
    first, so they get ids 0, 1, ...), its vocabulary padded to ``vocab_size`` when given."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=384,
        min_frequency=1,
        show_progress=False,
        special_tokens=[AddedToken(t, normalized=False, special=True) for t in specials],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    corpus = tiny.tokenizer_training_corpus()
    backend.train_from_iterator(corpus, trainer=trainer, length=len(corpus))
    return padded_vocab(backend, vocab_size) if vocab_size is not None else backend


def padded_vocab(backend: Any, size: int) -> Any:
    """``backend`` with its BPE vocabulary filled to ``size`` entries no merge produces (ids kept)."""
    from tokenizers import Tokenizer

    data = json.loads(backend.to_str())
    vocab = data["model"]["vocab"]
    if size < len(vocab):
        raise ValueError(f"vocab_size={size} is below the trained vocabulary ({len(vocab)})")
    for i in range(len(vocab), size):
        vocab[f"<unused_{i}>"] = i
    return Tokenizer.from_str(json.dumps(data))


def seed_weights(seed: int) -> None:
    """Seed torch's generator before modules initialise their weights."""
    import torch

    torch.manual_seed(seed)


def state_dict(module: Any, prefix: str = "", dtype: Any = None) -> dict[str, Any]:
    """A module's state dict with a name prefix, detached and contiguous, optionally cast."""
    out = {}
    for key, value in module.state_dict().items():
        tensor = value.detach().clone().contiguous()
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        out[prefix + key] = tensor
    return out


def rotary_buffers(num_layers: int, head_dim: int, prefix: str = "model.layers") -> dict[str, Any]:
    """``rotary_emb.inv_freq`` buffers as transformers < 4.32 saved them."""
    import torch

    inv = 1.0 / (10000 ** (torch.arange(0, head_dim, 2).float() / head_dim))
    return {f"{prefix}.{i}.self_attn.rotary_emb.inv_freq": inv.clone() for i in range(num_layers)}


def projector_state(in_dim: int, out_dim: int, dtype: Any) -> dict[str, Any]:
    """An ``mlp2x_gelu`` projector's weights under ``model.mm_projector.``."""
    from torch import nn

    mlp = nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))
    return state_dict(mlp, "model.mm_projector.", dtype)


def legacy_text_config(config: Any, model_type: str, architecture: str) -> dict[str, Any]:
    """A text config as transformers 4.x wrote it (``rope_theta`` / ``rope_scaling``, not
    ``rope_parameters``), relabelled as the LLaVA wrapper's."""
    data = config.to_dict()
    rope = data.pop("rope_parameters", None) or {}
    data["rope_theta"] = rope.get("rope_theta", 10000.0)
    data["rope_scaling"] = None
    for key in ("dtype", "transformers_version", "output_attentions", "output_hidden_states", "return_dict"):
        data.pop(key, None)
    data.update(model_type=model_type, architectures=[architecture], torch_dtype="bfloat16")
    data["transformers_version"] = "4.40.0.dev0"
    return data


def save_weights(tensors: dict[str, Any], out: Path, fmt: str, shards: int) -> None:
    """Write ``tensors`` in ``shards`` files with an index (``safetensors`` or ``bin``)."""
    import torch
    from safetensors.torch import save_file

    keys = list(tensors)
    per = -(-len(keys) // shards)
    chunks = [keys[i : i + per] for i in range(0, len(keys), per)]
    stem, ext, index = (
        ("model", "safetensors", "model.safetensors.index.json")
        if fmt == "safetensors"
        else ("pytorch_model", "bin", "pytorch_model.bin.index.json")
    )
    weight_map = {}
    total = 0
    for i, chunk in enumerate(chunks, start=1):
        name = f"{stem}-{i:05d}-of-{len(chunks):05d}.{ext}"
        part = {k: tensors[k] for k in chunk}
        if fmt == "safetensors":
            save_file(part, str(out / name), metadata={"format": "pt"})
        else:
            torch.save(part, out / name)
        weight_map.update({k: name for k in chunk})
        total += sum(t.numel() * t.element_size() for t in part.values())
    (out / index).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as indented JSON, creating the parent directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
