"""The typed app config and the request mapping, without Ray: the shipped YAMLs validate, bad
configs fail naming the field, a request maps to the core request lmms-eval builds, and the media
deployment's defaults are the engine's."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from serve_helpers import REPO

from videolmm.load import load_engine
from videolmm.models.families.base import LoadOptions
from videolmm.plugin.manager import get_plugin_manager
from videolmm.serve.app import build_app
from videolmm.serve.config import ModelConfig, ServeArgs, load_serve_config
from videolmm.serve.decode import MediaPipeline, model_media_settings
from videolmm.serve.errors import ApiError, ServeError, client_error_types, from_core_error
from videolmm.serve.openai import to_job
from videolmm.serve.protocol import ChatCompletionRequest

ONE_MODEL = {"models": [{"model_id": "m", "pretrained": "org/name"}]}


def test_build_app_is_a_typed_ray_builder() -> None:
    # Ray validates a YAML `args:` block into the builder's annotated pydantic model.
    import videolmm.serve

    (param,) = inspect.signature(build_app).parameters.values()
    assert param.annotation is ServeArgs
    assert videolmm.serve.build_app is build_app  # import_path: videolmm.serve:build_app


@pytest.mark.parametrize("name", ["tiny.yaml", "video.yaml"])
def test_shipped_serve_configs_validate(name: str) -> None:
    args = ServeArgs.model_validate(load_serve_config(REPO / "serve_configs" / name))
    model = args.model_deployment.ray_options()
    media = args.media_deployment.ray_options()
    assert model["max_queued_requests"] >= 1 and model["backpressure_config"]["retry_after_s"] >= 0
    assert media["ray_actor_options"]["num_gpus"] == 0  # decoding runs on CPU
    if name == "video.yaml":
        assert model["ray_actor_options"]["num_gpus"] == 1
        assert model["autoscaling_config"]["max_replicas"] > model["autoscaling_config"]["min_replicas"]
        assert args.models[0].pretrained == "llava-hf/LLaVA-NeXT-Video-7B-hf"
        assert args.security.api_key_env == "VIDEOLMM_API_KEY"
    else:
        assert sum(o["ray_actor_options"]["num_cpus"] for o in (model, media)) < 2  # fits 2 cores + ingress
        assert media["autoscaling_config"]["upscale_delay_s"] <= 5
        assert all(m.engine.device == "cpu" for m in args.models)


def test_relative_paths_resolve_against_base_dir(tmp_path: Path) -> None:
    (tmp_path / "ckpt").mkdir()
    args = ServeArgs.model_validate(
        {
            "models": [
                {"model_id": "local", "pretrained": "ckpt"},
                {"model_id": "hub", "pretrained": "llava-hf/LLaVA-NeXT-Video-7B-hf"},
            ],
            "security": {"media_roots": ["media"]},
            "base_dir": str(tmp_path),
        }
    ).resolved()
    assert args.models[0].pretrained == str(tmp_path / "ckpt")
    assert args.models[1].pretrained == "llava-hf/LLaVA-NeXT-Video-7B-hf"  # a hub id stays one
    assert args.security.media_roots == (str(tmp_path.resolve() / "media"),)


def test_deployment_blocks_override_only_what_they_set() -> None:
    change = {"model_deployment": {"ray_actor_options": {"num_gpus": 1}}, "media_deployment": {"num_replicas": 3}}
    args = ServeArgs.model_validate({**ONE_MODEL, **change})
    model = args.model_deployment.ray_options()
    assert model["ray_actor_options"] == {"num_cpus": 1.0, "num_gpus": 1.0}  # num_cpus default kept
    assert "autoscaling_config" in model and "num_replicas" not in model
    media = args.media_deployment.ray_options()
    assert media["num_replicas"] == 3 and "autoscaling_config" not in media


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"models": []}, "at least 1"),
        ({"models": [{"model_id": "a", "pretrained": "x"}, {"model_id": "a", "pretrained": "y"}]}, "duplicate"),
        ({"models": [{"model_id": "bad id!", "pretrained": "x"}]}, "model_id"),
        ({"models": [{"model_id": "a", "pretrained": "x", "frames": 8}]}, "frames"),  # typo: extra field
        ({"limits": {"max_frames": 0}}, "max_frames"),
        ({"batching": {"max_batch_size": 32}}, "batches could never fill"),
        ({"model_deployment": {"autoscaling_config": {"target_ongoing_requests": 16}}}, "must be below"),
        ({"model_deployment": {"autoscaling_config": {"min_replicas": 3, "max_replicas": 2}}}, "min_replicas"),
        ({"media_deployment": {"num_replicas": 2, "autoscaling_config": {}}}, "exactly one"),
        ({"security": {"api_key": "k", "api_key_env": "K"}}, "not both"),
        ({"security": {"remote": {"allowed_schemes": ["ftp"]}}}, "allowed_schemes"),
        ({"models": [{"model_id": "a", "pretrained": "x", "num_frames": 500}]}, "max_frames"),
    ],
)
def test_bad_configs_fail_naming_the_field(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ServeArgs.model_validate({**ONE_MODEL, **change})


def test_api_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    args = ServeArgs.model_validate({**ONE_MODEL, "security": {"api_key_env": "VLMM_TEST_KEY"}})
    monkeypatch.delenv("VLMM_TEST_KEY", raising=False)
    with pytest.raises(ValueError, match="VLMM_TEST_KEY"):
        args.api_key_value()
    monkeypatch.setenv("VLMM_TEST_KEY", "abc")
    assert args.api_key_value().get_secret_value() == "abc"


# ----------------------------------------------------------------------------------- media defaults


@pytest.mark.parametrize(
    "overrides",
    [{}, {"num_frames": 4}, {"sampler": "fps", "fps": 2.0, "force_sample": True}, {"decoder": "pyav"}],
)
def test_media_deployment_defaults_equal_the_engines(tiny_llava_next_video: Path, overrides: dict[str, Any]) -> None:
    """The media replica computes settings without loading the model; they must match the engine's."""
    model = ModelConfig(model_id="m", pretrained=str(tiny_llava_next_video), device="cpu", **overrides)
    ours = model_media_settings(model, pm=get_plugin_manager())
    engine = load_engine(model.engine, load_model=False)
    assert ours == engine.settings.media


