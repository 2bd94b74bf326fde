"""The conversion driver, the same for every layout.

1. read the original ``config.json`` and check that it is the named layout;
2. let the layout decide the target (:class:`~videolmm.convert.base.Prepared`);
3. list every source tensor (headers only) and plan the keys against the target model built on
   the meta device; any unknown, missing or mis-shaped tensor refuses the conversion, listing
   them all, before anything is written;
4. stream the tensors source shard by source shard into output shards (cast, vocabulary rows
   grown with the mean embedding), then save config, generation config, processor, tokenizer
   and chat template, and ``conversion_manifest.json``.

Output is written to ``<output>.partial`` and renamed at the end, so a directory named like the
output is always complete.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections import Counter
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from videolmm.convert.base import ConvertOptions, Prepared, SourceLayout
from videolmm.convert.common import meta_shapes, read_original_config, tied_targets
from videolmm.convert.manifest import ConversionManifest, FileRecord
from videolmm.convert.plan import Plan, make_plan
from videolmm.convert.shards import (
    Progress,
    ShardWriter,
    TensorRef,
    WeightFile,
    list_refs,
    parse_size,
    sha256_file,
)
from videolmm.errors import ConfigError
from videolmm.models.spec import CHECKPOINT_DEFAULTS

_REPORT_EVERY = 200


def layouts() -> dict[str, SourceLayout]:
    """The built-in layouts by name."""
    from videolmm.convert.llava_hound import LlavaHoundLayout
    from videolmm.convert.llava_next_video import LlavaNextVideoLayout
    from videolmm.convert.llava_video_qwen2 import LlavaVideoQwen2Layout

    found: list[SourceLayout] = [LlavaNextVideoLayout(), LlavaVideoQwen2Layout(), LlavaHoundLayout()]
    return {layout.name: layout for layout in found}


def get_layout(source: str) -> SourceLayout:
    """A layout by name or by one of its published checkpoint ids.

    Raises:
        ConfigError: unknown ``source`` (the message lists the names and ids).
    """
    for layout in layouts().values():
        if source == layout.name or source in layout.aliases:
            return layout
    known = [f"{lay.name} ({', '.join(lay.aliases)})" for lay in layouts().values()]
    raise ConfigError(f"unknown source layout {source!r}; known: {'; '.join(known)}")


def detect_layout(original: Mapping[str, Any]) -> str | None:
    """The layout an original ``config.json`` belongs to, or None."""
    for name, layout in layouts().items():
        if layout.detect(original):
            return name
    return None


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def convert_checkpoint(
    source: str, options: ConvertOptions, progress: Progress | None = None, *, bar: bool = False
) -> ConversionManifest:
    """Convert an original checkpoint into a directory videolmm loads.

    Args:
        source: a layout name (``llava_next_video``, ``llava_video_qwen2``, ``llava_hound``) or
            a published checkpoint id (``lmms-lab/LLaVA-Video-7B-Qwen2``, ...).
        options: input, output and knobs.
        progress: receives progress lines (default: stderr).
        bar: show a tqdm bar over the bytes of the tensors written (the command line's default);
            progress lines are then written above it.

    Returns:
        The manifest (also written as ``conversion_manifest.json``).

    Raises:
        ConfigError: the input is not this layout, uses an unsupported setting, or its tensors
            do not match the target (``ConversionRefused``, listing every problem); the output
            exists and ``overwrite`` is off.
    """
    report = progress or _stderr
    layout = get_layout(source)
    original = read_original_config(options.input)
    if not layout.detect(original):
        other = detect_layout(original)
        hint = f"; it looks like {other!r}" if other else ""
        raise ConfigError(
            f"{options.input}: config.json (model_type={original.get('model_type')!r}) is not a "
            f"{layout.name} checkpoint{hint}"
        )
    staging = _staging_dir(options)
    report(f"converting {options.input} ({layout.name}) -> {options.output}")
    prepared = layout.prepare(original, options, report)
    refs = [ref for src in prepared.sources for ref in list_refs(list(src.files), src.group, report)]
    layout.check_refs(refs)
    shapes = meta_shapes(prepared.model_class, prepared.config)
    plan = make_plan(
        refs,
        prepared.rules,
        shapes,
        optional_targets=tied_targets(prepared.config),
        row_resizable=prepared.row_resizable,
    )
    report(f"plan: {len(plan.mapped)} tensors -> {len(shapes)} parameters, {len(plan.dropped)} dropped")
    try:
        staging.mkdir(parents=True)
        written, dtype_name = _write_weights(prepared, plan, options, staging, report, bar=bar)
        _save_components(prepared, dtype_name, staging)
        manifest = _manifest(layout, source, options, prepared, plan, shapes, refs, written, staging)
        manifest.write(staging)
        _publish(staging, options)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    report(f"done: {options.output}")
    return manifest


def _staging_dir(options: ConvertOptions) -> Path:
    out = Path(options.output)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not options.overwrite:
        raise ConfigError(f"{out}: exists and is not empty (pass --overwrite to replace it)")
    staging = out.with_name(out.name + ".partial")
    if staging.exists():
        shutil.rmtree(staging)
    return staging


def _publish(staging: Path, options: ConvertOptions) -> None:
    out = Path(options.output)
    if out.exists():
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    staging.rename(out)


def _torch_dtype(name: str) -> Any:
    import torch

    return getattr(torch, name)


def _write_weights(
    prepared: Prepared, plan: Plan, options: ConvertOptions, out: Path, report: Progress, *, bar: bool = False
) -> tuple[list[Path], str]:
    """Stream the mapped tensors, file by file, into output shards."""
    cast = None if options.dtype == "auto" else _torch_dtype(options.dtype)
    by_source = {(ref.group, ref.key): target for target, ref in plan.mapped.items()}
    writer = ShardWriter(out, parse_size(options.max_shard_size), report)
    dtypes: Counter[str] = Counter()
    files = [(src.group, path) for src in prepared.sources for path in src.files]
    done = 0
    progress_bar = None
    if bar:
        from tqdm.auto import tqdm

        progress_bar = tqdm(total=len(plan.mapped), unit="tensor", desc="convert", file=sys.stderr)

        def report(line: str) -> None:  # lines above the bar
            tqdm.write(line, file=sys.stderr)

    for number, (group, path) in enumerate(files, start=1):
        report(f"[{number}/{len(files)}] {group}: {path.name}")
        with WeightFile(path, group, report) as handle:
            for ref in handle.refs():
                target = by_source.get((ref.group, ref.key))
                if target is None:
                    continue
                tensor = handle.get(ref.key)
                if cast is not None and tensor.is_floating_point():
                    tensor = tensor.to(cast)
                if target in plan.resized:
                    tensor = _grow_rows(tensor, plan.resized[target][0])
                dtypes[str(tensor.dtype).removeprefix("torch.")] += tensor.numel()
                writer.add(target, tensor)
                done += 1
                if progress_bar is not None:
                    progress_bar.update(1)
                elif done % _REPORT_EVERY == 0:
                    report(f"  {done}/{len(plan.mapped)} tensors")
    shards = writer.close()
    if progress_bar is not None:
        progress_bar.close()
    floating = {k: v for k, v in dtypes.items() if k.startswith(("float", "bfloat"))}
    dtype_name = max(floating, key=floating.__getitem__) if floating else "float32"
    return shards, dtype_name


def _grow_rows(tensor: Any, rows: int) -> Any:
    """Append rows equal to the mean row (the expectation of transformers' converters' draw)."""
    import torch

    mean = tensor.float().mean(dim=0, keepdim=True).to(tensor.dtype)
    extra = mean.expand(rows - tensor.shape[0], *tensor.shape[1:])
    return torch.cat([tensor, extra], dim=0)


def _save_components(prepared: Prepared, dtype_name: str, out: Path) -> None:
    config = prepared.config
    config.architectures = [prepared.model_class.__name__]
    config.dtype = dtype_name
    config.save_pretrained(out)
    prepared.generation_config.save_pretrained(out)
    prepared.processor.save_pretrained(out)
    if prepared.checkpoint_defaults:
        text = json.dumps(dict(prepared.checkpoint_defaults), indent=2, sort_keys=True) + "\n"
        (out / CHECKPOINT_DEFAULTS).write_text(text, encoding="utf-8")


def _records(root: Path, files: list[Path], group: str, hashes: bool) -> list[FileRecord]:
    return [
        FileRecord(
            path=str(p.relative_to(root)) if p.is_relative_to(root) else str(p),
            group=group,
            bytes=p.stat().st_size,
            sha256=sha256_file(p) if hashes else None,
        )
        for p in files
    ]


def _manifest(
    layout: SourceLayout,
    source: str,
    options: ConvertOptions,
    prepared: Prepared,
    plan: Plan,
    shapes: Mapping[str, tuple[int, ...]],
    refs: list[TensorRef],
    written: list[Path],
    out: Path,
) -> ConversionManifest:
    try:
        own_version = version("videolmm")
    except PackageNotFoundError:  # running from a source tree without metadata
        own_version = "unknown"
    source_files = [
        rec for src in prepared.sources for rec in _records(src.root, list(src.files), src.group, options.hashes)
    ]
    return ConversionManifest(
        source_layout=layout.name,
        source=source,
        input=str(options.input),
        family=prepared.family,
        model_type=str(prepared.config.model_type),
        architectures=list(prepared.config.architectures or []),
        dtype=options.dtype,
        source_tensors=dict(Counter(ref.group for ref in refs)),
        mapped=len(plan.mapped),
        target_parameters=len(shapes),
        dropped=[{"tensor": ref.name, "reason": reason} for ref, reason in plan.dropped],
        resized={t: [plan.mapped[t].shape[0], shape[0]] for t, shape in plan.resized.items()},
        added_tokens=dict(prepared.added_tokens),
        vocab={"original": prepared.original_vocab, "converted": int(prepared.config.text_config.vocab_size)},
        settings=dict(prepared.settings),
        source_files=source_files,
        output_files=_records(out, written, "output", options.hashes),
        videolmm_version=own_version,
    )


__all__ = ["convert_checkpoint", "detect_layout", "get_layout", "layouts"]
