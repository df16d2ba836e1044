"""Step 1 of a run: everything it needs, loaded and checked before anything is computed.

``load_context`` reads the pipeline, the device, the PromptPack (hashes verified), the
adapter (host glue), the scorers and the target; a problem in any of them is one
``SpecError`` naming the file, the field and the line. ``edgegate validate`` stops here.

Code a pipeline names is checked before it is called (the trust model is in the README):
graph factories are resolved and type-checked but never called here, so ``validate`` builds
no model; the adapter class is checked (a class following the Adapter protocol, from no
refused module) and then built, because checking the graphs' shapes against what it feeds
(``check_adapter_shapes``) needs the instance its options make. Importing a referenced module
runs its top-level code: that much of a named package is trusted like the pipeline itself.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from edgegate.config import (
    DeviceSpec,
    FieldPath,
    PipelineSpec,
    YamlDocument,
    aimet_config_for,
    config_digest,
    load_device,
    load_pipeline,
    load_pipeline_device,
)
from edgegate.errors import EdgeGateError, InputError, SpecError
from edgegate.packs.adapters import (
    Adapter,
    DeclaresInputs,
    GraphInfo,
    ImageAdapter,
    OptionError,
    PresetContext,
    SampleAdapter,
    TensorInfo,
    get_preset,
    preset_names,
)
from edgegate.packs.promptpack import PromptPack, load_promptpack
from edgegate.packs.scorers import Scorer, get_scorer
from edgegate.run.models import GraphSource, graph_sources, import_object, resolve_factory
from edgegate.targets import target_for_device
from edgegate.targets.base import Target
from edgegate.targets.local import CpuTarget
from edgegate.targets.qnn_runner import input_list_name_problem


@dataclass(frozen=True)
class RunContext:
    spec: PipelineSpec
    device: DeviceSpec
    pack: PromptPack
    adapter: Adapter
    graphs: list[GraphSource]
    target: Target
    baseline_target: Target  # where the FP32 baseline runs: the target, or the host CPU
    scorers: list[Scorer]
    aimet_config: str
    config_digest: str
    home: Path  # .edgegate directory: cache, reports, run outputs


def _option_error(spec: PipelineSpec, field: str | None, problem: str, line: int | None) -> SpecError:
    """``file:line: model.adapter_options.<field>: problem``; the line of the nearest
    enclosing option, else of adapter_options, else of adapter."""
    path = "model.adapter_options" + (f".{field}" if field else "")
    line = line or spec.line_of("model", "adapter_options") or spec.line_of("model", "adapter")
    return SpecError(str(spec.source_path), path, problem, line)


def _option_lines(spec: PipelineSpec, value: Any, path: FieldPath = ()) -> dict[FieldPath, int]:
    """The YAML line of every field path inside ``model.adapter_options``."""
    lines: dict[FieldPath, int] = {}
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, sub in items:
        line = spec.line_of("model", "adapter_options", *path, key)
        if line is not None:
            lines[path + (key,)] = line
        lines.update(_option_lines(spec, sub, path + (key,)))
    return lines


def _make_preset_adapter(spec: PipelineSpec, pack: PromptPack | None) -> Adapter:
    """A generic adapter: its options validated by the preset's schema, then built against
    the pipeline's graphs (and the pack's classes, read only when the preset needs them)."""
    preset = get_preset(spec.model.adapter)
    if pack is not None and pack.modality.value != preset.modality:
        raise SpecError(
            str(spec.source_path), "model.adapter",
            f"the {preset.name} adapter reads {preset.modality} samples but PromptPack '{pack.name}' is "
            f"{pack.modality.value} ({pack.task.value})",
            spec.line_of("model", "adapter"),
        )
    raw = dict(spec.model.adapter_options or {})
    try:
        options = preset.options.model_validate(raw, context={"base_dir": spec.base_dir})
    except ValidationError as exc:
        doc = YamlDocument(str(spec.source_path), raw, _option_lines(spec, raw))
        err = doc.validation_error(exc, preset.options)
        raise _option_error(spec, err.field, err.problem, err.line) from None
    graphs = {
        name: GraphInfo(name, tuple(TensorInfo(t.name, tuple(t.shape), t.dtype) for t in g.inputs), tuple(g.outputs))
        for name, g in spec.model.graphs.items()
    }

    @functools.cache
    def pack_classes() -> tuple[str, ...]:
        loaded = pack if pack is not None else load_promptpack(spec.promptpack_path, verify=False)
        return tuple(loaded.manifest.classes)

    try:
        return preset.build(options, PresetContext(graphs, spec.base_dir, pack_classes))
    except OptionError as exc:
        line = spec.line_of("model", "adapter_options", *exc.field.split(".")) if exc.field else None
        raise _option_error(spec, exc.field, exc.problem, line) from None


def adapter_class(spec: PipelineSpec) -> type:
    """The class ``model.adapter`` names, checked before it is built: a class (not a function
    or a builtin) outside the modules ``import_object`` refuses, whose methods follow the
    Adapter protocol (``predict`` or ``predict_sample``). Nothing of it is called here."""
    ref = spec.model.adapter
    try:
        obj = import_object(ref, what="model.adapter")
    except InputError as exc:
        problem = exc.message.removeprefix("model.adapter ")
        raise SpecError(str(spec.source_path), "model.adapter", problem, spec.line_of("model", "adapter")) from None
    problem = None
    if not inspect.isclass(obj):
        problem = (f"'{ref}' is a {type(obj).__name__}, not an adapter class "
                   f"(or a preset: {', '.join(preset_names())})")
    elif not issubclass(obj, (ImageAdapter, SampleAdapter)):
        problem = (f"'{ref}' is not an adapter: the class has neither predict(image, run) nor "
                   "predict_sample(sample, run) (the Adapter protocol, edgegate.packs.adapters.base)")
    if problem is not None:
        raise SpecError(str(spec.source_path), "model.adapter", problem, spec.line_of("model", "adapter"))
    return obj


def make_adapter(spec: PipelineSpec, pack: PromptPack | None = None) -> Adapter:
    """The pipeline's adapter (``model.adapter``): a preset built from ``model.adapter_options``
    (``pack``: the loaded PromptPack, else its manifest is read when the preset needs its
    classes), or a class, checked by ``adapter_class`` before it is built with them as
    keyword arguments."""
    if spec.model.adapter in preset_names():
        return _make_preset_adapter(spec, pack)
    cls = adapter_class(spec)
    try:
        adapter = cls(**dict(spec.model.adapter_options or {}))
    except (TypeError, ValueError) as exc:
        raise SpecError(
            str(spec.source_path), "model.adapter_options", str(exc), spec.line_of("model", "adapter_options")
        ) from None
    return adapter


def check_factories(spec: PipelineSpec) -> None:
    """Every graph's ``factory`` resolved and checked (``resolve_factory``) without calling
    it: ``edgegate validate`` runs no model code; what the call returns is checked when a
    run builds the model."""
    for name, g in spec.model.graphs.items():
        if g.factory is None:
            continue
        field = f"model.graphs.{name}.factory"
        try:
            resolve_factory(g.factory, what=field)
        except InputError as exc:
            problem = exc.message.removeprefix(f"{field} ")
            raise SpecError(str(spec.source_path), field, problem, spec.line_of("model", "graphs", name, "factory")) from None


def check_adapter_shapes(spec: PipelineSpec, adapter: Adapter, graphs: Sequence[GraphSource]) -> None:
    """The graphs' declared inputs must be what the adapter feeds them (when it says)."""
    if not isinstance(adapter, DeclaresInputs):
        return
    want = adapter.expected_inputs()
    names = {g.name for g in graphs}
    for role in want:
        if role not in names:
            raise SpecError(
                str(spec.source_path), "model.graphs",
                f"the adapter runs a graph named '{role}', which is not declared (declared: {', '.join(sorted(names))})",
                spec.line_of("model", "graphs"),
            )
    for g in graphs:
        for idx, (name, shape) in enumerate(zip(g.input_names, g.input_shapes)):
            exp = want.get(g.name, {}).get(name)
            if exp is not None and tuple(exp) != tuple(shape):
                raise SpecError(
                    str(spec.source_path), f"model.graphs.{g.name}.inputs[{idx}].shape",
                    f"{list(shape)} does not match what the adapter feeds: {list(exp)} "
                    f"(from adapter_options)",
                    spec.line_of("model", "graphs", g.name, "inputs", idx, "shape"),
                )


