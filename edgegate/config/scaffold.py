"""``edgegate init``: a pipeline file for a model file and a PromptPack, without writing Python.

From an ONNX file (or a TorchScript file with ``--input`` shapes) and a pack, write the
pipeline YAML a first run needs: the graph with its input names and shapes, the adapter
preset for the task with its options spelled out (the ones init chose set, every other one
as a commented default), the device, quantization calibrated on the pack's calibration
split, the pack's scorers and gates that fit the task and whether the pack is labelled.

This module is configuration only: it never imports the pack loader or the adapters (they
import ``edgegate.config``). The caller reads the pack (``PackFacts.from_description`` on
``edgegate.packs.summary.describe_pack``'s data) and passes the preset's options model;
the written text is validated as a ``PipelineSpec`` and its adapter options with that
model before anything is written, so ``edgegate validate`` passes on what init writes.
Every problem is one InputError line, and then nothing is written.
"""

from __future__ import annotations

import math
import os
import re
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from edgegate.artifacts import atomic_write
from edgegate.config.device import (
    CpuDevice,
    DeviceFileMissing,
    DeviceSpec,
    QnnEmulatorDevice,
    load_device,
)
from edgegate.config.loader import parse_yaml, render_field_path
from edgegate.config.model_signature import (
    FACTORY_RE,
    FactoryResolver,
    ModelInput,
    ModelSignature,
    format_dims,
    read_model,
    static_inputs,
    with_torch_outputs,
)
from edgegate.config.pipeline import (
    ADAPTER_PRESETS,
    PipelineSpec,
    TensorSpec,
    aimet_config_for,
)
from edgegate.errors import InputError, SpecError, UnknownNameError
from edgegate.metrics import format_suggestion

# The pack task each adapter preset scores (an embedding model is scored on a text pack).
PACK_TASK = {
    "image-classification": "image-classification",
    "object-detection": "object-detection",
    "text-classification": "text-classification",
    "text-embedding": "text-classification",
}
GRAPH_NAME = {
    "image-classification": "classifier",
    "object-detection": "detector",
    "text-classification": "encoder",
    "text-embedding": "encoder",
}
# torchvision's ImageNet preprocessing: resize the shorter side to 256/224 of the crop.
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
RESIZE_PER_CROP = 256 / 224
MAX_CALIBRATION = 64
# What an adapter option means, for the commented defaults (a field's own description wins).
OPTION_HINTS = {
    "graph": "the graph the adapter runs (default: the only one)",
    "input": "the graph input fed with the image (default: the only one)",
    "channel_order": "RGB or BGR, the order the model was trained on",
    "layout": "NCHW or NHWC",
    "dtype": "the dtype the input is fed as",
    "scale": "pixels 0..255 times this before mean/std",
    "mean": "per channel, subtracted after scale",
    "std": "per channel, divides after mean",
    "interpolation": "bilinear, bicubic or nearest",
    "resize": "an int resizes the shorter side, [height, width] exactly",
    "crop": "centre crop, int or [height, width]",
    "output": "logits, or probabilities when the model ends in a softmax",
    "output_name": "the graph output with the class scores (default: the first)",
    "class_names": "the model's class names in output order, a list or a file (default: the pack's classes)",
    "outputs": "graph outputs in the decoder's order (default: as declared)",
    "tokenizer": "the model's tokenizer.json, relative to this file",
    "max_length": "tokens per text (default: the declared sequence length)",
    "inputs": "role -> graph input name (default: inputs named input_ids, attention_mask, ...)",
    "pooling": "none (a classifier head's logits), cls or mean",
    "normalize": "L2-normalise embeddings",
}


@dataclass(frozen=True)
class PackFacts:
    """What init needs to know of a PromptPack (read by the caller through edgegate.packs)."""

    path: Path
    name: str
    task: str
    scorers: tuple[str, ...]
    classes: int
    splits: Mapping[str, int]  # split -> samples
    labelled: Mapping[str, bool]  # split -> whether any of its samples has a label or a box

    @classmethod
    def from_description(cls, desc: Mapping[str, Any], path: Path | None = None) -> PackFacts:
        """From ``edgegate.packs.summary.describe_pack``'s data (``pack show --format json``);
        ``path``: the pack as the user named it (default: the absolute path in ``desc``)."""
        splits = desc["splits"]
        if path is not None and path.is_file():  # the pack's manifest.yaml: its folder is the pack
            path = path.parent
        return cls(
            path=Path(desc["path"]) if path is None else path, name=desc["name"], task=desc["task"],
            scorers=tuple(desc["scorers"]), classes=len(desc["classes"]),
            splits={s: int(v["samples"]) for s, v in splits.items()},
            labelled={s: bool(v.get("labels") or v.get("boxes")) for s, v in splits.items()},
        )


