"""Commands for a user's own model and data: init, pack create / verify / show."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import click

from edgegate.cli.app import (
    EXIT_INPUT,
    cli,
    handle_errors,
)
from edgegate.errors import InputError


@cli.command()
@click.argument("model")
@click.option("--pack", "pack_dir", type=click.Path(path_type=Path), required=True,
              help="The PromptPack to score on (edgegate pack create makes one).")
@click.option("--task", required=True, metavar="TASK",
              help="image-classification, object-detection, text-classification or text-embedding.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="The pipeline YAML to write.")
@click.option("--device", default="htp-sim", show_default=True, help="Device name (devices/NAME.yaml) or path.")
@click.option("--input", "inputs", multiple=True, metavar="NAME:DIMS",
              help="An input's shape, e.g. image:1x3x224x224: every input of a TorchScript file, or the "
                   "dynamic dimensions of an ONNX one (repeat for each input).")
@click.option("--tokenizer", type=click.Path(path_type=Path), default=None,
              help="Text tasks: the model's tokenizer.json (default: tokenizer.json beside MODEL).")
@click.option("--name", default=None, help="The pipeline's name (default: from MODEL's file name).")
@click.option("--force", is_flag=True, help="Replace the file at --out.")
@handle_errors
def init(model: str, pack_dir: Path, task: str, out: Path, device: str, inputs: tuple[str, ...],
         tokenizer: Path | None, name: str | None, force: bool) -> None:
    """Write a pipeline YAML for MODEL scored on the PromptPack --pack.

    MODEL is an .onnx file, a TorchScript .pt/.pth file or a torch factory package.module:function
    (TorchScript and factories keep no input shapes: give each with --input NAME:DIMS)."""
    from edgegate.config.model_signature import parse_input_option
    from edgegate.config.scaffold import InitRequest, PackFacts, write_pipeline
    from edgegate.packs.adapters import get_preset
    from edgegate.packs.promptpack import load_promptpack
    from edgegate.packs.summary import describe_pack
    from edgegate.run.models import resolve_factory

    request = InitRequest(model=model, task=task, out=out, device=device, name=name, tokenizer=tokenizer,
                          inputs=dict(parse_input_option(text) for text in inputs), force=force)
    request.check_out()
    pack = PackFacts.from_description(describe_pack(load_promptpack(pack_dir)), pack_dir)
    written = write_pipeline(request, pack, get_preset(task).options,
                             functools.partial(resolve_factory, what="MODEL"))
    click.echo(f"wrote {written.path}: pipeline {written.spec.name}, {task} adapter, device "
               f"{written.spec.device} (AIMET config {written.aimet_config}), {len(written.spec.gates)} gate(s)")
    click.echo(f"next: edgegate validate {written.path} && edgegate run {written.path}")



@cli.group()
def pack() -> None:
    """Build, check and describe PromptPacks (the hashed evaluation data a run scores)."""


_PACK_TASKS = ["image-classification", "object-detection", "text-classification"]


@pack.command("create")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder to write the pack to (built aside and renamed into place when complete).")
@click.option("--task", type=click.Choice(_PACK_TASKS), default=None,
              help="Default from SOURCE: a folder -> image-classification (a subfolder per class, or unlabelled), "
                   "a .json -> object-detection (COCO), a .csv/.tsv/.jsonl -> text-classification.")
@click.option("--images", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="COCO: the folder of the images its file_name fields name (default: the JSON file's folder).")
@click.option("--text-column", default=None, help="CSV/JSONL: the column holding the text (default: text).")
@click.option("--label-column", default=None,
              help="CSV/JSONL: the column holding the label (default: label; a row without one is unlabelled).")
@click.option("--id-column", default=None, help="CSV/JSONL: a column of unique sample ids (default: row-00001, ...).")
@click.option("--classes", "classes_csv", default=None, metavar="A,B,...",
              help="Class names in the model's output order (default: the labels sorted; COCO: its categories).")
@click.option("--classes-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Class names in the model's output order, one per line (e.g. the 1000 ImageNet classes).")
@click.option("--calibration", type=int, default=16, show_default=True,
              help="Samples in the calibration split (what INT8 quantization calibrates on).")
@click.option("--eval", "eval_count", type=int, default=None,
              help="Samples in the eval split (default: every sample not in another split).")
@click.option("--support", type=int, default=0, show_default=True,
              help="Labelled samples in a support split (class centroids for embedding models; 0: none).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the splits (stratified by label; the same data and seed give the same splits).")
@click.option("--name", default=None, help="The pack's name (default: the --out folder's name).")
@click.option("--version", "pack_version", default="1.0.0", show_default=True,
              help="The pack's version, MAJOR.MINOR.PATCH.")
@click.option("--description", default=None, help="One paragraph on the pack (default: written from the data).")
@click.option("--license", "license_", default="unspecified", show_default=True,
              help="The data's licence, recorded in the manifest's sources (e.g. CC-BY-4.0).")
@click.option("--source", "source_name", default=None,
              help="Where the data came from (a dataset name or URL), recorded in sources (default: SOURCE's name).")
@click.option("--attribution", default="", help="The attribution the licence asks for, recorded in sources.")
@click.option("--language", default="und", show_default=True,
              help="Texts: their BCP 47 language tag (und: not determined).")
@click.option("--link", is_flag=True,
              help="Hard-link the images instead of copying them (same filesystem; the manifest still pins their bytes).")
@click.option("--force", is_flag=True, help="Replace the pack already at --out.")
@handle_errors
def pack_create(source: Path, out_dir: Path, task: str | None, images: Path | None, text_column: str | None,
                label_column: str | None, id_column: str | None, classes_csv: str | None,
                classes_file: Path | None, calibration: int, eval_count: int | None, support: int, seed: int,
                name: str | None, pack_version: str, description: str | None, license_: str,
                source_name: str | None, attribution: str, language: str, link: bool, force: bool) -> None:
    """Build a PromptPack from SOURCE: an image folder, a COCO detection JSON, or a CSV/JSONL of texts.

    Copies the samples, writes manifest.yaml with every sha256 and seeded calibration/eval
    splits. Unreadable or duplicate samples are refused, one error line each, and nothing is written.
    """
    from edgegate.packs.create import (
        PackCreateOptions,
        PackSourceError,
        create_pack,
        read_class_names,
    )
    from edgegate.packs.manifest import Task

    if classes_csv is not None and classes_file is not None:
        raise InputError("--classes and --classes-file: give one of them")
    classes = classes_csv.split(",") if classes_csv is not None else None
    if classes_file is not None:
        classes = read_class_names(classes_file)
    opts = PackCreateOptions(
        source=source, out=out_dir, task=Task(task) if task else None, images=images, text_column=text_column,
        label_column=label_column, id_column=id_column, classes=classes, calibration=calibration,
        eval=eval_count, support=support, seed=seed, name=name, version=pack_version, description=description,
        license=license_, source_name=source_name, attribution=attribution, language=language, link=link,
        force=force,
    )
    try:
        made = create_pack(opts)
    except PackSourceError as exc:
        for problem in exc.problems:
            click.echo(f"error: {problem}", err=True)
        sys.exit(EXIT_INPUT)
    splits = ", ".join(f"{k} {v}" for k, v in made.splits.items())
    what = "boxes" if made.task is Task.OBJECT_DETECTION else "labelled samples"
    click.echo(f"ok: wrote PromptPack {made.name} {made.version} ({made.task.value}) to {made.path}")
    click.echo(f"  splits: {splits}; {len(made.classes)} classes; {made.labelled} {what}")
    click.echo(f"  digest: {made.digest}")
    for note in made.notes:
        click.echo(f"note: {note}")


@pack.command("verify")
@click.argument("pack_dir", metavar="DIR", type=click.Path(path_type=Path))
@handle_errors
def pack_verify(pack_dir: Path) -> None:
    """Check the pack in DIR: every file's sha256, the manifest and samples schema, every image decodes.

    Exit code 0 when it verifies, 2 with one error line per problem when not.
    """
    from edgegate.packs.summary import verify_pack

    check = verify_pack(pack_dir)
    if check.problems:
        for problem in check.problems:
            click.echo(f"error: {problem}", err=True)
        sys.exit(EXIT_INPUT)
    p = check.pack
    click.echo(f"ok: {p.name} {p.version} ({p.digest[:19]}): {check.files} files hashed, "
               f"{check.images} images decoded, splits {', '.join(f'{s} {len(p.samples(s))}' for s in p.splits)}")


@pack.command("show")
@click.argument("pack_dir", metavar="DIR", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="Output format.")
@handle_errors
def pack_show(pack_dir: Path, fmt: str) -> None:
    """Describe the pack in DIR: name, version, task, classes, splits, label counts, sources, digest."""
    from edgegate.packs.promptpack import load_promptpack
    from edgegate.packs.summary import describe_pack, render_pack

    desc = describe_pack(load_promptpack(pack_dir, verify=False))
    click.echo(json.dumps(desc, indent=1, ensure_ascii=False) if fmt == "json" else render_pack(desc))