def test_default_frames_above_the_limit_fail_at_startup(tiny_llava_next_video: Path) -> None:
    args = ServeArgs.model_validate(
        {"models": [{"model_id": "m", "pretrained": str(tiny_llava_next_video)}], "limits": {"max_frames": 16}}
    )
    with pytest.raises(ValueError, match="samples 32 frames by default"):
        MediaPipeline(args).check_defaults()


# ----------------------------------------------------------------------------------- request mapping

MODEL = ModelConfig(model_id="m", pretrained="x", default_max_tokens=256)
LIMITS = ServeArgs.model_validate(ONE_MODEL).limits


def _job(**body: Any) -> Any:
    req = ChatCompletionRequest.model_validate({"model": "m", **body})
    return to_job(req, request_id="rid-1", model=MODEL, limits=LIMITS)


def test_request_maps_to_the_core_request_lmms_eval_builds() -> None:
    job = _job(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "video_url", "video_url": {"url": "file:///v.mp4"}},
                    {"type": "text", "text": "What colour?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}},
                    {"type": "text", "text": "One word."},
                ],
            }
        ],
        max_tokens=8,
        stop="\n",
        media_io_kwargs={"video": {"num_frames": 4, "fps": 2}},
    )
    assert job.question == "What colour?\nOne word."
    assert [(m.kind, m.param) for m in job.media] == [
        ("video", "messages[0].content[0].video_url.url"),
        ("image", "messages[0].content[2].image_url.url"),
    ]
    gen = job.generation
    assert (gen.max_new_tokens, gen.temperature, gen.stop, gen.do_sample) == (8, 0.0, ("\n",), False)
    assert (job.num_frames, job.fps, job.request_id) == (4, 2.0, "rid-1")


def test_generation_defaults_are_greedy_and_capped() -> None:
    job = _job(messages=[{"role": "user", "content": "hi"}])
    assert job.generation.max_new_tokens == min(256, LIMITS.max_tokens) and not job.generation.do_sample
    sampled = _job(messages=[{"role": "user", "content": "hi"}], temperature=0.7, top_p=0.9, seed=3)
    assert (sampled.generation.temperature, sampled.generation.top_p, sampled.generation.seed) == (0.7, 0.9, 3)
    assert _job(messages=[{"role": "user", "content": "hi"}], max_completion_tokens=5).generation.max_new_tokens == 5


def test_system_messages_replace_the_system_prompt_for_that_request() -> None:
    assert _job(messages=[{"role": "user", "content": "hi"}]).system_prompt is None
    job = _job(
        messages=[
            {"role": "system", "content": "You are a judge."},
            {
                "role": "developer",
                "content": [{"type": "text", "text": "Answer"}, {"type": "text", "text": "briefly."}],
            },
            {
                "role": "user",
                "content": [
                    {"type": "video_url", "video_url": {"url": "file:///v.mp4"}},
                    {"type": "text", "text": "Q"},
                ],
            },
        ]
    )
    assert job.system_prompt == "You are a judge.\nAnswer\nbriefly."
    assert (job.question, [m.param for m in job.media]) == ("Q", ["messages[2].content[0].video_url.url"])
    assert _job(messages=[{"role": "system", "content": ""}, {"role": "user", "content": "hi"}]).system_prompt == ""


@pytest.mark.parametrize(
    ("messages", "reason"),
    [
        ([{"role": "user", "content": "y"}, {"role": "system", "content": "x"}], "after the conversation began"),
        (
            [
                {
                    "role": "system",
                    "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}],
                },
                {"role": "user", "content": "y"},
            ],
            "text only",
        ),
        ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], "ends with an assistant message"),
        ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], "two user messages in a row"),
        ([{"role": "user", "content": None}], "no content"),
    ],
)
def test_unsupported_conversations_are_refused(messages: list[dict[str, Any]], reason: str) -> None:
    with pytest.raises(ServeError, match=reason) as excinfo:
        _job(messages=messages)
    assert excinfo.value.error.status == 400


