"""Deterministic tiny checkpoints of the real video LMM classes, built fully offline.

Each builder writes a directory that the ordinary transformers loading code accepts
(``AutoConfig`` / ``XForConditionalGeneration.from_pretrained`` / ``AutoProcessor.from_pretrained``),
with the same classes and file layout as the published checkpoints but a few hundred thousand
random parameters. Nothing is downloaded: the tokenizer is a small byte-level BPE trained here
on a fixed corpus, and the weights come from the models' own initialisers under a fixed seed.

Two geometries are offered:

* ``"tiny"``: 32x32 frames, patch 8 (a 4x4 grid), so few visual tokens that ``generate`` on
  CPU takes milliseconds.
* ``"published"``: the published vision geometry (336/14 for LLaVA-NeXT-Video, 224/14 for
  Video-LLaVA), so the processors insert as many visual tokens per frame as the real
  checkpoints (144 and 257), still with tiny widths and depths.

LLaVA-NeXT-Video also takes ``"published-34b"``: the 34B's layout (Yi token ids, 4,096-position
context without RoPE scaling; :mod:`videolmm.toy.tiny_34b`).

torch, transformers and tokenizers are imported inside the functions only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from videolmm.models.families.base import clip_processor_kwargs

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedTokenizerFast

__all__ = [
    "GEOMETRIES",
    "LNV_34B_GEOMETRY",
    "SPECIAL_TOKENS",
    "CHAT_TEMPLATE",
    "MANIFEST_NAME",
    "build_tokenizer",
    "build_tiny_llava_next_video",
    "build_tiny_video_llava",
]

GEOMETRIES: tuple[str, ...] = ("tiny", "published")
"""Vision geometries every builder accepts."""

LNV_34B_GEOMETRY = "published-34b"
"""The extra geometry of the LLaVA-NeXT-Video builder: the 34B's layout."""

SPECIAL_TOKENS: tuple[str, ...] = ("<unk>", "<pad>", "<s>", "</s>", "<image>", "<video>")
"""Special tokens, in id order (ids 0..5)."""

MANIFEST_NAME = "videolmm_tiny.json"
"""File written into each checkpoint directory recording family, geometry and seed."""

_VOCAB_SIZE = 400
_INITIALIZER_RANGE = 0.02

# Vicuna-v1 style: "<system> USER: <video>\n<text> ASSISTANT: <answer></s>USER: ...".
# Content may be a string or a list of {"type": "text"|"image"|"video"} parts; images and
# videos are rendered first (one placeholder and a newline each), then the text parts.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['content'] is string -%}"
    "{%- set text = message['content'] -%}"
    "{%- set media = '' -%}"
    "{%- else -%}"
    "{%- set text = message['content'] | selectattr('type', 'equalto', 'text')"
    " | map(attribute='text') | join(' ') -%}"
    "{%- set ns = namespace(media='') -%}"
    "{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}{%- set ns.media = ns.media + '<image>\\n' -%}"
    "{%- elif part['type'] == 'video' -%}{%- set ns.media = ns.media + '<video>\\n' -%}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- set media = ns.media -%}"
    "{%- endif -%}"
    "{%- if message['role'] == 'system' -%}"
    "{{ text + ' ' }}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{{ 'ASSISTANT: ' + text + eos_token }}"
    "{%- else -%}"
    "{{ 'USER: ' + media + text + ' ' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ 'ASSISTANT:' }}{%- endif -%}"
)
"""Jinja chat template (Vicuna v1 style) stored with every tiny checkpoint."""