@dataclass(frozen=True)
class InitRequest:
    """``edgegate init``'s arguments. Building one checks the task and the name."""

    model: str  # a model file (.onnx, TorchScript .pt/.pth) or a torch factory pkg.module:function
    task: str
    out: Path
    device: str = "htp-sim"
    inputs: Mapping[str, tuple[int, ...]] = field(default_factory=dict)  # --input NAME:DIMS
    name: str | None = None
    tokenizer: Path | None = None
    force: bool = False

    def __post_init__(self) -> None:
        if self.task not in ADAPTER_PRESETS:
            raise InputError(f"--task {self.task}: unknown task{format_suggestion(self.task, ADAPTER_PRESETS)}; "
                             f"tasks: {', '.join(ADAPTER_PRESETS)}")
        if self.name is not None and not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", self.name):
            raise InputError(f"--name {self.name}: use lower-case letters, digits, '-' and '_', "
                             "starting with a letter or digit")

    def check_out(self) -> None:
        """The pipeline file may be written: not a folder, not an existing file without --force."""
        if self.out.is_dir():
            raise InputError(f"--out {self.out}: is a directory; give the pipeline file's path (e.g. pipeline.yaml)")
        if self.out.exists() and not self.force:
            raise InputError(f"--out {self.out}: already exists; pass --force to replace it")

    @property
    def pipeline_name(self) -> str:
        if self.name is not None:
            return self.name
        base = self.model.rpartition(":")[2] if FACTORY_RE.match(self.model) else Path(self.model).stem
        stem = re.sub(r"[^a-z0-9_-]+", "_", base.lower()).strip("_-")
        return stem or "model"


@dataclass(frozen=True)
class WrittenPipeline:
    path: Path
    spec: PipelineSpec
    aimet_config: str
    text: str


# ----------------------------------------------------------------------------- adapter options


@dataclass(frozen=True)
class Options:
    """Adapter options init sets, and a note per option on why."""

    values: dict[str, Any]
    notes: dict[str, str]


def _image_hw(sig: ModelSignature, task: str, inputs: Sequence[ModelInput]) -> tuple[int, int, str]:
    if len(inputs) != 1:
        raise InputError(f"{sig.source}: {task} feeds one image input; the model has {len(inputs)} "
                         f"({', '.join(i.name for i in inputs)})")
    shape = inputs[0].shape or ()
    if len(shape) == 4 and shape[0] == 1 and shape[1] == 3:
        return shape[2], shape[3], "NCHW"  # type: ignore[return-value]
    if len(shape) == 4 and shape[0] == 1 and shape[3] == 3:
        return shape[1], shape[2], "NHWC"  # type: ignore[return-value]
    raise InputError(f"{sig.source}: input '{inputs[0].name}' is {format_dims(shape)}, not one RGB image "
                     "[1, 3, H, W] or [1, H, W, 3]; give its shape with --input NAME:1x3xHxW")


def _text_tokenizer(req: InitRequest) -> Path:
    tokenizer = req.tokenizer if req.tokenizer is not None else Path(req.model).parent / "tokenizer.json"
    if not tokenizer.is_file():
        where = f"--tokenizer {req.tokenizer}: no such file" if req.tokenizer is not None else (
            f"{req.model}: no tokenizer.json beside it")
        raise InputError(f"{where}; {req.task} needs the model's tokenizer.json (pass --tokenizer PATH)")
    return tokenizer


