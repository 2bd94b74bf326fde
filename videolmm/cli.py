"""``videolmm`` command line: tiny checkpoints, inspection, one-off generation, plugins.

    videolmm tiny --family llava_next_video --out ckpt/        # build a tiny checkpoint offline
    videolmm tiny --family llava_next_video --trained --out c/ # copy the shipped trained one
    videolmm train --family llava_next_video --out ckpt/       # retrain it on synthetic clips
    videolmm inspect ckpt/ --video clip.mp4 --frames 8         # effective settings as JSON
    videolmm inspect ckpt/ --video clip.mp4 --contact-sheet f.png  # draw the frames the model sees
    videolmm generate ckpt/ --video clip.mp4 --question "..."  # answer one question
    videolmm plugins                                            # registered components
    videolmm config video > my.yaml                             # a shipped Serve config
    videolmm convert --source llava_video_qwen2 --input ORIG --output DIR   # original weights -> loadable

Flags mirror the seeds' video demo script; their original spellings are accepted as aliases
(``--for_get_frames_num``, ``--conv-mode``, ``--mm_spatial_pool_stride``, ...).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

#: Flags kept from earlier releases and the seeds' demo scripts for two family options.
_FAMILY_OPTION_FLAGS = {
    "spatial_pool_stride": ("--spatial-pool-stride", "--mm_spatial_pool_stride", int),
    "spatial_pool_mode": ("--spatial-pool-mode", "--mm_spatial_pool_mode", str),
}


def _add_engine_args(p: argparse.ArgumentParser) -> None:
    """One flag per :class:`~videolmm.models.spec.EngineSpec` field, plus ``--option KEY=VALUE``."""
    from dataclasses import MISSING

    from videolmm.models.spec import spec_fields

    g = p.add_argument_group("engine options (every EngineSpec field; defaults are the seed's)")
    for name, kind, default, meta in spec_fields():
        if name == "pretrained":
            p.add_argument("pretrained", help=meta["help"])
            continue
        if name == "family_options":
            continue  # --option KEY=VALUE and the two shortcuts below
        flags = (f"--{name.replace('_', '-')}", *meta["flags"])
        shown = "" if default in (None, MISSING) else f" (default: {default})"
        if "bool" in str(kind):
            g.add_argument(*flags, dest=name, action="store_true", default=None, help=meta["help"] + shown)
            continue
        convert = int if "int" in str(kind) else float if "float" in str(kind) else str
        g.add_argument(
            *flags, dest=name, type=convert, default=None, choices=meta["choices"] or None, help=meta["help"] + shown
        )
    for name, (flag, seed_flag, convert) in _FAMILY_OPTION_FLAGS.items():
        g.add_argument(
            flag, seed_flag, dest=name, type=convert, default=None, help=f"family option {name} (LLaVA-NeXT-Video)"
        )
    g.add_argument("--load-4bit", "--load_4bit", dest="load_in_4bit", action="store_true", help="quantization=4bit")
    g.add_argument("--load-8bit", "--load_8bit", dest="load_in_8bit", action="store_true", help="quantization=8bit")
    g.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any engine field or family option by name, as in lmms-eval's --model_args (repeatable)",
    )


def spec_from_args(args: argparse.Namespace) -> Any:
    """The :class:`EngineSpec` the parsed engine flags describe (``--option`` values last)."""
    from videolmm.errors import ConfigError
    from videolmm.models.spec import EngineSpec, parse_scalar, spec_fields

    options: dict[str, Any] = {}
    for name, *_ in spec_fields():
        value = getattr(args, name, None)
        if value is not None and name != "family_options":
            options[name] = value
    for name in (*_FAMILY_OPTION_FLAGS, "load_in_4bit", "load_in_8bit"):
        if getattr(args, name, None):
            options[name] = getattr(args, name)
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--option {item!r}: expected KEY=VALUE")
        options[key.strip()] = parse_scalar(value)
    return EngineSpec.from_options(options)


def _engine(args: argparse.Namespace, *, load_model: bool) -> Any:
    from videolmm.load import load_engine

    return load_engine(spec_from_args(args), load_model=load_model)


def cmd_tiny(args: argparse.Namespace) -> int:
    from videolmm.plugin.manager import get_registry

    family = get_registry().family(args.family)
    if args.trained:
        from videolmm.toy.trained import materialize_trained

        print(materialize_trained(family.name, args.out))
    else:
        print(family.build_tiny(args.out, seed=args.seed, geometry=args.geometry))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from videolmm.toy.train.loop import train
    from videolmm.toy.train.recipe import recipe_for

    recipe = recipe_for(args.family)
    if args.seed is not None:
        recipe = replace(recipe, seed=args.seed)
    if args.steps is not None:
        recipe = replace(recipe, steps=args.steps)
    if args.clips is not None:
        recipe = replace(recipe, num_clips=args.clips)
    manifest = train(
        recipe, args.out, log=lambda msg: print(msg, file=sys.stderr, flush=True), progress=not args.no_progress
    )
    print(json.dumps(manifest, indent=2))
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from videolmm.errors import ConfigError
    from videolmm.types import Request

    if args.contact_sheet and not args.video:
        raise ConfigError("--contact-sheet draws the sampled frames of a video: give --video too")
    engine = _engine(args, load_model=False)
    decoded = engine.decode(Request(question=args.question, videos=(args.video,))) if args.video else None
    described = engine.describe(decoded)  # one decode for the description and the contact sheet
    if args.contact_sheet and "error" not in described:
        from videolmm.media.contact_sheet import write_contact_sheet

        described["contact_sheet"] = str(
            write_contact_sheet(decoded.videos[0], args.contact_sheet, columns=args.sheet_columns)
        )
    print(json.dumps(described, indent=2, default=str))
    return 1 if "error" in described else 0


def cmd_config(args: argparse.Namespace) -> int:
    from importlib.resources import files

    name = "grafana_dashboard.json" if args.name == "grafana" else f"{args.name}.yaml"
    text = files("videolmm").joinpath("serve", "configs", name).read_text()
    if args.out:
        from pathlib import Path

        Path(args.out).write_text(text)
        print(args.out)
    else:
        sys.stdout.write(text)
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from videolmm.types import GenerationSettings, Request

    engine = _engine(args, load_model=True)
    gen = GenerationSettings(
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        num_beams=args.num_beams,
        stop=tuple(args.stop or ()),
        seed=args.seed,
    )
    videos = tuple(args.video or ())
    images = tuple(args.image or ())
    result = engine.generate([Request(question=args.question, videos=videos, images=images, generation=gen)])[0]
    if args.json:
        from dataclasses import asdict

        print(json.dumps(asdict(result), indent=2, default=str))
    elif result.ok:
        print(result.text)
    else:
        print(f"error: {result.error}", file=sys.stderr)
    return 0 if result.ok else 1


def cmd_plugins(args: argparse.Namespace) -> int:
    from videolmm.plugin.manager import get_plugin_manager, get_registry

    pm = get_plugin_manager()
    reg = get_registry(pm)
    out = {
        "plugins": sorted(name for name, _ in pm.list_name_plugin()),
        "families": {n: reg.owners[f"family:{n}"] for n in sorted(reg.families)},
        "decoders": {n: reg.owners[f"decoder:{n}"] for n in sorted(reg.decoders)},
        "samplers": {n: reg.owners[f"sampler:{n}"] for n in sorted(reg.samplers)},
        "templates": {n: reg.owners[f"template:{n}"] for n in sorted(reg.templates)},
    }
    print(json.dumps(out, indent=2))
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from pathlib import Path

    from videolmm.convert.base import ConvertOptions
    from videolmm.convert.run import convert_checkpoint

    def path(value: str | None) -> Path | None:
        return Path(value) if value else None

    options = ConvertOptions(
        input=Path(args.input),
        output=Path(args.output),
        vision_tower=path(args.vision_tower),
        video_tower=path(args.video_tower),
        image_tower=path(args.image_tower),
        dtype=args.dtype,
        max_shard_size=args.max_shard_size,
        overwrite=args.overwrite,
        hashes=not args.no_hash,
        rope_factor=args.rope_factor,
    )
    manifest = convert_checkpoint(args.source, options, bar=not args.no_progress)
    summary = {
        "output": str(options.output),
        "family": manifest.family,
        "model_type": manifest.model_type,
        "mapped": manifest.mapped,
        "dropped": len(manifest.dropped),
        "added_tokens": manifest.added_tokens,
        "vocab": manifest.vocab,
    }
    print(json.dumps(summary, indent=2))
    return 0


def _add_convert_parser(sub: Any) -> None:
    p = sub.add_parser(
        "convert",
        help="convert an original checkpoint (lmms-lab LLaVA-NeXT-Video / LLaVA-Video, LLaVA-Hound) for videolmm",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  videolmm convert --source lmms-lab/LLaVA-Video-7B-Qwen2 --input orig/ --output conv/\n",
        description="Stream an original checkpoint's shards into a directory videolmm loads (and stock "
        "transformers 5, for LLaVA-NeXT-Video); refuses unknown or missing tensors, listing them; writes config, "
        "tokenizer, processor, chat template and conversion_manifest.json.",
    )
    p.add_argument(
        "--source",
        required=True,
        help="layout: llava_next_video, llava_video_qwen2 or llava_hound (or a published id, "
        "e.g. lmms-lab/LLaVA-Video-7B-Qwen2)",
    )
    p.add_argument("--input", required=True, help="the original checkpoint directory")
    p.add_argument("--output", required=True, help="the directory to create")
    p.add_argument("--vision-tower", help="local copy of the vision tower config.json names (LLaVA-NeXT layouts)")
    p.add_argument("--video-tower", help="local LanguageBind_Video_merge directory (LLaVA-Hound)")
    p.add_argument("--image-tower", help="local LanguageBind_Image directory (LLaVA-Hound)")
    p.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "bfloat16", "float16", "float32"],
        help="dtype of the written tensors (default: auto, as stored)",
    )
    p.add_argument("--max-shard-size", default="5GB", help="output shard size (default 5GB)")
    p.add_argument("--rope-factor", type=float, default=None, help="Vicuna linear RoPE factor (default 2.0; 0 = off)")
    p.add_argument("--no-hash", action="store_true", help="skip the SHA-256 of every file in the manifest")
    p.add_argument("--no-progress", action="store_true", help="log lines instead of a progress bar")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty output directory")
    p.set_defaults(func=cmd_convert)


_EXAMPLES = """\
examples:
  videolmm tiny --family llava_next_video --trained --out ckpt/
  videolmm inspect ckpt/ --video clip.mp4 --frames 8 --contact-sheet frames.png
  videolmm generate ckpt/ --video clip.mp4 --question "What moves?"
  videolmm config tiny > my.yaml && serve run my.yaml
  lmms-eval --model llava_next_video --model_args pretrained=ckpt/ --tasks videolmm_synthetic
