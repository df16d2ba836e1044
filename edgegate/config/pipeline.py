"""The pipeline file: what to quantize, where to run it, how to evaluate and gate it.

Paths inside a pipeline file (``evaluation.promptpack``, a graph's ``torchscript`` /
``onnx``, a ``quantization.config`` .json) are kept in the model exactly as written,
so ``config_digest`` does not depend on where the checkout lives. They are resolved
against the pipeline file's directory (``PipelineSpec.base_dir``) by
``PipelineSpec.resolve_path`` and the helpers built on it: ``promptpack_path``,
``graph_path(name)`` and ``quantization_config_path``. Loading checks that each exists.

The functions that join a pipeline with its device (``load_pipeline_device``,
``aimet_config_for``, ``config_digest``) live here too, so the device module never
needs the pipeline schema.
"""

from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, ValidationInfo, field_validator, model_validator

from edgegate.artifacts import digest_json
from edgegate.config.device import (
    CpuDevice,
    DeviceFileMissing,
    DeviceSpec,
    HexagonArch,
    load_device,
)
from edgegate.config.loader import (
    FieldProblem,
    GraphName,
    NamedSpecModel,
    NonNegativeInt,
    PositiveInt,
    SpecModel,
    context_base_dir,
    load_spec_file,
    resolve_against,
)
from edgegate.errors import GateExpressionError, SpecError, UnknownNameError
from edgegate.gates import Gate, parse_gate
from edgegate.metrics import format_suggestion

AIMET_CONFIGS: tuple[str, ...] = ("default",) + tuple(
    f"htp_{a}" for a in typing.get_args(HexagonArch)
)

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_REF_RE = re.compile(rf"^{_IDENT}(\.{_IDENT})*:{_IDENT}(\.{_IDENT})*$")
_PATH_HINT = "paths are relative to the pipeline file"


def _check_ref(value: str | None) -> str | None:
    if value is not None and not _REF_RE.match(value):
        raise ValueError(f"expected 'package.module:attribute', got '{value}'")
    return value


def _check_exists(value: str, info: ValidationInfo, kind: Literal["file", "directory"]) -> str:
    """``value`` unchanged if it names an existing ``kind`` relative to the pipeline file."""
    path = resolve_against(context_base_dir(info), value)
    if not (path.is_file() if kind == "file" else path.is_dir()):
        what = f"not a {kind}" if path.exists() else f"{kind} not found"
        raise ValueError(f"{what}: {path} ({_PATH_HINT})")
    return value


class TensorSpec(SpecModel):
    name: Annotated[str, Field(min_length=1)]
    shape: Annotated[list[PositiveInt], Field(min_length=1)]
    # what the adapter feeds (token ids are int64 in most text exports; uint8 for raw pixels)
    dtype: Literal["float32", "float16", "int64", "int32", "uint8"] = "float32"