def adapter_options(req: InitRequest, sig: ModelSignature, inputs: Sequence[ModelInput], pack: PackFacts) -> Options:
    """The options init sets for the task's preset; every other option keeps its default."""
    values: dict[str, Any] = {}
    notes: dict[str, str] = {}
    if req.task == "image-classification":
        height, width, layout = _image_hw(sig, req.task, inputs)
        if height == width:
            values["resize"] = round(height * RESIZE_PER_CROP)
            values["crop"] = height
            notes["resize"] = f"torchvision's ImageNet recipe: shorter side to {values['resize']}, centre crop"
        else:
            values["resize"] = [height, width]
            notes["resize"] = "exactly the model's input size"
        values["mean"], values["std"] = IMAGENET_MEAN, IMAGENET_STD
        notes["mean"] = "ImageNet's mean and std (of RGB in 0..1): check your model's training recipe"
        if layout == "NHWC":
            values["layout"] = layout
            notes["layout"] = "from the input's shape"
        if sig.ends_in_softmax:
            values["output"] = "probabilities"
            notes["output"] = "the model's last op is a Softmax"
        scores = sig.output_shapes[0] if sig.output_shapes else None
        count = math.prod(d for d in scores if d is not None) if scores and None not in scores else None
        if pack.classes and count is not None and count != pack.classes:
            raise InputError(
                f"--pack {pack.path}: lists {pack.classes} classes but the model gives {count} class scores; "
                "rebuild the pack with --classes-file (the model's class names in output order)")
    elif req.task == "object-detection":
        _image_hw(sig, req.task, inputs)
        decoder = {1: "yolo", 2: "ssd", 3: "decoded"}.get(len(sig.outputs))
        if decoder is None:
            raise InputError(f"{sig.source}: {len(sig.outputs)} outputs; object-detection decodes 1 (YOLO), "
                             "2 (SSD boxes, scores) or 3 (decoded boxes, scores, classes)")
        values["decoder"] = decoder
        notes["decoder"] = f"from the model's {len(sig.outputs)} output(s): yolo, ssd or decoded"
        shape = sig.output_shapes[0]
        if decoder == "yolo" and shape and len(shape) == 3 and None not in shape and shape[1] > shape[2]:
            values["yolo_layout"] = "BNC"
            notes["yolo_layout"] = f"output {format_dims(shape)} is [1, N, 4+C]"
    else:
        tokenizer = _text_tokenizer(req)
        values["tokenizer"] = os.path.relpath(tokenizer.absolute(), req.out.absolute().parent)
        dtypes = {i.dtype for i in inputs if i.dtype is not None}
        if len(dtypes) == 1 and dtypes != {"float32"}:
            values["dtype"] = dtypes.pop()
            notes["dtype"] = "the model's input dtype"
    return Options(values, notes)


# ----------------------------------------------------------------------------- rendering


