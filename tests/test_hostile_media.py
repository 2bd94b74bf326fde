"""Hostile media (issue 8) through the core and through lmms-eval; the served API is in tests/serve.

The corpus (``tests/hostile_media.py``) is built once per module. Every case goes through every
registered container decoder (directories through ``frames``, as the engine routes them) with
the uniform sampler, and through one real lmms-eval CLI run whose task mixes every case with
valid clips. Each case × path is a row of docs/reliability.md; *Observed* is the exception or
the lmms-eval sample response.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hostile_media import BOMB_FPS, BOMB_FRAMES, CASES, HostileCase, build_corpus
from test_lmms_eval import response, run_cli

from videolmm.errors import MediaError
from videolmm.media.base import load_frames, resolve_decoder_name
from videolmm.media.sampling import uniform_sampler
from videolmm.plugin.manager import get_registry
from videolmm.types import SEQUENCE_DECODERS, Frames, SamplingSpec

SECTION = "Hostile media"
NUM_FRAMES = 8
#: Every registered container decoder that is importable here (decord, pyav, keyframe, torchcodec...).
DECODERS = get_registry().decoders
#: ffmpeg_cli is LLaVA-Hound's extraction route (every frame at 2 fps to JPEG, then sampled), not a seekable
#: container decoder: its bad inputs are tests/test_hound_pixels.py::test_bad_inputs_are_named.
EXTRACTION_ROUTES = {"ffmpeg_cli"}
CONTAINER_DECODERS = sorted(
    n for n, d in DECODERS.items() if n not in SEQUENCE_DECODERS | EXTRACTION_ROUTES and d.available()
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, HostileCase]:
    root = tmp_path_factory.mktemp("hostile")
    cases = build_corpus(root / "media", outside=root / "outside")
    assert list(cases) == CASES
    return cases


def expected_text(case: HostileCase) -> str:
    """The Expected column: the outcome class and the reason."""
    if case.outcome == "error":
        return "typed MediaError naming the input: " + " / ".join(repr(r) for r in case.reasons)
    if case.outcome == "escape":
        return "decoded from the link target: the core has no media root (roots are the API's)"
    return "partial result: " + case.reasons[0]


def shorten(case: HostileCase, text: str) -> str:
    """Observed text with the corpus directory dropped from paths (the report stays readable)."""
    return text.replace(str(case.path.parent) + "/", "")


def check_error(case: HostileCase, exc: BaseException) -> str:
    """Assert a typed error naming the source and one of the case's reasons; return it as text."""
    assert isinstance(exc, MediaError), f"{case.name}: untyped {type(exc).__name__}: {exc}"
    assert exc.source == str(case.path)
    assert str(case.path) in str(exc)
    assert any(r in str(exc) for r in case.reasons), f"{case.name}: {exc}"
    return shorten(case, f"{type(exc).__name__}: {exc.kind}: {exc.reason}")


def check_partial(case: HostileCase, frames: Frames, reference: Frames | None) -> str:
    """Assert the documented partial result of a case; return what was observed."""
    shape = tuple(frames.array.shape)
    if case.name == "one_frame":
        assert frames.num_source_frames == 1 and frames.indices == (0,) * NUM_FRAMES
        same = bool((frames.array == frames.array[0]).all())
        assert shape == (NUM_FRAMES, 64, 64, 3) and same
        return f"{shape}, indices {list(frames.indices)}, all frames identical: {same}"
    if case.name == "variable_frame_rate":
        assert frames.num_source_frames == 16 and shape == (NUM_FRAMES, 64, 64, 3)
        assert frames.fps == pytest.approx(16 / 1.075, rel=1e-3)  # 16 frames over 1.075 s: the average rate
        assert frames.timestamps == tuple(i / frames.fps for i in frames.indices)
        return f"{shape}, fps {frames.fps:.3f} (the average), timestamps i/fps (not the real gaps)"
    if case.name == "rotated":
        assert shape == (NUM_FRAMES, 64, 32, 3)  # stored 64 wide × 32 high, shown 90° turned
        same = "n/a (this is decord)" if reference is None else np.array_equal(frames.array, reference.array)
        assert same is not False
        return f"{shape}: {shape[1]} high x {shape[2]} wide, stored 64 wide x 32 high; equal to decord: {same}"
    if case.name == "hours_claimed":
        assert frames.num_source_frames == 8 and shape == (NUM_FRAMES, 64, 64, 3)
        assert frames.fps == pytest.approx(1 / 1350) and frames.duration == pytest.approx(3 * 3600)
        return f"{shape}, fps {frames.fps:.6f}, duration {frames.duration:.0f} s: 3 hours at 1/1350 fps"
    if case.name == "decode_bomb":
        assert (frames.num_source_frames, frames.fps, shape) == (BOMB_FRAMES, BOMB_FPS, (NUM_FRAMES, 32, 32, 3))
        return (
            f"{shape} from {frames.num_source_frames} frames at {frames.fps:g} fps (no limits in a bare load_frames)"
        )
    if case.name == "symlink_outside":
        assert shape == (NUM_FRAMES, 64, 64, 3) and frames.source == str(case.path)
        return f"{shape} decoded from the link target"
    raise AssertionError(f"no partial-result check for {case.name}")


