"""The engine end to end on tiny checkpoints: token counts, batching, errors, log-likelihood."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from videolmm.errors import ConfigError, RegistryError
from videolmm.load import detect_family, load_engine
from videolmm.models.engine import Engine, cut_at_stop
from videolmm.models.families.base import LoadOptions
from videolmm.types import GenerationSettings, Request

CPU = LoadOptions(device="cpu")
GREEDY = GenerationSettings(max_new_tokens=6)


@pytest.fixture(scope="module")
def lnv(tiny_llava_next_video: Path) -> Engine:
    return load_engine(str(tiny_llava_next_video), num_frames=8, load=CPU)


@pytest.fixture(scope="module")
def vl(tiny_video_llava: Path) -> Engine:
    return load_engine(str(tiny_video_llava), load=CPU)


def q(video: Path | str, question: str = "What colour is the moving square?", **kw) -> Request:
    return Request(question=question, videos=(str(video),), generation=kw.pop("generation", GREEDY), **kw)


# ---------------------------------------------------------------- detection and defaults


def test_family_detected_from_config(tiny_llava_next_video: Path, tiny_video_llava: Path) -> None:
    assert detect_family(str(tiny_llava_next_video)) == "llava_next_video"
    assert detect_family(str(tiny_video_llava)) == "video_llava"


def test_seed_defaults(lnv: Engine, vl: Engine) -> None:
    assert lnv.settings.template == "vicuna_v1"  # Llama text model, 32k-ish vocab → 7B Vicuna
    assert (lnv.settings.media.decoder, lnv.settings.media.sampler) == ("keyframe", "uniform")
    assert lnv.settings.family_options == {"spatial_pool_stride": 2, "spatial_pool_mode": "average"}
    assert vl.settings.template == "llava_v1"
    assert vl.settings.media.sampling.num_frames == 8


def test_unknown_names_are_rejected_with_the_known_ones(tiny_llava_next_video: Path) -> None:
    with pytest.raises(RegistryError, match="registered templates: .*vicuna_v1"):
        load_engine(str(tiny_llava_next_video), template="nope", load=CPU, load_model=False)
    with pytest.raises(ConfigError, match="spatial_pool_stride"):
        load_engine(str(tiny_llava_next_video), family_options={"pool": 3}, load=CPU, load_model=False)


# ---------------------------------------------------------------- token counts


@pytest.mark.parametrize(("stride", "per_frame"), [(1, 16), (2, 4), (4, 1)])
def test_llava_next_video_tokens_follow_the_pool_stride(
    tiny_llava_next_video: Path, clips: dict[str, Path], stride: int, per_frame: int
) -> None:
    engine = load_engine(
        str(tiny_llava_next_video), num_frames=4, family_options={"spatial_pool_stride": stride}, load=CPU
    )
    result = engine.generate([q(clips["red_right"])])[0]
    assert result.ok, result.error
    assert result.usage.visual_tokens == per_frame * 4
    assert engine.model.config.spatial_pool_stride == stride


def test_video_llava_keeps_cls(vl: Engine, clips: dict[str, Path]) -> None:
    result = vl.generate([q(clips["red_right"])])[0]
    assert result.ok, result.error
    assert result.usage.visual_tokens == 17 * 8  # 4×4 patches + CLS, 8 frames


@pytest.mark.parametrize(
    ("builder", "per_frame"),
    [("build_tiny_llava_next_video", 144), ("build_tiny_video_llava", 257)],
)
def test_published_geometry_token_counts(tmp_path: Path, clips: dict[str, Path], builder: str, per_frame: int) -> None:
    from videolmm.toy import tiny

    ckpt = getattr(tiny, builder)(tmp_path / "ckpt", geometry="published")
    engine = load_engine(str(ckpt), num_frames=8, load=CPU, load_model=False)
    info = engine.describe(q(clips["red_right"]))
    assert info["visual_tokens_per_frame"] == per_frame
    assert info["visual_tokens_total"] == per_frame * 8


# ---------------------------------------------------------------- generation


def test_batched_equals_one_by_one(lnv: Engine, clips: dict[str, Path]) -> None:
    reqs = [
        q(clips["red_right"]),
        q(clips["blue_up"], "Which way does the square move? Answer in one word, please."),
        q(clips["green_left_long"], "Colour?"),
    ]
    batched = lnv.generate(reqs, batch_size=3)
    single = [lnv.generate([r])[0] for r in reqs]
    assert [r.text for r in batched] == [r.text for r in single]
    assert all(r.ok for r in batched)
    assert [r.usage.prompt_tokens for r in batched] == [r.usage.prompt_tokens for r in single]
    assert batched[0].usage.prompt_tokens > batched[2].usage.prompt_tokens  # left padding not counted


def test_broken_video_fails_only_its_own_request(lnv: Engine, clips: dict[str, Path], broken_video: Path) -> None:
    reqs = [q(clips["red_right"]), q(broken_video), q(tmp := "/nonexistent/clip.mp4"), q(clips["blue_up"])]
    results = lnv.generate(reqs, batch_size=4)
    assert [r.ok for r in results] == [True, False, False, True]
    assert str(broken_video) in results[1].error
    assert results[1].error.startswith(("MediaUnreadable", "NoVideoStream"))
    assert tmp in results[2].error and "MediaNotFound" in results[2].error


def test_prompt_placeholder_mismatch_fails_that_request(lnv: Engine, clips: dict[str, Path]) -> None:
    bad = q(clips["red_right"], "<video>\n<video>\nTwo videos?")
    results = lnv.generate([bad, q(clips["blue_up"])], batch_size=2)
    assert not results[0].ok and "PromptError" in results[0].error
    assert results[1].ok


def test_mixed_image_and_video(lnv: Engine, clips: dict[str, Path]) -> None:
    image = np.full((40, 56, 3), 200, dtype=np.uint8)
    result = lnv.generate([Request(question="Same colour?", videos=(str(clips["red_right"]),), images=(image,))])[0]
    assert result.ok, result.error
    assert result.prompt.count("<image>") == 1 and result.prompt.count("<video>") == 1
    assert result.prompt.index("<image>") < result.prompt.index("<video>")


def test_image_only_request(lnv: Engine) -> None:
    image = np.zeros((32, 32, 3), dtype=np.uint8)
    result = lnv.generate([Request(question="What is this?", images=(image,), generation=GREEDY)])[0]
    assert result.ok, result.error
    assert result.usage.visual_tokens > 0


def test_sampled_frames_reported(lnv: Engine, clips: dict[str, Path]) -> None:
    result = lnv.generate([q(clips["green_left_long"])])[0]
    assert result.frames == (tuple(int(i) for i in np.linspace(0, 39, 8, dtype=int)),)


def test_sampling_with_seed_is_reproducible(lnv: Engine, clips: dict[str, Path]) -> None:
    gen = GenerationSettings(max_new_tokens=8, temperature=1.5, top_p=0.95, seed=123)
    a = lnv.generate([q(clips["red_right"], generation=gen)])[0].text
    b = lnv.generate([q(clips["red_right"], generation=gen)])[0].text
    assert a == b


def test_stop_strings_cut_the_text() -> None:
    assert cut_at_stop("red. blue\nx", (".", "\n")) == "red"
    assert cut_at_stop("abc", ()) == "abc"


# ---------------------------------------------------------------- log-likelihood


def test_loglikelihood_of_the_greedy_answer_is_greedy(lnv: Engine, clips: dict[str, Path]) -> None:
    gen = lnv.generate([q(clips["red_right"], generation=GenerationSettings(max_new_tokens=3))])[0]
    assert gen.ok and gen.text
    ll = lnv.loglikelihood(
        [
            Request(
                question="What colour is the moving square?",
                videos=(str(clips["red_right"]),),
                continuation=" " + gen.text,
            )
        ]
    )[0]
    other = lnv.loglikelihood(
        [
            Request(
                question="What colour is the moving square?",
                videos=(str(clips["red_right"]),),
                continuation=" zebra crossing",
            )
        ]
    )[0]
    assert ll.ok and other.ok
    assert math.isfinite(ll.logprob) and ll.logprob < 0
    assert other.logprob < ll.logprob


def test_loglikelihood_error_is_per_request(lnv: Engine, broken_video: Path) -> None:
    res = lnv.loglikelihood([Request(question="x", videos=(str(broken_video),), continuation=" y")])[0]
    assert not res.ok and str(broken_video) in res.error


# ---------------------------------------------------------------- decoders


def test_decoders_give_identical_answers(tiny_llava_next_video: Path, clips: dict[str, Path]) -> None:
    answers = {}
    for decoder in ("decord", "pyav", "keyframe"):
        engine = load_engine(str(tiny_llava_next_video), decoder=decoder, num_frames=8, load=CPU)
        answers[decoder] = [r.text for r in engine.generate([q(c) for c in clips.values()], batch_size=3)]
    assert answers["decord"] == answers["pyav"] == answers["keyframe"]