def _flow(value: Any) -> str:
    """A value as one line of YAML (flow style)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 30, sort_keys=False).strip()
    return text[: -len("...")].strip() if text.endswith("...") else text


def _option_lines(options_model: type[BaseModel], chosen: Options) -> list[str]:
    lines = []
    for name, info in options_model.model_fields.items():
        hint = info.description or OPTION_HINTS.get(name, "")
        if name in chosen.values:
            note = chosen.notes.get(name, "")
            lines.append(f"    {name}: {_flow(chosen.values[name])}" + (f"  # {note}" if note else ""))
        elif info.is_required():
            lines.append(f"    {name}: null  # required: {hint}")
        else:
            default = info.get_default(call_default_factory=True)
            lines.append(f"    # {name}: {_flow(default)}" + (f"  # {hint}" if hint else ""))
    return lines


def _gates(task: str, labelled: bool, device: DeviceSpec) -> list[str]:
    lines = ["gates:"]
    if task == "image-classification":
        lines.append('  - "top1_agreement >= 0.9"       # INT8\'s best class is FP32\'s on 9 samples in 10')
        if labelled:
            lines.append('  - "top1_accuracy >= 0.99 * baseline"')
    elif task == "object-detection":
        if labelled:
            lines.append('  - "map50 >= 0.98 * baseline"')
        lines.append('  - "detection_agreement >= 0.95"  # INT8 finds FP32\'s boxes (IoU 0.5, same class)')
    else:
        if labelled:
            lines += ['  - "accuracy >= 0.99 * baseline"', '  - "macro_f1 >= 0.98 * baseline"']
        lines.append('  - "cosine_agreement >= 0.99"     # INT8 outputs point where FP32\'s do')
    if isinstance(device, CpuDevice):
        lines.append("  # no npu_fraction gate: the cpu device has no NPU (add one for an NPU device)")
    else:
        lines.append('  - "npu_fraction >= 1.0"          # every op on the NPU, none falls back to the CPU')
    lines += [
        "  # Latency: emulator timings are host timings, not device ones, so on an emulator a latency",
        "  # gate reports n/a unless it opts in (allow_host_timing: true). On a board or AI Hub, set a budget:",
        '  # - "inference_time_ms <= 20"',
    ]
    return lines


def _folding(sig: ModelSignature) -> list[str]:
    """BatchNorm folding and cross-layer equalization, when the model has what they act on."""
    lines = []
    if sig.batchnorm:
        lines.append("  bn_fold: true                # fold BatchNorm into the convolutions, as deployment does")
    if sig.depthwise:
        lines.append("  cle: true                    # cross-layer equalization: depthwise layers' ranges "
                     "for per-tensor INT8")
    return lines


def _benchmark(device: DeviceSpec) -> list[str]:
    if isinstance(device, QnnEmulatorDevice):
        return ["benchmark:  # per graph per process; emulator timings are host timings (never gated): keep it short",
                "  warmup: 1", "  repeats: 5", "  processes: 2"]
    return ["benchmark:  # per graph per process; 20 processes tell a 5% latency change from noise",
            "  warmup: 5", "  repeats: 50", "  processes: 20"]


def _calibration_split(pack: PackFacts) -> str:
    for split in ("calibration", "support", "train"):
        if split in pack.splits:
            return split
    raise InputError(f"--pack {pack.path}: no calibration split (splits: {', '.join(pack.splits)}); "
                     "rebuild it with edgegate pack create --calibration N")


def render_pipeline(
    req: InitRequest, sig: ModelSignature, inputs: Sequence[ModelInput], pack: PackFacts,
    device: DeviceSpec, options_model: type[BaseModel], aimet_config: str,
) -> str:
    """The pipeline YAML, comments included."""
    base = req.out.absolute().parent

    def rel(path: Path | str) -> str:  # paths in a pipeline are relative to the file
        return os.path.relpath(Path(path).absolute(), base)

    graph = GRAPH_NAME[req.task]
    text_model = req.task.startswith("text-")
    if "eval" not in pack.splits:
        raise InputError(f"--pack {pack.path}: no eval split (splits: {', '.join(pack.splits)}); "
                         "rebuild it with edgegate pack create")
    calib = _calibration_split(pack)
    chosen = adapter_options(req, sig, inputs, pack)
    device_value = req.device if not _is_path(req.device) else rel(req.device)
    labelled = pack.labelled.get("eval", False)
    lines = [
        f"# {req.pipeline_name}: written by `edgegate init` for {sig.display} ({sig.kind_label}) and the",
        f"# {pack.task} PromptPack '{pack.name}'. Check the adapter options (your model's",
        "# preprocessing), then: edgegate validate THIS_FILE && edgegate run THIS_FILE",
        f"name: {req.pipeline_name}",
        "description: >-",
        f"  {sig.display} ({sig.kind_label}) with the {req.task} adapter, scored on the '{pack.name}' pack.",
        "",
        "model:",
        f"  adapter: {req.task}",
        f"  adapter_options:  # the {req.task} preset's options; the commented ones are its defaults",
        *_option_lines(options_model, chosen),
        "  graphs:",
        f"    {graph}:",
        f"      {sig.kind}: {_flow(sig.source if sig.kind == 'factory' else rel(sig.source))}",
        "      inputs:",
    ]
    for inp in inputs:
        dtype = f", dtype: {inp.dtype}" if inp.dtype not in (None, "float32") else ""
        lines.append(f"        - {{name: {_flow(inp.name)}, shape: {_flow(list(inp.shape or ()))}{dtype}}}")
    lines += [
        f"      outputs: {_flow(_graph_outputs(req.task, sig))}",
        "",
        "quantization:",
        "  engine: aimet",
        f"  config: null                 # from the device's arch: {aimet_config} on {device.name}",
        "  scheme: tf_enhanced",
        "  param_bw: 8",
        "  output_bw: 16                 # W8A16: 8-bit activations cost text models too much"
        if text_model else "  output_bw: 8",
        f"  calibration: {{split: {calib}, samples: {min(pack.splits[calib], MAX_CALIBRATION)}}}   # never the eval split",
        *_folding(sig),
        "  seed: 0",
        "",
        f"device: {_flow(device_value)}",
        "",
        *_benchmark(device),
        "",
        "evaluation:",
        f"  promptpack: {_flow(rel(pack.path))}",
        "  split: eval",
    ]
    if req.task == "text-embedding" and "support" in pack.splits:
        lines.append("  support_split: support       # class centroids for the embeddings")
    lines += [f"  scorers: {_flow(list(pack.scorers))}", "", *_gates(req.task, labelled, device)]
    return "\n".join(lines) + "\n"


def _graph_outputs(task: str, sig: ModelSignature) -> list[str]:
    """The ONNX file's output names; a torch model's are ours to give (the export names them)."""
    if sig.kind != "onnx" and len(sig.outputs) == 1 and task.endswith("classification"):
        return ["logits"]
    return list(sig.outputs)


def _a(word: str) -> str:
    return ("an " if word[:1] in "aeiou" else "a ") + word


def _is_path(value: str) -> bool:
    return "/" in value or os.sep in value or value.endswith((".yaml", ".yml"))


def _check_text(req: InitRequest, text: str, options_model: type[BaseModel]) -> PipelineSpec:
    """The text as a PipelineSpec, its adapter options through the preset's model: a problem
    here is init's own bug or a file that moved, said as the SpecError validate would say."""
    file = str(req.out)
    doc = parse_yaml(text, file)
    base = req.out.absolute().parent
    spec = doc.validate(PipelineSpec, {"base_dir": base, "source_path": req.out, "lines": doc.lines})
    try:
        options_model.model_validate(spec.model.adapter_options, context={"base_dir": base})
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        where = render_field_path(("model", "adapter_options", *err["loc"]))
        raise SpecError(file, where, err["msg"], doc.line_of("model", "adapter_options")) from None
    return spec


