"""Token ids around the visual token: the seeds' ``tokenizer_image_token``, reproduced exactly.

Llama-style tokenizers are built here: a SentencePiece BPE model trained on a tiny corpus with
the Llama options (byte fallback, dummy prefix, identity normalisation), loaded into transformers'
``LlamaTokenizer`` (= ``LlamaTokenizerFast`` in transformers 5) with ``legacy=True`` and
``legacy=False``. The reference below is an independent re-statement of the upstream algorithm
(LLaVA-NeXT ``llava/mm_utils.py``): it maps each placeholder to one id; it is run with the HF
tokenizer and, as the seeds' slow tokenizer did, with the SentencePiece model itself.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from videolmm.models.prompts import BUILTIN_TEMPLATES
from videolmm.tokens import retokenize_row, seed_token_ids

TEMPLATES = {t.name: t for t in BUILTIN_TEMPLATES}
CORPUS = [
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the user's questions.",
    "USER: What is the colour of the square? ASSISTANT: The square is red.",
    "[INST] Where does the square move? [/INST] It moves to the left.",
    "Answer the questions. The video shows a blue square.\nIt moves up, then down.",
]
VIDEO_ID = 1000  # any id outside the SentencePiece vocabulary stands for the placeholder


@pytest.fixture(scope="module")
def spm_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sentencepiece = pytest.importorskip("sentencepiece")
    folder = tmp_path_factory.mktemp("spm")
    (folder / "corpus.txt").write_text("\n".join(CORPUS * 40))
    sentencepiece.SentencePieceTrainer.train(
        input=str(folder / "corpus.txt"),
        model_prefix=str(folder / "tokenizer"),
        vocab_size=400,
        model_type="bpe",
        byte_fallback=True,
        add_dummy_prefix=True,
        remove_extra_whitespaces=False,
        normalization_rule_name="identity",
        split_digits=True,
        allow_whitespace_only_pieces=True,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        minloglevel=2,
    )
    return folder / "tokenizer.model"


def llama_tokenizer(model_file: Path, legacy: bool):
    """transformers' LlamaTokenizer over the SentencePiece model's pieces and scores."""
    import sentencepiece
    from transformers import LlamaTokenizer
    from transformers.tokenization_utils_base import generate_merges

    sp = sentencepiece.SentencePieceProcessor(model_file=str(model_file))
    vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    scores = {sp.id_to_piece(i): sp.get_score(i) for i in range(sp.get_piece_size())}
    tok = LlamaTokenizer(vocab=vocab, merges=generate_merges(vocab, scores), legacy=legacy, add_bos_token=True)
    tok.add_special_tokens({"additional_special_tokens": ["<video>", "<image>"]})
    tok.pad_token = tok.unk_token
    return tok


def reference(prompt: str, encode, bos_id: int, placeholder: str = "<video>", index: int = VIDEO_ID) -> list[int]:
    """The upstream algorithm, restated: chunks at the placeholder, each encoded with BOS; BOS
    kept once; every later chunk loses as many leading tokens as the first chunk's BOS offset."""
    pieces = [encode(c) for c in prompt.split(placeholder)]
    out: list[int] = []
    skip = 0
    if pieces and pieces[0] and pieces[0][0] == bos_id:
        skip = 1
        out.append(bos_id)
    for n, piece in enumerate(pieces):
        if n > 0:
            out.append(index)
        out += piece[skip:]
    return out


def prompts() -> list[str]:
    q = "What does the square do?\nAnswer briefly."
    two_turns = TEMPLATES["vicuna_v1"].render_conversation(
        [("user", "<video>\nWhat colour is it?"), ("assistant", "It is red."), ("user", q)]
    )
    return [
        TEMPLATES["vicuna_v1"].render(f"<video>\n{q}"),
        TEMPLATES["mistral_instruct"].render(f"<video>\n{q}"),
        TEMPLATES["mistral_direct"].render(f"<video>\n{q}"),
        TEMPLATES["v1"].render(f"Compare <video> with <video>.\n{q}"),
        "<video>\nStarts with the video.",
        two_turns,
    ]


@pytest.mark.parametrize("legacy", [True, False])
def test_seed_ids_equal_the_upstream_algorithm(spm_model: Path, legacy: bool) -> None:
    import sentencepiece

    tok = llama_tokenizer(spm_model, legacy)
    sp = sentencepiece.SentencePieceProcessor(model_file=str(spm_model))
    visual = {"<video>": VIDEO_ID}
    for prompt in prompts():
        ours = seed_token_ids(tok, prompt, visual)
        if "</s>" in prompt:  # special tokens inside a chunk: the tokenizer's own handling (its legacy flag)
            assert ours == reference(prompt, lambda c: tok(c).input_ids, tok.bos_token_id), prompt
        else:  # plain text: the seeds' slow tokenizer (use_fast=False) is SentencePiece itself
            assert ours == reference(prompt, lambda c: [1, *sp.encode(c)], 1), prompt