def decode(case: HostileCase, decoder: str) -> Frames:
    return load_frames(
        str(case.path),
        decoder=DECODERS[decoder],
        sampler=uniform_sampler,
        spec=SamplingSpec(num_frames=NUM_FRAMES),
        sampler_name="uniform",
    )


def _routes() -> list[tuple[str, str]]:
    """(case, decoder): container cases × container decoders; directories × ``frames``."""
    directories = {"frames_dir_non_image", "frames_dir_fake_png"}
    out = []
    for name in CASES:
        for decoder in ["frames"] if name in directories else CONTAINER_DECODERS:
            out.append((name, decoder))
    return out


@pytest.mark.parametrize(("name", "decoder"), _routes(), ids=[f"{c}-{d}" for c, d in _routes()])
def test_core(corpus: dict[str, HostileCase], name: str, decoder: str, reliability) -> None:
    case = corpus[name]
    assert resolve_decoder_name(str(case.path), decoder) == decoder
    if case.outcome == "error":
        with pytest.raises(Exception) as err:
            decode(case, decoder)
        observed = check_error(case, err.value)
    else:
        reference = decode(case, "decord") if decoder != "decord" and "decord" in CONTAINER_DECODERS else None
        observed = check_partial(case, decode(case, decoder), reference)
    reliability(SECTION, f"{name} ({decoder})", "core", expected_text(case), observed)


SAMPLER_CASES = {
    ("one_frame", "uniform"): "(0, 0, 0, 0, 0, 0, 0, 0)",
    ("one_frame", "fps"): "(0,)",
    ("one_frame", "hound"): "NoFrames",  # ffmpeg's fps=2 filter extracts nothing from 1/8 s, as in the seed
    ("hours_claimed", "uniform"): "(0, 1, 2, 3, 4, 5, 6, 7)",
    ("hours_claimed", "fps"): "(0, 1, 2, 3, 4, 5, 6, 7)",
    ("hours_claimed", "hound"): "(0, 1, 2, 3, 4, 5, 6, 7)",
}


@pytest.mark.parametrize(("name", "sampler"), list(SAMPLER_CASES), ids=[f"{c}-{s}" for c, s in SAMPLER_CASES])
def test_core_samplers(corpus: dict[str, HostileCase], name: str, sampler: str, reliability) -> None:
    """The seeds' three samplers on the partial cases: a selection, or a typed error."""
    from videolmm.media.sampling import BUILTIN_SAMPLERS

    case, want = corpus[name], SAMPLER_CASES[(name, sampler)]
    decoder = DECODERS["pyav"]
    spec = SamplingSpec(num_frames=NUM_FRAMES, fps=2.0 if sampler == "hound" else None)
    try:
        frames = load_frames(str(case.path), decoder=decoder, sampler=BUILTIN_SAMPLERS[sampler], spec=spec)
        observed = f"indices {frames.indices}"
    except MediaError as exc:
        assert str(case.path) in str(exc)
        observed = shorten(case, f"{type(exc).__name__}: {exc.reason}")
    assert want in observed
    reliability(SECTION, f"{name} ({sampler} sampler)", "core", want, observed)


