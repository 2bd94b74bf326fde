"""Pieces every source layout uses: original configs, tokens, vocabulary growth, vision towers."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from videolmm.errors import ConfigError

#: Keys of an original LLaVA config that describe the run, not the text model.
_META_KEYS = frozenset(
    {"architectures", "model_type", "transformers_version", "_name_or_path", "torch_dtype", "dtype"}
)

#: Vision towers the seeds name by hub id, with their published configurations (the hub
#: ``config.json`` of each; only the fields a tower needs). A local copy passed with
#: ``--vision-tower`` or a local path in the config is read instead when given.
KNOWN_TOWERS: dict[str, tuple[str, dict[str, Any]]] = {
    "openai/clip-vit-large-patch14-336": (
        "clip_vision_model",
        {
            "hidden_size": 1024,
            "intermediate_size": 4096,
            "num_hidden_layers": 24,
            "num_attention_heads": 16,
            "image_size": 336,
            "patch_size": 14,
            "projection_dim": 768,
            "hidden_act": "quick_gelu",
            "layer_norm_eps": 1e-5,
        },
    ),
    "google/siglip-so400m-patch14-384": (
        "siglip_vision_model",
        {
            "hidden_size": 1152,
            "intermediate_size": 4304,
            "num_hidden_layers": 27,
            "num_attention_heads": 16,
            "image_size": 384,
            "patch_size": 14,
            "hidden_act": "gelu_pytorch_tanh",
            "layer_norm_eps": 1e-6,
        },
    ),
}

_VISION_MODEL_TYPES = {"clip": "clip_vision_model", "siglip": "siglip_vision_model"}


def read_original_config(directory: Path) -> dict[str, Any]:
    """The original checkpoint's ``config.json`` as a dict.

    Raises:
        ConfigError: the directory or its ``config.json`` is missing or not JSON.
    """
    path = Path(directory) / "config.json"
    if not path.is_file():
        raise ConfigError(f"{directory}: no config.json (expected an original checkpoint directory)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from exc


def known_fields(config_cls: Any) -> set[str]:
    """Fields a transformers config class serialises (its defaults' ``to_dict`` keys)."""
    return set(config_cls().to_dict()) | {"rope_scaling", "rope_theta", "rope_parameters"}


def text_config(original: Mapping[str, Any], model_type: str, **overrides: Any) -> Any:
    """The text model's config from an original LLaVA config (which is the LM's config plus
    ``mm_*`` keys): only the fields the text config class knows are kept.

    Args:
        original: the original ``config.json``.
        model_type: ``llama``, ``mistral`` or ``qwen2``.
        **overrides: fields to set (vocabulary size, special token ids, ``rope_scaling``).

    Returns:
        The text config.
    """
    from transformers import CONFIG_MAPPING

    cls = CONFIG_MAPPING[model_type]
    keep = known_fields(cls) - _META_KEYS
    fields = {k: v for k, v in original.items() if k in keep}
    fields.update(overrides)
    scaling = fields.pop("rope_scaling", None)
    if scaling:  # transformers 4.x's rope_scaling → transformers 5's rope_parameters
        params = {k: v for k, v in dict(scaling).items() if k != "type"}
        params["rope_type"] = scaling.get("rope_type", scaling.get("type"))
        fields["rope_parameters"] = {**params, **dict(fields.get("rope_parameters") or {})}
    return cls(**fields)


def add_tokens(tokenizer: Any, tokens: Sequence[str], pad: str | None = None) -> dict[str, int]:
    """Add special placeholder tokens (in order) and a pad token when the tokenizer has none.

    Args:
        tokenizer: modified in place.
        tokens: e.g. ``("<video>", "<image>")``; a token already present keeps its id.
        pad: pad token to add when ``tokenizer.pad_token`` is None.

    Returns:
        Token → id for every requested token (and the pad token).
    """
    from transformers import AddedToken

    for token in tokens:
        tokenizer.add_tokens([AddedToken(token, special=True, normalized=False)], special_tokens=True)
    ids = {t: int(tokenizer.convert_tokens_to_ids(t)) for t in tokens}
    if pad is not None and tokenizer.pad_token is None:
        tokenizer.add_special_tokens({"pad_token": pad})
    if tokenizer.pad_token is not None:
        ids[tokenizer.pad_token] = int(tokenizer.pad_token_id)
    return ids


def grown_vocab(vocab_size: int, tokenizer_len: int, multiple: int = 64) -> int:
    """The embedding rows a checkpoint needs after tokens were added: unchanged when the new ids
    fit, else ``tokenizer_len`` rounded up to ``multiple`` (as transformers' converters do)."""
    if tokenizer_len <= vocab_size:
        return vocab_size
    return -(-tokenizer_len // multiple) * multiple


def _vision_dict(data: Mapping[str, Any]) -> dict[str, Any]:
    """The vision part of a tower's ``config.json`` (CLIP, SigLIP or LanguageBind layouts)."""
    inner = data.get("vision_config")
    return dict(inner) if isinstance(inner, Mapping) else dict(data)


def vision_config(name: str, override: Path | None, kind: str) -> tuple[Any, str]:
    """Resolve a vision tower's configuration.

    Looked up, in order: ``override`` (a directory with ``config.json``, or the file), ``name`` as
    a local directory, then :data:`KNOWN_TOWERS`.

    Args:
        name: the tower the original config names (``mm_vision_tower``, ``mm_video_tower``).
        override: a local copy given on the command line.
        kind: ``clip`` or ``siglip`` (the model type when the file does not say).

    Returns:
        ``(config, where)``: the vision config and where it was read from.

    Raises:
        ConfigError: nothing describes the tower.
    """
    from transformers import CONFIG_MAPPING

    path = override or (Path(name) if name and Path(name).exists() else None)
    model_type = _VISION_MODEL_TYPES[kind]
    if path is not None:
        file = path / "config.json" if path.is_dir() else path
        if not file.is_file():
            raise ConfigError(f"vision tower {path}: no config.json")
        data = _vision_dict(json.loads(file.read_text()))
        model_type = _VISION_MODEL_TYPES.get(str(data.get("model_type", "")).replace("_vision_model", ""), model_type)
        cls = CONFIG_MAPPING[model_type]
        fields = {k: v for k, v in data.items() if k in known_fields(cls) - _META_KEYS}
        return cls(**fields), str(file)
    if name in KNOWN_TOWERS:
        model_type, fields = KNOWN_TOWERS[name]
        return CONFIG_MAPPING[model_type](**fields), f"built-in config of {name}"
    raise ConfigError(
        f"vision tower {name!r} is neither a local directory nor one of {sorted(KNOWN_TOWERS)}; "
        "pass a local copy of it (a directory with config.json)"
    )


def load_tokenizer(directory: Path) -> Any:
    """The original checkpoint's tokenizer, padding on the left.

    Raises:
        ConfigError: the directory has no loadable tokenizer.
    """
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(directory))
    except Exception as exc:  # transformers raises many types here; name the input and re-raise typed
        raise ConfigError(f"{directory}: cannot load its tokenizer ({type(exc).__name__}: {exc})") from exc
    tokenizer.padding_side = "left"
    return tokenizer


def generation_config(directory: Path, tokenizer: Any) -> Any:
    """The original ``generation_config.json`` (or one built from the tokenizer), with the pad id.

    Sampling values without ``do_sample`` (Vicuna's ``temperature: 0.9, top_p: 0.6``) are dropped:
    they never applied to greedy decoding, and transformers 5 refuses to save them.
    """
    from transformers import GenerationConfig

    if (Path(directory) / "generation_config.json").is_file():
        gen = GenerationConfig.from_pretrained(str(directory))
    else:
        gen = GenerationConfig(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    if not gen.do_sample:
        gen.temperature = gen.top_p = gen.top_k = None
    gen.pad_token_id = tokenizer.pad_token_id
    return gen


def meta_shapes(model_cls: Any, config: Any) -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes of ``model_cls(config)``, built on the meta device (no memory)."""
    import torch

    with torch.device("meta"):
        model = model_cls(config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def tied_targets(config: Any) -> tuple[str, ...]:
    """``lm_head.weight`` when the output embedding is tied to the input one."""
    text = getattr(config, "text_config", config)
    tied = bool(getattr(config, "tie_word_embeddings", False) or getattr(text, "tie_word_embeddings", False))
    return ("lm_head.weight",) if tied else ()


__all__ = [
    "KNOWN_TOWERS",
    "add_tokens",
    "generation_config",
    "grown_vocab",
    "known_fields",
    "load_tokenizer",
    "meta_shapes",
    "read_original_config",
    "text_config",
    "tied_targets",
    "vision_config",
]