class GraphSpec(SpecModel):
    """One graph of a model; exactly one of factory / torchscript / onnx is its source."""

    factory: str | None = None
    factory_args: dict[str, Any] = Field(default_factory=dict)
    torchscript: str | None = None
    onnx: str | None = None
    inputs: Annotated[list[TensorSpec], Field(min_length=1)]
    outputs: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]

    @field_validator("factory")
    @classmethod
    def _factory_ref(cls, value: str | None) -> str | None:
        return _check_ref(value)

    @field_validator("torchscript", "onnx")
    @classmethod
    def _source_exists(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else _check_exists(value, info, "file")

    @model_validator(mode="after")
    def _one_source(self) -> GraphSpec:
        given = [k for k in ("factory", "torchscript", "onnx") if getattr(self, k) is not None]
        if len(given) != 1:
            found = " and ".join(given) if given else "none"
            raise FieldProblem(
                None, f"set exactly one of factory, torchscript, onnx (found {found})"
            )
        if "factory_args" in self.model_fields_set and self.factory is None:
            raise FieldProblem("factory_args", "only used with factory; remove it")
        names = [t.name for t in self.inputs]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise FieldProblem("inputs", f"duplicate input name '{dupes[0]}'")
        return self

    @property
    def source_kind(self) -> Literal["factory", "torchscript", "onnx"]:
        if self.factory is not None:
            return "factory"
        return "torchscript" if self.torchscript is not None else "onnx"


# The generic adapters a pipeline can name instead of a class (edgegate.packs.adapters,
# whose registry tests/test_adapters_generic.py checks against this list).
ADAPTER_PRESETS: tuple[str, ...] = (
    "image-classification", "object-detection", "text-classification", "text-embedding",
)


class ModelSpec(SpecModel):
    # a preset name (its adapter_options are checked when the adapter is built) or pkg.module:Class
    adapter: str
    adapter_options: dict[str, Any] = Field(default_factory=dict)
    graphs: Annotated[dict[GraphName, GraphSpec], Field(min_length=1)]

    @field_validator("adapter")
    @classmethod
    def _adapter_ref(cls, value: str) -> str:
        if value in ADAPTER_PRESETS:
            return value
        if ":" not in value and "." not in value:
            raise ValueError(
                f"unknown adapter preset '{value}'{format_suggestion(value, ADAPTER_PRESETS)}; "
                f"presets: {', '.join(ADAPTER_PRESETS)}, or 'package.module:Class' for your own adapter"
            )
        _check_ref(value)
        return value


class CalibrationSpec(SpecModel):
    split: str = "calibration"
    samples: PositiveInt = 32


class AdaRoundSpec(SpecModel):
    iterations: PositiveInt = 1000


class QuantizationSpec(SpecModel):
    engine: Literal["aimet"] = "aimet"
    # None: chosen from the device's arch (htp_vNN); see aimet_config_for.
    config: str | None = None
    scheme: Literal["tf_enhanced", "tf", "percentile"] = "tf_enhanced"
    param_bw: Literal[4, 8, 16] = 8
    output_bw: Literal[8, 16] = 8
    calibration: CalibrationSpec = Field(default_factory=CalibrationSpec)
    bn_fold: bool = False
    cle: bool = False
    adaround: AdaRoundSpec | None = None
    seed: NonNegativeInt = 0
    # The double run: quantize + compile once more in a fresh process (--repeats N: more) and
    # compare bytes with the run's own (metric `reproducible`).
    verify_reproducible: bool = False

    @field_validator("adaround", mode="before")
    @classmethod
    def _adaround_bool(cls, value: Any) -> Any:
        if value is False:
            return None
        if value is True:
            return {}
        return value

    @field_validator("config")
    @classmethod
    def _config_known(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or value in AIMET_CONFIGS:
            return value
        if value.endswith(".json"):
            return _check_exists(value, info, "file")
        raise ValueError(
            f"expected {', '.join(AIMET_CONFIGS)} or a path to a .json file, got '{value}'"
        )


class BenchmarkSpec(SpecModel):
    # per graph, in each benchmark process
    warmup: NonNegativeInt = 5
    repeats: PositiveInt = 50
    min_seconds: Annotated[float, Field(ge=0.0)] = 0.0
    # Fresh benchmark processes per run. One process's samples agree closely with each other
    # while the next process can sit a few percent away (placement, layout, the machine), so
    # latency significance is tested between processes; the default is what
    # bench/aa_false_alarm.py needs for <= 1% A/A false alarms and >= 95% detection of 5%.
    processes: Annotated[int, Field(ge=1, le=1000)] = 20


class EvaluationSpec(SpecModel):
    promptpack: str
    split: str = "eval"
    limit: PositiveInt | None = None
    # A split the scorers read as labelled support (e.g. nearest-centroid classes); it is
    # predicted by the same model as the eval split.
    support_split: str | None = None
    scorers: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]

    @field_validator("promptpack")
    @classmethod
    def _pack_exists(cls, value: str, info: ValidationInfo) -> str:
        return _check_exists(value, info, "directory")


class GateSpec(SpecModel):
    expr: str
    allow_host_timing: bool = False

    @model_validator(mode="after")
    def _parses(self) -> GateSpec:
        try:
            parse_gate(self.expr, allow_host_timing=self.allow_host_timing)
        except GateExpressionError as exc:
            raise ValueError(exc.message) from exc
        return self

    @property
    def gate(self) -> Gate:
        return parse_gate(self.expr, allow_host_timing=self.allow_host_timing)


def _gate_item(value: Any) -> Any:
    if isinstance(value, str):
        return {"expr": value}
    if isinstance(value, dict):
        return value
    raise ValueError(
        "expected a gate expression string or a mapping {expr: ..., allow_host_timing: ...}"
    )


class AdversarialSpec(SpecModel):
    """Differential FP32-vs-INT8 search (edgegate.run.adversarial); off when the section is absent."""

    seeds: PositiveInt = 16  # PromptPack eval samples used as seeds
    epsilon: Annotated[float, Field(gt=0.0, le=64.0)] = 8.0  # L-infinity budget, 0..255 pixel units
    steps: NonNegativeInt = 4  # gradient steps per seed
    step_size: Annotated[float, Field(gt=0.0)] = 3.0
    transforms: list[Literal["brightness", "blur", "occlusion"]] = Field(
        default_factory=lambda: ["brightness", "blur", "occlusion"]
    )
    # The search is budgeted in seeds x (steps + transforms) and seeded, so its verdict does not
    # depend on the machine's load. This is only a safety stop: a search it ends early reports
    # no rates (its gate is n/a, with the reason), never a smaller search as the whole one.
    time_budget_s: Annotated[float, Field(gt=0.0)] | None = None
    # where the INT8 side runs: its QDQ graphs on ONNX Runtime CPU (fast), or the target itself
    candidate: Literal["qdq-cpu", "target"] = "qdq-cpu"
    seed: NonNegativeInt = 0


class PipelineSpec(NamedSpecModel):
    """A pipeline file. ``source_path`` is the path as given; ``base_dir`` is its
    absolute directory, against which relative paths in the file resolve."""

    description: str | None = None
    model: ModelSpec
    quantization: QuantizationSpec = Field(default_factory=QuantizationSpec)
    device: Annotated[str, Field(min_length=1)]
    benchmark: BenchmarkSpec = Field(default_factory=BenchmarkSpec)
    evaluation: EvaluationSpec
    adversarial: AdversarialSpec | None = None
    gates: list[Annotated[GateSpec, BeforeValidator(_gate_item)]] = Field(default_factory=list)

    @property
    def promptpack_path(self) -> Path:
        return self.resolve_path(self.evaluation.promptpack)

    def graph_path(self, graph: str) -> Path | None:
        """The TorchScript / ONNX file of ``graph``; None for a factory graph."""
        spec = self.model.graphs.get(graph)
        if spec is None:
            known = list(self.model.graphs)
            raise UnknownNameError(
                f"unknown graph '{graph}'{format_suggestion(graph, known)}; "
                f"graphs: {', '.join(known)}"
            )
        rel = spec.torchscript if spec.torchscript is not None else spec.onnx
        return None if rel is None else self.resolve_path(rel)

    @property
    def quantization_config_path(self) -> Path | None:
        """The AIMET config .json when ``quantization.config`` is a path, else None."""
        cfg = self.quantization.config
        if cfg is None or cfg in AIMET_CONFIGS:
            return None
        return self.resolve_path(cfg)

    def parsed_gates(self) -> list[Gate]:
        return [g.gate for g in self.gates]



def load_pipeline(path: str | Path) -> PipelineSpec:
    """Load and validate a pipeline file (gates parsed, referenced files checked)."""
    return load_spec_file(path, PipelineSpec)


def load_pipeline_device(pipeline: PipelineSpec, *, devices_dir: Path | None = None) -> DeviceSpec:
    """Load the device a pipeline names; lookup errors name the pipeline file and line."""
    file = str(pipeline.source_path or f"pipeline '{pipeline.name}'")
    where = file
    line = pipeline.line_of("device")
    if line is not None:
        where += f":{line}"
    try:
        return load_device(pipeline.device, devices_dir=devices_dir, relative_to=pipeline.base_dir)
    except DeviceFileMissing:
        raise SpecError(
            file,
            "device",
            f"device file '{pipeline.device}' not found (relative paths are resolved against "
            "the pipeline file's directory, then the current directory)",
            line,
        ) from None
    except UnknownNameError as exc:
        raise UnknownNameError(f"{where}: device: {exc.message}") from None


def aimet_config_for(pipeline: PipelineSpec, device: DeviceSpec) -> str:
    """The AIMET quantsim config: the pipeline's explicit one (a name, or the absolute
    path of its .json), else ``htp_<arch>`` from the device; 'default' for a CPU
    device without an arch."""
    explicit = pipeline.quantization_config_path
    if explicit is not None:
        return str(explicit)
    if pipeline.quantization.config is not None:
        return pipeline.quantization.config
    if device.arch is not None:
        return f"htp_{device.arch}"
    if isinstance(device, CpuDevice):
        return "default"
    raise SpecError(
        device.source_label,
        "arch",
        f"not set for kind {device.kind}, so no AIMET config can be chosen; set arch "
        "(e.g. v66) in the device file or quantization.config in the pipeline",
    )


def config_digest(pipeline: PipelineSpec, device: DeviceSpec) -> str:
    """sha256 of the canonical JSON of both validated models (defaults applied,
    paths as written so the digest does not depend on the checkout's location)."""
    payload = {
        "pipeline": pipeline.model_dump(mode="json"),
        "device": device.model_dump(mode="json"),
    }
    return "sha256:" + digest_json(payload)