_SCAFFOLDING: tuple[str, ...] = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the user's questions.",
    "A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the human's questions.",
    "USER: What is happening in this video? ASSISTANT: A red square moves from left to right.",
    "USER: Describe the video. ASSISTANT: A blue square moves up.",
    "USER: <video>\nWhat colour is the square? ASSISTANT: Red.</s>USER: Which way does it move? ASSISTANT: Left.",
    "USER: <image>\nWhat colour? ASSISTANT: Green. USER: And the direction? ASSISTANT: Down.",
    "USER: ASSISTANT: USER: ASSISTANT: USER: ASSISTANT:",
    "<|im_start|>system\nAnswer the questions.<|im_end|><|im_start|>user\nWhat colour is the square?<|im_end|>"
    "<|im_start|>assistant\nGreen.<|im_end|>",
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhich way does it move?"
    "<|im_end|>\n<|im_start|>assistant\nDown.<|im_end|>",
    "[INST] What colour is the square? [/INST] The square is yellow.",
    "[INST] Which direction does the square move? [/INST] It moves to the right.",
    "The video lasts for 10.00 seconds, and 8 frames are uniformly sampled from it. These frames are located "
    "at 0.00s,1.25s,2.50s.Please answer the following questions related to this video.",
    "Answer the question using a single word or phrase.",
    "Answer with the option's letter from the given choices directly. (A) red (B) green (C) blue (D) yellow",
)
"""Prompt scaffolding of the seeds (Vicuna, ChatML, Mistral, LLaVA-Video time instruction)."""

_CORPUS: tuple[str, ...] = (
    "red green blue yellow orange purple white black grey gray pink brown cyan magenta colour color colours",
    "left right up down top bottom centre center middle corner edge direction directions moves moving motion",
    "The red square moves left. The green square moves right. The blue square moves up. The yellow square moves down.",
    "A square, a small square, a large square, two squares, the squares cross the frame from one side to the other.",
    "video videos frame frames clip clips second seconds first last start end before after then finally",
    "What colour is the square? Which direction does the square move? How many squares are there?",
    "Is the square moving left or right? Is it moving up or down? Yes. No. One. Two. Three. Four.",
    "The background is black and the square is bright. The camera is still. Nothing else happens in the video.",
    "Question: What is shown in the video? Answer: a square. Correct Answer: red. Predicted Answer: red.",
    "0 1 2 3 4 5 6 7 8 9 10 16 32 64 100 A B C D E",
)
"""English about colours, directions, squares and videos."""


def _check_geometry(geometry: str) -> None:
    if geometry not in GEOMETRIES:
        raise ValueError(f"unknown geometry {geometry!r}; expected one of {GEOMETRIES}")


def _build_backend_tokenizer() -> Any:
    """Train the byte-level BPE backend (a ``tokenizers.Tokenizer``) on the fixed corpus."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=_VOCAB_SIZE,
        min_frequency=1,
        show_progress=False,
        special_tokens=[
            AddedToken(t, single_word=False, lstrip=False, rstrip=False, normalized=False, special=True)
            for t in SPECIAL_TOKENS
        ],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    # The prompt scaffolding is weighted up so that its markers become whole tokens.
    corpus = list(_SCAFFOLDING) * 6 + list(_CORPUS)
    tok.train_from_iterator(corpus, trainer=trainer, length=len(corpus))
    for i, t in enumerate(SPECIAL_TOKENS):
        if tok.token_to_id(t) != i:  # pragma: no cover - guarded by the trainer's contract
            raise RuntimeError(f"special token {t!r} got id {tok.token_to_id(t)}, expected {i}")
    bos = SPECIAL_TOKENS[2]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos}:0 $A:0",
        pair=f"{bos}:0 $A:0 {bos}:1 $B:1",
        special_tokens=[(bos, SPECIAL_TOKENS.index(bos))],
    )
    return tok


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Build the deterministic tiny tokenizer shared by all tiny checkpoints.

    A byte-level BPE (vocab about 400) trained on a fixed built-in corpus of the seeds' prompt
    scaffolding and words about colours, directions, squares and videos. Special tokens
    ``<unk> <pad> <s> </s> <image> <video>`` have ids 0 to 5 and are never split. Every encoded
    sequence starts with ``<s>`` (like Llama); padding is on the left.

    Returns:
        A ``PreTrainedTokenizerFast`` (``TokenizersBackend`` in transformers 5) with
        ``image_token`` / ``video_token`` (and their ids) set and a Vicuna-style chat template.
    """
    from transformers import PreTrainedTokenizerFast

    backend = _build_backend_tokenizer()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        padding_side="left",
        truncation_side="left",
        model_max_length=4096,
        clean_up_tokenization_spaces=False,
        extra_special_tokens={"image_token": "<image>", "video_token": "<video>"},
        chat_template=CHAT_TEMPLATE,
    )
    return tokenizer