def _check_splits(spec: PipelineSpec, pack: PromptPack) -> None:
    splits_used = [
        (spec.evaluation.split, "evaluation.split"),
        (spec.quantization.calibration.split, "quantization.calibration.split"),
        (spec.evaluation.support_split, "evaluation.support_split"),
    ]
    for split, field_name in splits_used:
        if split is not None and split not in pack.splits:
            raise SpecError(
                str(spec.source_path), field_name,
                f"PromptPack '{pack.name}' has no split '{split}' (splits: {', '.join(pack.splits)})",
                spec.line_of(*field_name.split(".")),
            )


def _scorers(spec: PipelineSpec) -> list[Scorer]:
    scorers = []
    for i, name in enumerate(spec.evaluation.scorers):
        try:
            scorers.append(get_scorer(name))
        except EdgeGateError as exc:
            raise SpecError(
                str(spec.source_path), f"evaluation.scorers[{i}]", exc.message,
                spec.line_of("evaluation", "scorers", i),
            ) from None
    return scorers


def check_tensor_names(spec: PipelineSpec) -> None:
    """Every graph input's name must be one each target can feed: qnn-net-run's input list
    (boards over ssh/adb) cannot carry whitespace and knows no quoting. A pipeline is not
    tied to one device (``--device`` picks another), so this holds for every device, and is
    said now rather than when a board run fails."""
    for gname, g in spec.model.graphs.items():
        for i, t in enumerate(g.inputs):
            problem = input_list_name_problem(t.name)
            if problem is not None:
                raise SpecError(str(spec.source_path), f"model.graphs.{gname}.inputs[{i}].name", problem,
                                spec.line_of("model", "graphs", gname, "inputs", i, "name"))


