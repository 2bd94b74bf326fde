"""One EngineSpec, three doors: every field reaches the engine from lmms-eval, Serve and the CLI.

A new field without a sample value below fails ``test_every_field_has_a_sample``, so no option
can be added to one door and forgotten in another.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from videolmm.errors import ConfigError
from videolmm.models.spec import ALIASES, EngineSpec, resolve, spec_fields

#: A non-default value for every field (family options: one of LLaVA-NeXT-Video's).
SAMPLES: dict[str, Any] = {
    "pretrained": "some/checkpoint",
    "family": "video_llava",
    "template": "llava_v1",
    "system_prompt": "Answer in one word.",
    "decoder": "pyav",
    "sampler": "fps",
    "num_frames": 4,
    "fps": 2.5,
    "force_sample": True,
    "reverse_frames": True,
    "frame_cache": "/tmp/videolmm-frames",
    "preset": "lmms_eval_readme",
    "family_options": {"spatial_pool_stride": 4},
    "device": "cpu",
    "dtype": "bfloat16",
    "device_map": "auto",
    "attn_implementation": "eager",
    "quantization": "8bit",
    "revision": "refs/pr/1",
    "trust_remote_code": True,
    "scheduler": "static",
}
FIELDS = [name for name, *_ in spec_fields() if name != "pretrained"]


def test_every_field_has_a_sample() -> None:
    assert set(SAMPLES) == {name for name, *_ in spec_fields()}
    defaults = EngineSpec(pretrained="x")
    for name in FIELDS:
        assert getattr(defaults, name) != SAMPLES[name], name


def _model_args(name: str) -> str:
    if name == "family_options":
        return "spatial_pool_stride=4"
    value = SAMPLES[name]
    return f"{name}={str(value).lower() if isinstance(value, bool) else value}"


@pytest.mark.parametrize("name", FIELDS)
def test_lmms_eval_door(name: str) -> None:
    """``--model_args`` as lmms-eval parses them, into the model class's spec."""
    from lmms_eval.utils import simple_parse_args_string

    from videolmm.eval.model import VideoLMM

    args = simple_parse_args_string(f"pretrained=some/checkpoint,{_model_args(name)}")
    spec = VideoLMM.spec_from_model_args(**args)
    assert getattr(spec, name) == SAMPLES[name]
    assert dataclasses.replace(spec, **{name: getattr(EngineSpec(pretrained="x"), name)}) == EngineSpec(
        pretrained="some/checkpoint"
    )


@pytest.mark.parametrize("name", FIELDS)
def test_cli_door(name: str) -> None:
    """The flag generated for the field, and the generic ``--option KEY=VALUE``."""
    from videolmm.cli import build_parser, spec_from_args

    parser = build_parser()
    value = SAMPLES[name]
    if name == "family_options":
        flag_args = ["--spatial-pool-stride", "4"]
    elif isinstance(value, bool):
        flag_args = [f"--{name.replace('_', '-')}"]
    else:
        flag_args = [f"--{name.replace('_', '-')}", str(value)]
    for argv in (flag_args, ["--option", _model_args(name)]):
        spec = spec_from_args(parser.parse_args(["inspect", "some/checkpoint", *argv]))
        assert getattr(spec, name) == value, argv


@pytest.mark.parametrize("name", FIELDS)
def test_serve_door(name: str) -> None:
    """A model entry of a serve config (validated by pydantic) carries the same spec."""
    from videolmm.serve.config import ModelConfig

    config = ModelConfig.model_validate({"model_id": "m", "pretrained": "some/checkpoint", name: SAMPLES[name]})
    assert getattr(config.engine, name) == SAMPLES[name]


def test_aliases_are_the_seed_spellings() -> None:
    spec = EngineSpec.from_options(
        {
            "pretrained": "x",
            "max_frames_num": "16",
            "conv_template": "vicuna_v1",
            "video_decode_backend": "decord",
            "load_in_4bit": "True",
            "torch_dtype": "float16",
            "mm_spatial_pool_stride": 4,
        }
    )
    assert spec.family_options == {"spatial_pool_stride": 4}
    assert (spec.num_frames, spec.template, spec.decoder, spec.quantization, spec.dtype) == (
        16,
        "vicuna_v1",
        "decord",
        "4bit",
        "float16",
    )
    assert set(ALIASES.values()) <= {name for name, *_ in spec_fields()}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"num_frames": "0"}, "num_frames=0"),
        ({"num_frames": "many"}, "num_frames='many'"),
        ({"fps": "nan"}, "fps=nan"),
        ({"dtype": "float8"}, "dtype='float8'"),
        ({"force_sample": "perhaps"}, "force_sample='perhaps'"),
        ({"num_frames": 8, "max_frames_num": 16}, "already set"),
    ],
)
def test_bad_values_name_the_field(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        EngineSpec.from_options({"pretrained": "x", **options})


def test_resolver_order_explicit_then_checkpoint_then_family(tiny_llava_next_video: Path, tmp_path: Path) -> None:
    """An explicit value wins over the checkpoint's videolmm.json, which wins over the family's seed default."""
    import json
    import shutil

    from videolmm.load import host

    registry, hooks = host()
    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_llava_next_video, ckpt)
    (ckpt / "videolmm.json").write_text(json.dumps({"num_frames": 6, "decoder": "pyav"}))
    seed = resolve(EngineSpec(pretrained=str(tiny_llava_next_video)), registry, hooks)
    own = resolve(EngineSpec(pretrained=str(ckpt)), registry, hooks)
    explicit = resolve(EngineSpec(pretrained=str(ckpt), num_frames=3), registry, hooks)
    assert seed.family.name == own.family.name == "llava_next_video"
    assert (seed.media.sampling.num_frames, seed.media.decoder) == (32, "keyframe")
    assert (own.media.sampling.num_frames, own.media.decoder) == (6, "pyav")
    assert (explicit.media.sampling.num_frames, explicit.media.decoder) == (3, "pyav")
    with pytest.raises(ConfigError, match="no option"):
        resolve(EngineSpec(pretrained=str(ckpt), family_options={"pool": 3}), registry, hooks)