def test_a_chunk_starting_with_a_space_keeps_sentencepieces_dummy_prefix(spm_model: Path) -> None:
    """``Compare <video> with``: SentencePiece encodes the chunk `` with`` as ``▁ ▁with``; the
    Metaspace pre-tokenizer alone would give ``▁with``."""
    import sentencepiece

    sp = sentencepiece.SentencePieceProcessor(model_file=str(spm_model))
    tok = llama_tokenizer(spm_model, legacy=True)
    prompt = "Compare <video> with it"
    ours = seed_token_ids(tok, prompt, {"<video>": VIDEO_ID})
    assert ours == reference(prompt, lambda c: [1, *sp.encode(c)], 1)
    assert ours != reference(prompt, lambda c: tok(c).input_ids, tok.bos_token_id)


def test_the_leading_dummy_prefix_before_the_newline(spm_model: Path) -> None:
    """The ``29871`` artefact: ``▁`` then ``<0x0A>`` after the visual token, with both legacy settings;
    whole-string tokenization with legacy=False loses the ``▁`` (what videolmm did before)."""
    prompt = TEMPLATES["vicuna_v1"].render("<video>\nWhy?")
    for legacy in (True, False):
        tok = llama_tokenizer(spm_model, legacy)
        space, newline = tok.convert_tokens_to_ids(["▁", "<0x0A>"])
        ours = seed_token_ids(tok, prompt, {"<video>": tok.convert_tokens_to_ids("<video>")})
        at = ours.index(tok.convert_tokens_to_ids("<video>"))
        assert ours[at - 1 : at + 3] == [space, tok.convert_tokens_to_ids("<video>"), space, newline]
        whole = tok(prompt).input_ids
        assert (whole == ours) is legacy


@pytest.mark.parametrize("legacy", [True, False])
def test_expanded_processor_ids_are_retokenized_around_the_runs(spm_model: Path, legacy: bool) -> None:
    """What the processors' mixin does: the processor's expanded run stays, the text is chunked
    (the same ids as the one-id-per-placeholder form, checked against the reference above)."""
    import sentencepiece

    sp = sentencepiece.SentencePieceProcessor(model_file=str(spm_model))
    tok = llama_tokenizer(spm_model, legacy)
    vid = tok.convert_tokens_to_ids("<video>")
    prompt = TEMPLATES["vicuna_v1"].render(f"Compare <video> with <video>.\n{'Which is red?'}")
    expanded = prompt.replace("<video>", "<video>" * 6)
    processor_ids = tok(expanded).input_ids
    ours = retokenize_row(tok, prompt, processor_ids, {"<video>": vid})
    want = seed_token_ids(tok, prompt, {"<video>": vid})
    assert [i for i in ours if i != vid] == [i for i in want if i != vid]
    assert want == reference(prompt, lambda c: [1, *sp.encode(c)], 1, index=vid)
    assert ours.count(vid) == 12
    # adjacent placeholders expand into one run
    adjacent = "<video><video>\nWhich?"
    ids = tok(adjacent.replace("<video>", "<video>" * 3)).input_ids
    assert retokenize_row(tok, adjacent, ids, {"<video>": vid}).count(vid) == 6


def test_byte_level_tiny_tokenizer_ids_do_not_change(tiny_llava_next_video: Path, clips: dict[str, Path]) -> None:
    """Where whole-string ids already equal the seed's (byte-level BPE: the tiny checkpoints, Qwen2),
    the processors' ids are unchanged."""
    from transformers import AutoProcessor

    from videolmm.models.families.llava_next_video.processing import PooledLlavaNextVideoProcessor

    base = AutoProcessor.from_pretrained(tiny_llava_next_video)
    ours = PooledLlavaNextVideoProcessor.from_pretrained(tiny_llava_next_video)
    import numpy as np

    video = np.zeros((4, 32, 32, 3), dtype=np.uint8)
    prompts_ = [TEMPLATES["vicuna_v1"].render("<video>\nWhat colour?"), TEMPLATES["vicuna_v1"].render("<video>\nHi")]
    a = base(text=prompts_, videos=[video, video], return_tensors="pt", padding=True)
    b = ours(text=prompts_, videos=[video, video], return_tensors="pt", padding=True)
    assert a["input_ids"].tolist() == b["input_ids"].tolist()
    assert a["attention_mask"].tolist() == b["attention_mask"].tolist()