def scaffold_pipeline(
    req: InitRequest, pack: PackFacts, options_model: type[BaseModel], resolve_factory: FactoryResolver | None = None,
) -> WrittenPipeline:
    """The pipeline ``req`` asks for, checked, not yet written.

    1. Read the model's inputs and outputs; fill dynamic dimensions from ``--input``.
    2. Check the pack fits the task; load the device.
    3. Render the YAML, validate it, and render it again with the AIMET config the device implies.
    """
    # 1. model
    sig = read_model(req.model, resolve_factory)
    inputs = static_inputs(sig, req.inputs)
    sig = with_torch_outputs(sig, inputs)
    allowed = typing.get_args(TensorSpec.model_fields["dtype"].annotation)
    for inp in inputs:
        if inp.dtype is not None and inp.dtype not in allowed:
            raise InputError(f"{sig.source}: input '{inp.name}' is {inp.dtype}; pipeline graph inputs are "
                             f"{', '.join(allowed)}: export the model with such inputs")
    # 2. pack and device
    wanted = PACK_TASK[req.task]
    if pack.task != wanted:
        raise InputError(f"--pack {pack.path}: {_a(pack.task)} pack; --task {req.task} needs "
                         f"{_a(wanted)} pack (edgegate pack create)")
    try:
        device = load_device(req.device)
    except DeviceFileMissing as exc:
        raise InputError(f"--device {req.device}: {exc.problem}") from None
    except UnknownNameError as exc:
        raise InputError(f"--device {req.device}: {exc.message}") from None
    # 3. render, check, render with the config
    draft = render_pipeline(req, sig, inputs, pack, device, options_model, "?")
    spec = _check_text(req, draft, options_model)
    config = aimet_config_for(spec, device)
    text = render_pipeline(req, sig, inputs, pack, device, options_model, config)
    return WrittenPipeline(req.out, spec, config, text)


def write_pipeline(
    req: InitRequest, pack: PackFacts, options_model: type[BaseModel], resolve_factory: FactoryResolver | None = None,
) -> WrittenPipeline:
    """Scaffold the pipeline and write it; an existing file only with ``force``."""
    req.check_out()
    written = scaffold_pipeline(req, pack, options_model, resolve_factory)
    atomic_write(req.out, written.text)
    return written
