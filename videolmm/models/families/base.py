"""What a model family is: a transformers class plus the seed's defaults and token math.

A family declares only its differences (classes, defaults, token count, template choice);
the shared engine does everything else. Families are registered through the
``register_families`` hook, so a third-party package adds one without touching this repo.

Module-level imports stay light: torch and transformers are imported inside methods.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from videolmm.errors import ConfigError
from videolmm.types import MediaSettings

CLIP_MEAN: tuple[float, ...] = (0.48145466, 0.4578275, 0.40821073)
"""OpenAI CLIP normalisation mean (the llava-hf and LanguageBind processors)."""

CLIP_STD: tuple[float, ...] = (0.26862954, 0.26130258, 0.27577711)
"""OpenAI CLIP normalisation std."""


def clip_processor_kwargs(image_size: int) -> dict[str, Any]:
    """The CLIP-style preprocessing the LLaVA seeds use (OpenAI CLIP mean/std, short side to
    ``image_size``, centre crop to a square), as image/video processor keyword arguments."""
    return {
        "size": {"shortest_edge": image_size},
        "crop_size": {"height": image_size, "width": image_size},
        "do_resize": True,
        "do_center_crop": True,
        "do_rescale": True,
        "do_normalize": True,
        "do_convert_rgb": True,
        "image_mean": list(CLIP_MEAN),
        "image_std": list(CLIP_STD),
    }


@dataclass(frozen=True)
class LoadOptions:
    """How to place and quantise the weights.

    Attributes:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` or ``"auto"`` (CUDA when present).
        dtype: ``"auto"`` (float32 on CPU, the checkpoint's dtype on GPU), ``"float32"``,
            ``"bfloat16"`` or ``"float16"``.
        device_map: passed to ``from_pretrained`` (``"auto"`` shards a large model over GPUs);
            None places the whole model on ``device``.
        attn_implementation: ``"sdpa"``, ``"eager"`` or ``"flash_attention_2"``; None lets
            transformers choose.
        quantization: ``"4bit"`` or ``"8bit"`` (bitsandbytes, GPU only, as the model cards
            show), or None.
        revision: hub revision of the checkpoint.
        trust_remote_code: forwarded to transformers.
    """

    device: str = "auto"
    dtype: str = "auto"
    device_map: str | None = None
    attn_implementation: str | None = None
    quantization: str | None = None
    revision: str | None = None
    trust_remote_code: bool = False

    def resolved_device(self) -> str:
        """The concrete device string (``auto`` → ``cuda`` when available, else ``cpu``)."""
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def torch_dtype(self) -> Any:
        """The torch dtype to load with (``auto`` → float32 on CPU, bfloat16 on CUDA)."""
        import torch

        if self.dtype == "auto":
            return torch.float32 if self.resolved_device() == "cpu" else torch.bfloat16
        try:
            return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[self.dtype]
        except KeyError:
            raise ConfigError(f"dtype={self.dtype!r}: expected auto, float32, bfloat16 or float16") from None


def import_string(path: str) -> Any:
    """Import ``"package.module.Attr"`` or ``"package.module:Attr"``."""
    module, _, attr = path.replace(":", ".").rpartition(".")
    return getattr(importlib.import_module(module), attr)


def read_config_dict(pretrained: str | os.PathLike[str], revision: str | None = None) -> dict[str, Any]:
    """Read a checkpoint's ``config.json`` as a plain dict (local dir or hub cache).

    Raises:
        ConfigError: no ``config.json`` can be found for ``pretrained``.
    """
    path = Path(pretrained)
    if path.is_dir():
        cfg = path / "config.json"
        if not cfg.is_file():
            raise ConfigError(f"{pretrained}: no config.json in this directory")
        return json.loads(cfg.read_text())
    try:
        from huggingface_hub import hf_hub_download

        return json.loads(Path(hf_hub_download(str(pretrained), "config.json", revision=revision)).read_text())
    except Exception as exc:  # hub errors come in many types; name the input and re-raise typed
        raise ConfigError(f"{pretrained}: cannot read config.json ({type(exc).__name__}: {exc})") from exc


def load_converted_config(
    pretrained: str, load: LoadOptions, *, model_type: str, package: str, config_class: str, convert_hint: str
) -> Any:
    """Load a videolmm-converted checkpoint's config with its family's own config class.

    Args:
        pretrained: checkpoint directory or hub id.
        load: revision and remote-code options.
        model_type: the ``model_type`` a converted checkpoint declares.
        package: the family package whose ``configuration`` module registers the class.
        config_class: the config class name in that module.
        convert_hint: the ``videolmm convert`` arguments that make an original loadable.

    Raises:
        ConfigError: the checkpoint is not a converted one (the message names the convert command).
    """
    raw = read_config_dict(pretrained, revision=load.revision)
    if raw.get("model_type") != model_type:
        raise ConfigError(
            f"{pretrained}: model_type={raw.get('model_type')!r} is not a converted {model_type} checkpoint; run "
            f"`videolmm convert {convert_hint.format(pretrained=pretrained)}` first"
        )
    import_string(f"{package}.configuration.register_auto_config")()
    cls = import_string(f"{package}.configuration.{config_class}")
    return cls.from_pretrained(pretrained, revision=load.revision)


@dataclass(frozen=True)
class Family:
    """Base class of model families. Subclass it and override what differs.

    Attributes:
        name: registry name, e.g. ``"llava_next_video"``.
        description: one line for ``videolmm inspect`` and the docs.
        model_class: string import path of the model class (kept a string so that
            registering a family never imports torch).
        processor_class: string import path of the processor class.
        model_types: ``config.json`` ``model_type`` values this family loads (used by the
            built-in ``resolve_family``).
        media: default decoder, sampler and frame count (the seed's own).
        video_placeholder: the processor's video token in prompt text.
        image_placeholder: the processor's image token in prompt text.
        lmms_eval_id: the dedicated lmms-eval model id, if any (all families are also
            reachable through the generic ``videolmm`` id with ``family=``).
        options: family-specific options and their defaults (overridable per run).
        tiny_builder: string import path (``"package.module:function"``) of a function
            ``(out_dir, *, seed, geometry) -> Path`` writing a tiny checkpoint of this family
            (``videolmm tiny``); kept a string so that the core never imports test fixtures.
    """

    name: str
    description: str = ""
    model_class: str = ""
    processor_class: str = ""
    model_types: tuple[str, ...] = ()
    media: MediaSettings = field(default_factory=MediaSettings)
    video_placeholder: str = "<video>"
    image_placeholder: str = "<image>"
    lmms_eval_id: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    tiny_builder: str = ""

    # --- options -----------------------------------------------------------------------

    def check_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """Validate family options; unknown names raise ``ConfigError`` listing the known ones."""
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            known = ", ".join(sorted(self.options)) or "none"
            raise ConfigError(f"family {self.name!r} has no option(s) {unknown}; known options: {known}")
        return {k: options.get(k, v) for k, v in self.options.items()}

    def apply_options(self, config: Any, options: Mapping[str, Any]) -> None:
        """Write family options into the transformers config before the model is built."""

    def effective_options(self, config: Any) -> dict[str, Any]:
        """The option values the loaded config actually carries (for inspection)."""
        return {}

    # --- prompt ------------------------------------------------------------------------

    def default_template(self, config: Any) -> str:
        """Name of the seed's conversation template for this checkpoint."""
        raise NotImplementedError

    def content_extras(self, frames: Any, config: Any = None) -> str | None:
        """Extra text the family puts between the placeholders and the question (e.g. a
        time instruction), or None. ``config`` is the engine's loaded config (family options
        applied), so that a per-engine option can change or drop the text."""
        return None

    # --- token math ----------------------------------------------------------------------

    def video_tokens_per_frame(self, config: Any, height: int, width: int) -> int:
        """Visual tokens one frame of ``height``×``width`` (processed) pixels becomes, derived
        from the config (patch size, pooling, CLS handling, newlines)."""
        raise NotImplementedError

    def video_tokens(self, config: Any, num_frames: int, height: int, width: int) -> int:
        """Visual tokens a whole video becomes (per-frame count × frames, plus any per-video
        extras a family adds)."""
        return self.video_tokens_per_frame(config, height, width) * num_frames

    def processed_frame_size(self, processor: Any) -> tuple[int, int]:
        """(height, width) of a frame after the video processor's resize and crop."""
        vp = processor.video_processor
        crop = getattr(vp, "crop_size", None)
        if getattr(vp, "do_center_crop", False) and crop:
            return _hw(crop)
        return _hw(vp.size)

    # --- loading -----------------------------------------------------------------------

    def load_config(self, pretrained: str, load: LoadOptions) -> Any:
        """Load the transformers config."""
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(pretrained, revision=load.revision, trust_remote_code=load.trust_remote_code)

    def load_processor(self, pretrained: str, config: Any, load: LoadOptions) -> Any:
        """Load the processor and make it agree with the config (pool stride, left padding)."""
        cls = import_string(self.processor_class)
        processor = cls.from_pretrained(pretrained, revision=load.revision, trust_remote_code=load.trust_remote_code)
        return left_padded(processor)

    def load_model(self, pretrained: str, config: Any, load: LoadOptions) -> Any:
        """Load the model in eval mode, placed and quantised as asked."""
        cls = import_string(self.model_class)
        kwargs: dict[str, Any] = {
            "config": config,
            "dtype": load.torch_dtype(),
            "revision": load.revision,
            "trust_remote_code": load.trust_remote_code,
        }
        if load.attn_implementation:
            kwargs["attn_implementation"] = load.attn_implementation
        if load.quantization:
            kwargs["quantization_config"] = _quantization_config(load.quantization)
        if load.device_map:
            kwargs["device_map"] = load.device_map
        elif load.quantization:
            kwargs["device_map"] = load.resolved_device()
        model = cls.from_pretrained(pretrained, **kwargs)
        if not load.device_map and not load.quantization:
            model.to(load.resolved_device())
        model.eval()
        return model

    # --- tiny checkpoints -----------------------------------------------------------------

    def build_tiny(self, out_dir: str | os.PathLike[str], *, seed: int = 0, geometry: str = "tiny") -> Path:
        """Write a deterministic tiny checkpoint of this family (random weights, offline) with
        the function :attr:`tiny_builder` names.

        Raises:
            ConfigError: the family names no tiny builder.
        """
        if not self.tiny_builder:
            raise ConfigError(f"family {self.name!r} has no tiny checkpoint builder")
        return Path(import_string(self.tiny_builder)(out_dir, seed=seed, geometry=geometry))

    # --- inspection ----------------------------------------------------------------------

    def describe(self, config: Any) -> dict[str, Any]:
        """Family facts for ``videolmm inspect``: pooling, newline, feature selection."""
        return {}


def left_padded(processor: Any) -> Any:
    """Make a processor's tokenizer pad on the left (batched generation) and have a pad token."""
    processor.tokenizer.padding_side = "left"
    if processor.tokenizer.pad_token is None:
        processor.tokenizer.pad_token = processor.tokenizer.eos_token
    return processor


def vision_summary(config: Any) -> dict[str, Any]:
    """The vision tower facts every family's ``describe`` starts with."""
    vc = config.vision_config
    grid = vc.image_size // vc.patch_size
    return {
        "vision_tower": f"{vc.model_type} {vc.image_size}px patch {vc.patch_size} ({grid}×{grid} patches)",
        "vision_feature_layer": config.vision_feature_layer,
    }


def _hw(size: Any) -> tuple[int, int]:
    """(height, width) from a transformers size dict or SizeDict."""
    get = size.get if isinstance(size, Mapping) else (lambda k, d=None: getattr(size, k, d))
    if get("height") and get("width"):
        return int(get("height")), int(get("width"))
    edge = get("shortest_edge")
    if edge:
        return int(edge), int(edge)
    raise ConfigError(f"cannot tell the processed frame size from {size!r}")


def _quantization_config(kind: str) -> Any:
    if kind not in ("4bit", "8bit"):
        raise ConfigError(f"quantization={kind!r}: expected '4bit' or '8bit'")
    import torch
    from transformers import BitsAndBytesConfig

    if kind == "4bit":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.float16, bnb_4bit_quant_type="nf4")
    return BitsAndBytesConfig(load_in_8bit=True)


__all__ = [
    "load_converted_config",
    "CLIP_MEAN",
    "CLIP_STD",
    "clip_processor_kwargs",
    "Family",
    "LoadOptions",
    "import_string",
    "left_padded",
    "read_config_dict",
    "vision_summary",
]