@pytest.mark.parametrize("legacy", [True, False])
def test_llava_next_video_processor_gives_the_seed_ids(
    spm_model: Path, tiny_llava_next_video: Path, legacy: bool
) -> None:
    """The family's processor with a Llama-style tokenizer: its ids are the seed's, both legacy settings,
    in a left-padded batch; transformers' own processor differs with legacy=False (no ``▁`` after the run)."""
    import numpy as np
    import sentencepiece
    from transformers import LlavaNextVideoProcessor

    from videolmm.models.families.llava_next_video.processing import PooledLlavaNextVideoProcessor

    tok = llama_tokenizer(spm_model, legacy)
    tok.padding_side = "left"
    tiny = PooledLlavaNextVideoProcessor.from_pretrained(tiny_llava_next_video)
    parts = {"image_processor": tiny.image_processor, "video_processor": tiny.video_processor, "tokenizer": tok}
    extra = {
        "patch_size": tiny.patch_size,
        "vision_feature_select_strategy": "default",
        "num_additional_image_tokens": 0,
    }
    ours = PooledLlavaNextVideoProcessor(**parts, **extra)
    stock = LlavaNextVideoProcessor(**parts, **extra)
    vid = tok.convert_tokens_to_ids("<video>")
    sp = sentencepiece.SentencePieceProcessor(model_file=str(spm_model))
    texts = [
        TEMPLATES["vicuna_v1"].render("<video>\nWhat colour is the square?"),
        TEMPLATES["vicuna_v1"].render("<video>\nWhy?"),
    ]
    videos = [np.zeros((2, 32, 32, 3), dtype=np.uint8)] * 2
    out = ours(text=texts, videos=videos, return_tensors="pt", padding=True)
    per_frame = out["input_ids"][0].tolist().count(vid) // 2
    for row, text in enumerate(texts):
        kept = [
            i for i, m in zip(out["input_ids"][row].tolist(), out["attention_mask"][row].tolist(), strict=True) if m
        ]
        want = reference(text, lambda c: [1, *sp.encode(c)], 1, index=vid)
        at = want.index(vid)
        want = want[:at] + [vid] * (2 * per_frame) + want[at + 1 :]
        assert kept == want
    assert out["attention_mask"][1].tolist()[0] == 0  # the shorter row is padded on the left
    whole = stock(text=texts, videos=videos, return_tensors="pt", padding=True)
    assert (whole["input_ids"].tolist() == out["input_ids"].tolist()) is legacy


def test_video_llava_processor_gives_the_seed_ids(spm_model: Path, tiny_video_llava: Path) -> None:
    """Video-LLaVA's seed (``run_inference_video_qa.py``: eight adjacent ``<image>``, then
    ``tokenizer_image_token``) gives the same ids as ``<video>`` chunked; the family's processor builds them
    (legacy=False here, where transformers' own processor drops the ``▁`` after the run)."""
    import numpy as np
    import sentencepiece
    from transformers import VideoLlavaProcessor

    from videolmm.models.families.base import import_string
    from videolmm.models.families.video_llava.family import VIDEO_LLAVA

    cls = import_string(VIDEO_LLAVA.processor_class)
    tiny = cls.from_pretrained(tiny_video_llava)
    video = np.zeros((8, 32, 32, 3), dtype=np.uint8)
    text = TEMPLATES["llava_v1"].render("<video>\nWhat colour?")
    same = VideoLlavaProcessor.from_pretrained(tiny_video_llava)(text=[text], videos=[video], return_tensors="pt")
    assert tiny(text=[text], videos=[video], return_tensors="pt")["input_ids"].tolist() == same["input_ids"].tolist()
    tok = llama_tokenizer(spm_model, legacy=False)
    parts = {"image_processor": tiny.image_processor, "video_processor": tiny.video_processor, "tokenizer": tok}
    extra = {
        "patch_size": tiny.patch_size,
        "vision_feature_select_strategy": "default",
        "num_additional_image_tokens": 1,
    }
    out = cls(**parts, **extra)(text=[text], videos=[video], return_tensors="pt")["input_ids"][0].tolist()
    vid = tok.convert_tokens_to_ids("<video>")
    sp = sentencepiece.SentencePieceProcessor(model_file=str(spm_model))
    seed = reference(text.replace("<video>", "<image>" * 8), lambda c: [1, *sp.encode(c)], 1, "<image>", vid)
    assert [i for i in out if i != vid] == [i for i in seed if i != vid]
    assert out.count(vid) > 0 and out.count(vid) % 8 == 0  # one run: 8 frames of (patches + CLS)
    whole = VideoLlavaProcessor(**parts, **extra)(text=[text], videos=[video], return_tensors="pt")["input_ids"][0]
    assert whole.tolist() != out
