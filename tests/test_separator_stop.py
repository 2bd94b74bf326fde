"""The seeds stop at the template's separator; where it is text (not a special token) both doors add it
as a stop string: lmms-eval's model class and the Serve model replica, through one function."""

from __future__ import annotations

from pathlib import Path

from videolmm.load import load_engine
from videolmm.models.engine import DecodedRequest
from videolmm.models.families.base import LoadOptions
from videolmm.tokens import separator_stop
from videolmm.types import GenerationSettings, Request


def test_a_text_separator_is_a_stop_string_and_a_special_one_is_not(tiny_llava_next_video: Path) -> None:
    tokenizer = load_engine(str(tiny_llava_next_video), load_model=False).processor.tokenizer
    assert "<|im_end|>" not in tokenizer.all_special_tokens  # the tiny Llama-style tokenizer, like Mistral's
    assert separator_stop("<|im_end|>", tokenizer) == "<|im_end|>"
    assert separator_stop("</s>", tokenizer) == "" and separator_stop("", tokenizer) == ""


def test_lmms_eval_and_serve_add_the_same_stop(tiny_llava_next_video: Path) -> None:
    from videolmm.eval.model import LlavaNextVideo
    from videolmm.serve.deployments import LoadedEngine
    from videolmm.serve.metrics import TokenMetrics

    lm = LlavaNextVideo(pretrained=str(tiny_llava_next_video), conv_template="mistral_direct", device="cpu")
    eval_stops = lm._generation({"until": ["\n"]}).stop
    assert eval_stops == ("\n", "<|im_end|>")

    engine = load_engine(str(tiny_llava_next_video), template="mistral_direct", load=LoadOptions(device="cpu"))
    loaded = LoadedEngine(engine, "m", max_batch_size=2, metrics=TokenMetrics.__new__(TokenMetrics))
    try:
        item = DecodedRequest(Request(question="q", generation=GenerationSettings(stop=("\n",))))
        served = loaded.with_separator_stop(item).request.generation.stop
        assert served == eval_stops
        assert loaded.with_separator_stop(loaded.with_separator_stop(item)).request.generation.stop == served
    finally:
        loaded.close()
    vicuna = load_engine(str(tiny_llava_next_video), load=LoadOptions(device="cpu"))  # stops at </s>: the EOS
    assert separator_stop(vicuna.template.stop, vicuna.processor.tokenizer) == ""
