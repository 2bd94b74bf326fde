"""The version ranges pyproject.toml declares are the ones this environment tests.

Every requirement of the core and of the ``eval``, ``serve`` and ``dev`` extras must be installed
at a version inside its declared range, so a test run is evidence for the ranges we ship.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
TESTED_EXTRAS = ("eval", "serve", "dev")


def _requirements() -> list[Requirement]:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    lines = list(project["dependencies"])
    for extra in TESTED_EXTRAS:
        lines += project["optional-dependencies"][extra]
    reqs = [Requirement(line) for line in lines]
    return [r for r in reqs if r.name != "videolmm" and (r.marker is None or r.marker.evaluate({"extra": ""}))]


@pytest.mark.parametrize("req", _requirements(), ids=str)
def test_installed_version_is_in_the_declared_range(req: Requirement) -> None:
    try:
        installed = version(req.name)
    except PackageNotFoundError:
        pytest.fail(f"{req.name} is declared ({req}) but not installed")
    assert req.specifier.contains(installed, prereleases=True), f"{req.name} {installed} is outside {req.specifier}"


def test_every_runtime_dependency_has_a_lower_bound() -> None:
    unbounded = [str(r) for r in _requirements() if not any(s.operator in (">=", "==", "~=") for s in r.specifier)]
    assert not unbounded, unbounded


# ----- the wheel a user installs ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``python -m build --wheel`` (what ``make dist`` runs) on a copy of the source tree."""
    import shutil
    import subprocess
    import sys

    root = PYPROJECT.parent
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (root / name).exists():
            shutil.copy(root / name, src / name)
    shutil.copytree(root / "videolmm", src / "videolmm", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (built,) = out.glob("videolmm-*.whl")
    return built


def _metadata(wheel: Path) -> tuple[set[str], Any]:
    import email
    import zipfile

    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        (meta,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        return names, email.message_from_bytes(zf.read(meta))


def test_the_wheel_carries_configs_tasks_assets_and_entry_points(wheel: Path) -> None:
    import zipfile

    import videolmm

    names, meta = _metadata(wheel)
    assert wheel.name.startswith(f"videolmm-{videolmm.__version__}-")
    assert meta["Version"] == videolmm.__version__
    for path in (
        "videolmm/serve/configs/tiny.yaml",
        "videolmm/serve/configs/video.yaml",
        "videolmm/serve/configs/grafana_dashboard.json",
        "videolmm/py.typed",
        "videolmm/tasks/synthetic/videolmm_synthetic.yaml",
    ):
        assert path in names, f"{path} missing from {wheel.name}"
    assert any(n.startswith("videolmm/toy/assets/") for n in names), "the trained tiny assets are not packaged"
    with zipfile.ZipFile(wheel) as zf:
        (ep,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        entry_points = zf.read(ep).decode()
        repo_tiny = (PYPROJECT.parent / "serve_configs" / "tiny.yaml").read_text()
        assert zf.read("videolmm/serve/configs/tiny.yaml").decode() == repo_tiny
    assert "videolmm = videolmm.cli:main" in entry_points
    assert "[lmms_eval.models]" in entry_points and "videolmm.eval.manifests:manifests" in entry_points
    assert "[lmms_eval.tasks]" in entry_points
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL"))
    assert {"Homepage", "Repository", "Issues", "Documentation"} <= set(urls)


def test_the_wheel_keeps_eval_only_pins_out_of_a_serve_install(wheel: Path) -> None:
    _, meta = _metadata(wheel)
    reqs = [Requirement(r) for r in meta.get_all("Requires-Dist")]

    def needed(extra: str) -> dict[str, Requirement]:
        env = {"extra": extra, "platform_machine": "x86_64"}
        return {r.name: r for r in reqs if r.marker is None or r.marker.evaluate(env)}

    base, serve, eval_ = needed(""), needed("serve"), needed("eval")
    assert base["av"].specifier.contains("16.0.0")  # no cap for serving
    assert str(base["av"].specifier) == ">=12"
    assert "decord" not in base and "decord" not in serve and "decord" in needed("decord")
    assert "lmms-eval" not in serve and "ray" in serve
    assert any(r.name == "av" and not r.specifier.contains("16.0.0") for r in reqs if r.marker is not None), (
        "the eval extra carries lmms-eval's av<16 cap"
    )
    assert "lmms-eval" in eval_


def test_a_serve_install_decodes_video_without_decord_or_lmms_eval(
    tmp_path: Path, clips: dict[str, Path], tiny_llava_next_video: Path
) -> None:
    """With decord and lmms-eval made unimportable, the Serve config loads and the default decoder decodes."""
    import subprocess
    import sys

    script = f"""
import sys
for name in ("decord", "lmms_eval"):
    sys.modules[name] = None  # ImportError on any import of them
from videolmm.serve.config import ServeArgs, load_serve_config
ServeArgs.model_validate(load_serve_config({str(PYPROJECT.parent / "serve_configs" / "tiny.yaml")!r}))
from videolmm.load import load_engine
from videolmm.types import Request
engine = load_engine({str(tiny_llava_next_video)!r}, num_frames=4, load_model=False)
item = engine.decode(Request(question="q", videos=({str(clips["red_right"])!r},)))
assert item.error is None, item.error
print(item.videos[0].decoder, item.videos[0].array.shape)
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[0] == "keyframe"