@pytest.mark.parametrize("fps", [1 / 1350, 1e-9])
def test_hound_sampler_is_bounded_by_the_frames_it_keeps(fps: float) -> None:
    """A header claiming hours (or centuries) costs O(F): only the kept slots are computed."""
    from videolmm.media.sampling import ffmpeg_fps_output_count, hound_sampler
    from videolmm.types import VideoInfo

    info = VideoInfo(source="claims.mp4", num_frames=8, fps=fps, width=64, height=64)
    assert ffmpeg_fps_output_count(8, fps, 2) >= 21600  # what a materialised extraction would hold
    assert hound_sampler(info, SamplingSpec(num_frames=8, fps=2.0)).indices == tuple(range(8))


def test_core_refuses_huge_frames_from_bytes(corpus: dict[str, HostileCase]) -> None:
    """The pixel limit applies to in-memory containers (the API's data URLs) as well."""
    data = corpus["huge_resolution"].path.read_bytes()
    for decoder in CONTAINER_DECODERS:
        with pytest.raises(MediaError, match=r"<bytes:\d+>: too large: .*16000x16000"):
            DECODERS[decoder].open(data)


# ----- lmms-eval --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hostile_run(corpus: dict[str, HostileCase], trained_llava_next_video: Path, cache_root: Path, tmp_path_factory):
    """One lmms-eval CLI run of the trained tiny checkpoint: 4 valid demo docs, then one doc per hostile case."""
    import videolmm.tasks

    base = Path(videolmm.tasks.__file__).parent / "synthetic" / "videolmm_demo.yaml"
    valid = [json.loads(line) for line in (base.parent / "demo.jsonl").read_text().splitlines()[:4]]
    hostile = [
        {**valid[0], "id": f"hostile-{name}", "video": str(case.path), "kind": "colour", "answer": "red"}
        for name, case in corpus.items()
    ]
    task_dir = tmp_path_factory.mktemp("hostile-task")
    (task_dir / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in valid + hostile))
    (task_dir / "hostile.yaml").write_text(
        f"include: {base}\ntask: videolmm_hostile\ndataset_kwargs:\n  data_files:\n    test: docs.jsonl\n"
    )
    results, samples, proc = run_cli(
        ["--model", "videolmm", "--model_args", f"pretrained={trained_llava_next_video},device=cpu",
         "--tasks", "videolmm_hostile", "--include_path", str(task_dir), "--batch_size", "4"],
        task_dir / "out",
    )  # fmt: skip
    return results, samples["videolmm_hostile"], len(valid), proc


def test_lmms_eval_run_completes_and_scores_the_valid_docs(hostile_run, corpus) -> None:
    results, samples, n_valid, _ = hostile_run
    assert len(samples) == n_valid + len(corpus)
    assert results["n-samples"]["videolmm_hostile"]["effective"] == n_valid + len(corpus)
    assert 0.0 <= results["results"]["videolmm_hostile"]["exact_match,none"] <= 1.0
    by_id = {s["doc_id"]: s for s in samples}
    for doc_id in range(n_valid):
        assert not response(by_id[doc_id]).startswith("[videolmm error]"), response(by_id[doc_id])
    # the trained checkpoint answers the valid docs (it scores >= 0.95 on its held-out split)
    assert sum(by_id[doc_id]["exact_match"] for doc_id in range(n_valid)) >= n_valid - 1


@pytest.mark.parametrize("name", CASES)
def test_lmms_eval(hostile_run, corpus: dict[str, HostileCase], name: str, reliability) -> None:
    from videolmm.eval.markers import ERROR_PREFIX

    _, samples, n_valid, _ = hostile_run
    case = corpus[name]
    sample = next(s for s in samples if s["doc_id"] == n_valid + CASES.index(name))  # docs in corpus order
    assert sample["target"] == "red"
    text = response(sample)
    if case.outcome == "error":
        assert text.startswith(ERROR_PREFIX), text
        assert str(case.path) in text and any(r in text for r in case.reasons), text
        assert "exact_match" in sample and sample["exact_match"] == 0.0  # scored as wrong, not dropped
    else:
        assert not text.startswith(ERROR_PREFIX), text
    expected = expected_text(case) if case.outcome == "error" else "answered; " + expected_text(case)
    observed = shorten(case, f"response {text!r}; run completed, valid docs scored")
    reliability(SECTION, name, "lmms-eval", expected, observed)