def load_context(
    pipeline_path: str | Path,
    *,
    device: str | None = None,
    home: Path | None = None,
) -> RunContext:
    """Step 1: everything a run needs, checked, before anything is computed."""
    spec = load_pipeline(pipeline_path)
    if device is not None:
        dev = load_device(device, relative_to=spec.base_dir)
    else:
        dev = load_pipeline_device(spec)
    pack = load_promptpack(spec.promptpack_path, verify=True)
    _check_splits(spec, pack)
    scorers = _scorers(spec)
    graphs = graph_sources(spec)
    check_tensor_names(spec)
    check_factories(spec)
    adapter = make_adapter(spec, pack)
    check_adapter_shapes(spec, adapter, graphs)
    target = target_for_device(dev)
    # A target that runs FP32 graphs (CPU, AI Hub) runs the baseline too; the HTP emulator
    # runs quantized graphs, so the FP32 reference then runs on the host CPU.
    baseline_target = target if target.runs_fp32 else CpuTarget("host-cpu")
    return RunContext(
        spec=spec,
        device=dev,
        pack=pack,
        adapter=adapter,
        graphs=graphs,
        target=target,
        baseline_target=baseline_target,
        scorers=scorers,
        aimet_config=aimet_config_for(spec, dev),
        config_digest=config_digest(spec, dev),
        home=home or Path(os.environ.get("EDGEGATE_HOME", ".edgegate")),
    )