"""


def _sub(sub: Any, name: str, help: str, examples: str = "") -> argparse.ArgumentParser:
    return sub.add_parser(
        name,
        help=help,
        description=help[:1].upper() + help[1:] + ".",
        epilog=("examples:\n" + examples) if examples else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _family_names() -> list[str]:
    from videolmm.plugin.manager import get_registry

    return sorted(get_registry().families)


def build_parser() -> argparse.ArgumentParser:
    from videolmm import __version__

    parser = argparse.ArgumentParser(
        prog="videolmm",
        description="Evaluate and serve LLaVA-family video LMMs faithfully.",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"videolmm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    families = _family_names()

    p = _sub(
        sub,
        "tiny",
        "build a deterministic tiny checkpoint of a family, offline",
        "  videolmm tiny --family video_llava --out tiny-vl/\n"
        "  videolmm tiny --family llava_next_video --trained --out c/\n",
    )
    p.add_argument("--family", required=True, choices=families, help="the model family to build")
    p.add_argument("--out", required=True, help="the directory to write the checkpoint to")
    p.add_argument("--seed", type=int, default=0, help="weights seed (default: 0)")
    p.add_argument(
        "--geometry",
        default="tiny",
        choices=["tiny", "published", "published-34b"],
        help="tiny: 32px frames; published: the real checkpoints' vision geometry, tiny widths; "
        "published-34b (llava_next_video only): the 34B's layout, Yi token ids, 4096-position context "
        "(default: tiny)",
    )
    p.add_argument("--trained", action="store_true", help="copy the trained tiny checkpoint shipped with videolmm")
    p.set_defaults(func=cmd_tiny)

    p = _sub(
        sub,
        "train",
        "train a tiny checkpoint on synthetic clips (CPU, minutes)",
        "  videolmm train --family llava_next_video --out trained/ --steps 200\n",
    )
    p.add_argument("--family", required=True, choices=families, help="the model family to train")
    p.add_argument("--out", required=True, help="the directory to write the trained checkpoint to")
    p.add_argument("--seed", type=int, default=None, help="weights and batch seed (default: the recipe's)")
    p.add_argument("--steps", type=int, default=None, help="optimiser steps (default: the shipped recipe's)")
    p.add_argument("--clips", type=int, default=None, help="training clips (default: the shipped recipe's)")
    p.add_argument("--no-progress", action="store_true", help="log lines instead of a progress bar")
    p.set_defaults(func=cmd_train)

    p = _sub(
        sub,
        "inspect",
        "print the effective settings (family, sampler, prompt, tokens) as JSON",
        "  videolmm inspect llava-hf/LLaVA-NeXT-Video-7B-hf\n"
        "  videolmm inspect ckpt/ --video clip.mp4 --frames 8 --contact-sheet frames.png\n",
    )
    _add_engine_args(p)
    p.add_argument("--video", help="a video to sample and count tokens for")
    p.add_argument("--question", default="Describe the video.", help="the question put in the prompt")
    p.add_argument(
        "--contact-sheet",
        metavar="PNG",
        help="draw the sampled frames of --video in a grid, each labelled with its index and timestamp",
    )
    p.add_argument("--sheet-columns", type=int, default=8, help="frames per row of the contact sheet (default: 8)")
    p.set_defaults(func=cmd_inspect)

    p = _sub(
        sub,
        "generate",
        "answer one question about a video (or images)",
        '  videolmm generate ckpt/ --video clip.mp4 --question "What colour is the square?"\n',
    )
    _add_engine_args(p)
    p.add_argument("--video", action="append", help="video path (repeatable)")
    p.add_argument("--image", action="append", help="image path (repeatable)")
    p.add_argument("--question", required=True, help="the user's question")
    p.add_argument("--max-new-tokens", type=int, default=128, help="tokens to generate at most (default: 128)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 is greedy (default: 0)")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling mass (with --temperature > 0)")
    p.add_argument("--num-beams", type=int, default=1, help="beam search width (default: 1)")
    p.add_argument("--stop", action="append", help="stop string (repeatable)")
    p.add_argument("--seed", type=int, default=None, help="sampling seed")
    p.add_argument("--json", action="store_true", help="print the whole result as JSON")
    p.set_defaults(func=cmd_generate)

    p = _sub(sub, "plugins", "list plugins and the components each registered", "  videolmm plugins\n")
    p.set_defaults(func=cmd_plugins)

    p = _sub(
        sub,
        "config",
        "print a Serve config (a starting point for `serve run`) or the Grafana dashboard shipped with videolmm",
        "  videolmm config tiny > my.yaml\n  videolmm config video --out video.yaml\n"
        "  videolmm config grafana --out videolmm-dashboard.json\n",
    )
    p.add_argument(
        "name",
        choices=["tiny", "video", "grafana"],
        help="tiny: CPU, tiny checkpoints; video: GPU, real models; grafana: the dashboard JSON",
    )
    p.add_argument("--out", help="write to this file instead of standard output")
    p.set_defaults(func=cmd_config)

    _add_convert_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``videolmm`` command."""
    from videolmm.errors import VideoLMMError
    from videolmm.log import configure_from_env

    configure_from_env()
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except VideoLMMError as exc:
        print(f"videolmm: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