@pytest.mark.parametrize(
    "body",
    [{"n": 3}, {"logprobs": True}, {"tools": [{"type": "function"}]}, {"response_format": {"type": "json_object"}}],
)
def test_unsupported_options_fail_validation(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="not supported|only n=1"):
        ChatCompletionRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": "x"}], **body})


def test_error_body_is_openais_error_envelope() -> None:
    body = ApiError(404, "no such model", code="model_not_found", param="model").body()
    error = {"message": "no such model", "type": "invalid_request_error", "param": "model", "code": "model_not_found"}
    assert body == {"error": error}
    assert list(body["error"]) == ["message", "type", "param", "code"]
    assert ApiError(500, "boom", type="server_error").body()["error"] == {
        "message": "boom",
        "type": "server_error",
        "param": None,
        "code": None,
    }


def test_core_errors_map_to_client_or_server_status() -> None:
    assert {"MediaError", "MediaNotFound", "MediaUnreadable", "NoVideoStream", "PromptError"} <= client_error_types()
    assert from_core_error("MediaUnreadable: <bytes:3>: unreadable: junk").status == 400
    assert from_core_error("PromptError: prompt has 2 <video> placeholder(s)").status == 400
    assert from_core_error("TokenCountMismatch: inserted 3 video tokens").status == 500
    assert from_core_error("ModelLoadError: m: OSError: no file").status == 500


def test_default_load_options_are_the_cores() -> None:
    assert MODEL.engine.load_options() == LoadOptions()


def test_import_boundaries() -> None:
    """The core never imports Ray; the serve package and the media path import neither Ray nor torch."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import videolmm.models.engine, videolmm.plugin.manager\n"
        "assert 'ray' not in sys.modules, 'core imported ray'\n"
        "import videolmm.serve, videolmm.serve.app, videolmm.serve.config, videolmm.serve.decode\n"
        "import videolmm.serve.openai, videolmm.serve.security\n"
        "bad = sorted({'ray', 'torch', 'transformers'} & set(sys.modules))\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


# Layers of videolmm.serve, top to bottom: a module may import only modules of a lower layer.
SERVE_LAYERS = (
    ("__init__",),
    ("app",),
    ("ingress", "ray_options"),
    ("deployments",),
    ("decode", "openai", "guards", "playground", "routing"),
    ("jobs", "config"),
    ("security", "deployment_config"),
    ("errors", "metrics", "context"),
    ("protocol",),
)


def test_serve_imports_point_down_the_layers() -> None:
    """ingress → deployments → (decode, openai, jobs) → config → leaves; lazy imports count too."""
    import ast

    layer = {name: i for i, names in enumerate(SERVE_LAYERS) for name in names}
    serve_dir = REPO / "videolmm" / "serve"
    assert {p.stem for p in serve_dir.glob("*.py")} == set(layer), "a new serve module needs a layer here"
    upward = []
    for path in serve_dir.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for target in targets:
                if target.startswith("videolmm.serve.") and target.split(".")[2] in layer:
                    dep = target.split(".")[2]
                    if dep != path.stem and layer[dep] <= layer[path.stem]:
                        upward.append(f"{path.stem} -> {dep}")
    assert not upward, upward


def test_serve_modules_stay_small() -> None:
    sizes = {p.name: len(p.read_text().splitlines()) for p in (REPO / "videolmm" / "serve").glob("*.py")}
    assert max(sizes.values()) <= 500, sizes


def test_media_stage_reads_through_the_models_frame_cache(
    tiny_llava_next_video: Path, clips: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``frame_cache:`` in a model entry: two media replicas (two pipelines) share one directory,
    so the second decodes nothing and returns the same frames."""
    import asyncio

    monkeypatch.delenv("VIDEOLMM_FRAME_CACHE", raising=False)

    import numpy as np

    from videolmm.serve.jobs import ChatJob, MediaRef

    clip = next(iter(clips.values()))
    args = ServeArgs.model_validate(
        {
            "models": [
                {"model_id": "m", "pretrained": str(tiny_llava_next_video), "num_frames": 4},
                {
                    "model_id": "c",
                    "pretrained": str(tiny_llava_next_video),
                    "num_frames": 4,
                    "frame_cache": str(tmp_path / "frames"),
                },
            ],
            "security": {"media_roots": [str(clip.parent)]},
        }
    )
    job = ChatJob(request_id="r", model_id="c", question="q", media=(MediaRef("video", clip.as_uri(), "p"),))
    first, second = MediaPipeline(args), MediaPipeline(args)
    a = asyncio.run(first.run(job))
    b = asyncio.run(second.run(job))
    assert np.array_equal(a.videos[0].array, b.videos[0].array) and a.videos[0].indices == b.videos[0].indices
    stats = (first.frame_loader("c").cache.stats, second.frame_loader("c").cache.stats)
    assert (stats[0].misses, stats[0].hits, stats[1].misses, stats[1].hits) == (1, 0, 0, 1)
    assert first.frame_loader("m").cache is None  # no frame_cache, no VIDEOLMM_FRAME_CACHE: decodes every time
