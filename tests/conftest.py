"""Shared, session-scoped fixtures: offline env, tiny checkpoints, synthetic clips.

One set of tiny checkpoints and clips per test session; tests that need a fresh plugin
manager build their own.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# Offline everywhere, before anything imports huggingface_hub / datasets.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A per-session VIDEOLMM_CACHE (clips materialised by tasks land here)."""
    root = tmp_path_factory.mktemp("videolmm-cache")
    os.environ["VIDEOLMM_CACHE"] = str(root)
    return root


@pytest.fixture(scope="session")
def tiny_llava_next_video_34b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny checkpoint in LLaVA-NeXT-Video-34B's layout (Yi token ids, 4,096 positions, 336-px CLIP)."""
    from videolmm.toy.tiny_34b import build_tiny_llava_next_video_34b

    return build_tiny_llava_next_video_34b(tmp_path_factory.mktemp("lnv34b") / "tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_llava_next_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random llava_next_video checkpoint (4 visual tokens per 32-px frame)."""
    from videolmm.toy.tiny import build_tiny_llava_next_video

    return build_tiny_llava_next_video(tmp_path_factory.mktemp("tiny-lnv") / "ckpt", seed=0)


@pytest.fixture(scope="session")
def tiny_video_llava(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random video_llava checkpoint (17 visual tokens per 32-px frame)."""
    from videolmm.toy.tiny import build_tiny_video_llava

    return build_tiny_video_llava(tmp_path_factory.mktemp("tiny-vl") / "ckpt", seed=0)


@pytest.fixture(scope="session")
def tiny_llava_video_qwen2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random llava_video_qwen2 checkpoint (SigLIP + Qwen2, pool after projector, grid newlines)."""
    from videolmm.toy.tiny_families import build_tiny_llava_video_qwen2

    return build_tiny_llava_video_qwen2(tmp_path_factory.mktemp("tiny-qwen2") / "ckpt", seed=0)


@pytest.fixture(scope="session")
def tiny_llava_hound(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random llava_hound checkpoint (Video-LLaVA layout, video CLS dropped)."""
    from videolmm.toy.tiny_families import build_tiny_llava_hound

    return build_tiny_llava_hound(tmp_path_factory.mktemp("tiny-hound") / "ckpt", seed=0)


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A few moving-square clips: red→right, blue→up (16 frames, 64 px)."""
    from videolmm.toy.synthetic import write_moving_square_video

    root = tmp_path_factory.mktemp("clips")
    return {
        "red_right": write_moving_square_video(root / "red_right.mp4", colour="red", direction="right", seed=1),
        "blue_up": write_moving_square_video(root / "blue_up.mp4", colour="blue", direction="up", seed=2),
        "green_left_long": write_moving_square_video(
            root / "green_left.mp4", colour="green", direction="left", seed=3, num_frames=40
        ),
    }


@pytest.fixture(scope="session")
def broken_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random bytes named .mp4."""
    path = tmp_path_factory.mktemp("broken") / "broken.mp4"
    path.write_bytes(os.urandom(4096))
    return path


@pytest.fixture(scope="session")
def trained_llava_next_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped trained llava_next_video checkpoint (learned colour and direction)."""
    from videolmm.toy.trained import materialize_trained

    return materialize_trained("llava_next_video", tmp_path_factory.mktemp("trained-lnv") / "ckpt")


@pytest.fixture(scope="session")
def trained_video_llava(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped trained video_llava checkpoint."""
    from videolmm.toy.trained import materialize_trained

    return materialize_trained("video_llava", tmp_path_factory.mktemp("trained-vl") / "ckpt")


# ----- the reliability report (docs/reliability.md) -------------------------------------------


@pytest.fixture
def reliability(request: pytest.FixtureRequest):
    """``reliability(section, case, path, expected, observed)`` adds a row to docs/reliability.md."""
    import reliability as report

    report.expect(request.node.nodeid)  # listed as unrecorded if it fails before recording

    def add(section: str, case: str, path: str, expected: str, observed: object) -> None:
        report.record(section, case, path, expected, str(observed), request.node.nodeid)

    return add


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    rep = yield
    import reliability as report

    if rep.when == "call" or (rep.when == "setup" and rep.outcome != "passed"):
        report.set_outcome(item.nodeid, rep.outcome)
    return rep


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    import reliability as report

    if not report.rows():
        return
    config = session.config
    addopts = list(config.getini("addopts"))
    default_marks = addopts[addopts.index("-m") + 1] if "-m" in addopts[:-1] else ""
    full = (
        config.args_source == pytest.Config.ArgsSource.TESTPATHS
        and not config.option.keyword
        and config.option.markexpr == default_marks
        and not getattr(config.option, "maxfail", 0)  # -x / --maxfail stop early
        and not getattr(config.option, "deselect", None)
        and not getattr(config.option, "lf", False)
    )  # only the whole default suite may replace docs/reliability.md
    target = config.rootpath / ("docs" if full else ".artifacts") / "reliability.md"
    report.write(target)
