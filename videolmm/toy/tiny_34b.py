"""A tiny LLaVA-NeXT-Video-34B: the published 34B's config layout with tiny widths, built offline.

``llava-hf/LLaVA-NeXT-Video-34B-hf`` (and ``-34B-DPO-hf``) is a ``LlavaNextVideoForConditionalGeneration``
on Nous-Hermes-2-Yi-34B. What makes it different from the 7B, and what this checkpoint keeps:

- Yi's token ids: ``<unk>`` 0, ``<|startoftext|>`` 1 (BOS, not prepended), ``<|endoftext|>`` 2,
  ``<|im_start|>`` 6, ``<|im_end|>`` 7 (EOS), a 64000-entry vocabulary, so that ``<video>`` and
  ``<image>`` are 64000 / 64001 (transformers' conversion script and ``videolmm convert``), and
  the embeddings grown to 64064 rows (a multiple of 64);
- ``max_position_embeddings=4096`` and **no** RoPE scaling in ``text_config``: 32 frames × 144
  tokens = 4608 visual tokens do not fit the config's context, which is what the
  ``context_policy`` of the ``llava_next_video`` family is about;
- the vision settings: CLIP ViT-L/14 geometry at 336 px (24×24 patches, layer -2, CLS dropped),
  2×2 average pool before the projector → 144 tokens per frame, LLaVA-NeXT's anyres pinpoints;
- template ``mistral_direct`` (the family picks it from the 64000+ vocabulary).

The widths are tiny (vision hidden 32, text hidden 64, 2 layers each): a forward pass over 32
frames (≈4,700 positions) takes well under a second on CPU. torch, transformers and tokenizers
are imported inside the function only.
"""

from __future__ import annotations

from pathlib import Path

from videolmm.models.families.base import clip_processor_kwargs
from videolmm.toy import tiny

__all__ = ["YI_SPECIAL_TOKENS", "build_tiny_llava_next_video_34b", "build_tiny_llava_next_video_any"]

#: Yi's special tokens by id (ids 3–5 are other Yi specials, unused here).
YI_SPECIAL_TOKENS: tuple[str, ...] = (
    "<unk>",
    "<|startoftext|>",
    "<|endoftext|>",
    "<|reserved_3|>",
    "<|reserved_4|>",
    "<|reserved_5|>",
    "<|im_start|>",
    "<|im_end|>",
)
_YI_VOCAB = 64000
_IMAGE, _PATCH = 336, 14


def _yi_tokenizer():  # noqa: ANN202 - a transformers tokenizer
    from tokenizers import AddedToken
    from transformers import PreTrainedTokenizerFast

    from videolmm.toy.original_weights import trained_bpe

    backend = trained_bpe(YI_SPECIAL_TOKENS, _YI_VOCAB)
    backend.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in ("<video>", "<image>")])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        bos_token="<|startoftext|>",
        eos_token="<|im_end|>",
        pad_token="<unk>",
        padding_side="left",
        model_max_length=4096,
        clean_up_tokenization_spaces=False,
        extra_special_tokens={"image_token": "<image>", "video_token": "<video>"},
    )
    for token, wanted in (("<|im_start|>", 6), ("<|im_end|>", 7), ("<video>", 64000), ("<image>", 64001)):
        got = tokenizer.convert_tokens_to_ids(token)
        if got != wanted:  # pragma: no cover - guarded by the construction above
            raise RuntimeError(f"{token} got id {got}, expected Yi's {wanted}")
    return tokenizer


def build_tiny_llava_next_video_34b(out_dir: str | Path, *, seed: int = 0) -> Path:
    """Write the 34B-geometry tiny ``LlavaNextVideoForConditionalGeneration`` checkpoint.

    Args:
        out_dir: directory to write (created if missing).
        seed: weight seed; the same seed gives bit-identical weights.

    Returns:
        The checkpoint directory.
    """
    from transformers import (
        LlavaNextImageProcessor,
        LlavaNextVideoConfig,
        LlavaNextVideoForConditionalGeneration,
        LlavaNextVideoProcessor,
        LlavaNextVideoVideoProcessor,
    )

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = _yi_tokenizer()
    text = tiny.tiny_llama_text_config(tokenizer, 4096)
    text.vocab_size = _YI_VOCAB + 64  # 64064: grown to a multiple of 64, as the converters do
    text.bos_token_id, text.eos_token_id, text.pad_token_id = 1, 7, 0
    pinpoints = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]
    grid = _IMAGE // _PATCH
    config = LlavaNextVideoConfig(
        vision_config=tiny.tiny_clip_vision_config(_IMAGE, _PATCH),
        text_config=text,
        image_token_index=64001,
        video_token_index=64000,
        projector_hidden_act="gelu",
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        image_grid_pinpoints=pinpoints,
        spatial_pool_mode="average",
        spatial_pool_stride=2,
        image_seq_length=grid * grid,
        video_seq_length=(grid // 2) ** 2 * 32,
        tie_word_embeddings=False,
    )
    config.initializer_range = 0.02
    tiny.save_tiny_model(LlavaNextVideoForConditionalGeneration, config, tokenizer, out, seed)
    common = clip_processor_kwargs(_IMAGE)
    processor = LlavaNextVideoProcessor(
        video_processor=LlavaNextVideoVideoProcessor(**common),
        image_processor=LlavaNextImageProcessor(**common, image_grid_pinpoints=pinpoints, do_pad=True),
        tokenizer=tokenizer,
        patch_size=_PATCH,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )
    processor.save_pretrained(out)
    tiny.write_tiny_manifest(out, "llava_next_video", "published-34b", seed)
    return out


def build_tiny_llava_next_video_any(out_dir: str | Path, *, seed: int = 0, geometry: str = "tiny") -> Path:
    """The ``llava_next_video`` family's tiny builder: every geometry of
    :func:`videolmm.toy.tiny.build_tiny_llava_next_video`, plus ``"published-34b"`` (this module's).

    Raises:
        ValueError: If ``geometry`` is unknown.
    """
    if geometry == tiny.LNV_34B_GEOMETRY:
        return build_tiny_llava_next_video_34b(out_dir, seed=seed)
    return tiny.build_tiny_llava_next_video(out_dir, seed=seed, geometry=geometry)