def _llama_text_config(tokenizer: Any, max_positions: int) -> Any:
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        hidden_act="silu",
        max_position_embeddings=max_positions,
        initializer_range=_INITIALIZER_RANGE,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )


def _clip_vision_config(image_size: int, patch_size: int) -> Any:
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=image_size,
        patch_size=patch_size,
        projection_dim=32,
        hidden_act="quick_gelu",
        initializer_range=_INITIALIZER_RANGE,
        initializer_factor=1.0,
    )


def _save_model(model_cls: Any, config: Any, tokenizer: Any, out: Path, seed: int) -> None:
    """Instantiate ``model_cls(config)`` under ``seed`` and save it (float32 safetensors)."""
    import torch
    from transformers import GenerationConfig
    from transformers.utils import logging as hf_logging

    torch.manual_seed(seed)
    model = model_cls(config)
    model.eval()
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a 0.6 MB checkpoint needs no "Writing model shards" bar
    try:
        model.save_pretrained(out)
    finally:
        if bars:
            hf_logging.enable_progress_bar()


def _write_manifest(out: Path, family: str, geometry: str, seed: int) -> None:
    manifest = {"family": family, "geometry": geometry, "seed": seed}
    (out / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def build_tiny_llava_next_video(out_dir: str | Path, *, seed: int = 0, geometry: str = "tiny") -> Path:
    """Write a tiny ``LlavaNextVideoForConditionalGeneration`` checkpoint with its processor.

    CLIP vision tower (hidden 32, 2 layers) and Llama text model (hidden 64, 2 layers, 4 heads,
    2 KV heads), ``vision_feature_layer=-2``, ``"default"`` feature selection, 2x2 average
    pooling. The tiny geometry (image 32, patch 8) gives 4 visual tokens per frame, the
    published one (image 336, patch 14) 144, as ``llava-hf/LLaVA-NeXT-Video-7B-hf``.

    Args:
        out_dir: Directory to write (created if missing; existing files are overwritten).
        seed: Seed for the weight initialisation; the same seed gives bit-identical weights.
        geometry: ``"tiny"`` or ``"published"`` (the 7B's vision geometry); the family's builder,
            :func:`videolmm.toy.tiny_34b.build_tiny_llava_next_video_any`, also takes ``"published-34b"``.

    Returns:
        The checkpoint directory, loadable with ``from_pretrained``.

    Raises:
        ValueError: If ``geometry`` is unknown.
    """
    _check_geometry(geometry)
    from transformers import (
        LlavaNextImageProcessor,
        LlavaNextVideoConfig,
        LlavaNextVideoForConditionalGeneration,
        LlavaNextVideoProcessor,
        LlavaNextVideoVideoProcessor,
    )

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    image_size, patch_size = (32, 8) if geometry == "tiny" else (336, 14)
    grid = image_size // patch_size
    pinpoints = [[image_size, 2 * image_size], [2 * image_size, image_size], [2 * image_size, 2 * image_size]]
    if geometry == "published":
        pinpoints += [[3 * image_size, image_size], [image_size, 3 * image_size]]

    tokenizer = build_tokenizer()
    config = LlavaNextVideoConfig(
        vision_config=_clip_vision_config(image_size, patch_size),
        text_config=_llama_text_config(tokenizer, 4096),
        image_token_index=tokenizer.image_token_id,
        video_token_index=tokenizer.video_token_id,
        projector_hidden_act="gelu",
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        image_grid_pinpoints=pinpoints,
        spatial_pool_mode="average",
        spatial_pool_stride=2,
        image_seq_length=grid * grid,
        video_seq_length=(grid // 2) * (grid // 2) * 2,
        tie_word_embeddings=False,
    )
    config.initializer_range = _INITIALIZER_RANGE
    _save_model(LlavaNextVideoForConditionalGeneration, config, tokenizer, out, seed)

    common = clip_processor_kwargs(image_size)
    processor = LlavaNextVideoProcessor(
        video_processor=LlavaNextVideoVideoProcessor(**common),
        image_processor=LlavaNextImageProcessor(**common, image_grid_pinpoints=pinpoints, do_pad=True),
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        # CLIP keeps a CLS token; images drop it again under "default". Videos ignore this.
        num_additional_image_tokens=1,
    )
    processor.save_pretrained(out)
    _write_manifest(out, "llava_next_video", geometry, seed)
    return out


def build_tiny_video_llava(out_dir: str | Path, *, seed: int = 0, geometry: str = "tiny") -> Path:
    """Write a tiny ``VideoLlavaForConditionalGeneration`` checkpoint with its processor.

    CLIP towers (hidden 32, 2 layers) and Llama text model (hidden 64, 2 layers, 4 heads,
    2 KV heads), ``vision_feature_layer=-2``, ``"default"`` feature selection. Video frames keep
    the CLS token, so the tiny geometry (image 32, patch 8) gives 17 tokens per frame and the
    published one (image 224, patch 14) 257, as ``LanguageBind/Video-LLaVA-7B-hf``.

    Args:
        out_dir: Directory to write (created if missing; existing files are overwritten).
        seed: Seed for the weight initialisation; the same seed gives bit-identical weights.
        geometry: ``"tiny"`` or ``"published"``.

    Returns:
        The checkpoint directory, loadable with ``from_pretrained``.

    Raises:
        ValueError: If ``geometry`` is unknown.
    """
    _check_geometry(geometry)
    from transformers import (
        VideoLlavaConfig,
        VideoLlavaForConditionalGeneration,
        VideoLlavaImageProcessor,
        VideoLlavaProcessor,
        VideoLlavaVideoProcessor,
    )

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    image_size, patch_size = (32, 8) if geometry == "tiny" else (224, 14)
    patches = (image_size // patch_size) ** 2

    tokenizer = build_tokenizer()
    config = VideoLlavaConfig(
        vision_config=_clip_vision_config(image_size, patch_size),
        text_config=_llama_text_config(tokenizer, 4096),
        image_token_index=tokenizer.image_token_id,
        video_token_index=tokenizer.video_token_id,
        projector_hidden_act="gelu",
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        image_seq_length=patches,
        video_seq_length=(patches + 1) * 8,
        tie_word_embeddings=False,
    )
    config.initializer_range = _INITIALIZER_RANGE
    _save_model(VideoLlavaForConditionalGeneration, config, tokenizer, out, seed)

    common = clip_processor_kwargs(image_size)
    processor = VideoLlavaProcessor(
        image_processor=VideoLlavaImageProcessor(**common),
        video_processor=VideoLlavaVideoProcessor(**common),
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )
    processor.save_pretrained(out)
    _write_manifest(out, "video_llava", geometry, seed)
    return out


# ---------------------------------------------------------------------------------------------
# Building blocks for the other tiny builders (videolmm.toy.tiny_families and the original-
# layout builders in videolmm.toy.tiny_originals). Thin public names over the helpers
# above, so those modules reuse them without reaching into private names.


def check_geometry(geometry: str) -> None:
    """Raise ``ValueError`` unless ``geometry`` is one of :data:`GEOMETRIES`."""
    _check_geometry(geometry)


def tiny_llama_text_config(tokenizer: Any, max_positions: int = 4096) -> Any:
    """The tiny Llama text config (hidden 64, 2 layers, 4 heads, 2 KV heads) for ``tokenizer``."""
    return _llama_text_config(tokenizer, max_positions)


def tiny_clip_vision_config(image_size: int, patch_size: int) -> Any:
    """The tiny CLIP vision config (hidden 32, 2 layers, 4 heads) at the given geometry."""
    return _clip_vision_config(image_size, patch_size)


def save_tiny_model(model_cls: Any, config: Any, tokenizer: Any, out: Path, seed: int) -> None:
    """Instantiate ``model_cls(config)`` under ``seed`` and save it with a generation config."""
    _save_model(model_cls, config, tokenizer, out, seed)


def write_tiny_manifest(out: Path, family: str, geometry: str, seed: int) -> None:
    """Write :data:`MANIFEST_NAME` (family, geometry, seed) into a tiny checkpoint directory."""
    _write_manifest(out, family, geometry, seed)


def tokenizer_training_corpus() -> list[str]:
    """The fixed corpus the tiny tokenizers are trained on (scaffolding weighted up)."""
    return list(_SCAFFOLDING) * 6 + list(_CORPUS)
