"""Schemas for pipeline and device YAML files, and loaders whose errors name the
file, the field path and the YAML line.

Paths inside a pipeline file (``evaluation.promptpack``, a graph's ``torchscript`` /
``onnx``, a ``quantization.config`` .json) are kept in the model exactly as written,
so ``config_digest`` does not depend on where the checkout lives. They are resolved
against the pipeline file's directory (``PipelineSpec.base_dir``) by
``PipelineSpec.resolve_path`` and the helpers built on it: ``promptpack_path``,
``graph_path(name)`` and ``quantization_config_path``. Loading checks that each exists.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from edgegate.errors import GateExpressionError, InputError, SpecError, UnknownNameError
from edgegate.gates import Gate, parse_gate
from edgegate.metrics import format_suggestion

HexagonArch = Literal["v66", "v68", "v69", "v73", "v75", "v79", "v81"]
# libQnnHtp starts at v68: v66 (RB5) is the DSP backend, which the emulator does not model.
HtpArchNumber = Literal[68, 69, 73, 75, 79, 81]
AIMET_CONFIGS: tuple[str, ...] = ("default",) + tuple(
    f"htp_{a}" for a in typing.get_args(HexagonArch)
)

_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
_GRAPH_PATTERN = r"^[a-z][a-z0-9_]*$"
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_REF_RE = re.compile(rf"^{_IDENT}(\.{_IDENT})*:{_IDENT}(\.{_IDENT})*$")

Name = Annotated[str, Field(pattern=_NAME_PATTERN)]
GraphName = Annotated[str, Field(pattern=_GRAPH_PATTERN)]
PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]

_PATH_HINT = "paths are relative to the pipeline file"
_PATTERN_HINTS = {
    _NAME_PATTERN: "lower-case letters, digits, '-' and '_', starting with a letter or digit",
    _GRAPH_PATTERN: "lower-case letters, digits and '_', starting with a letter",
}


class _FieldProblem(ValueError):
    """A model-level check that belongs to one field: the loader appends ``field``
    to the error's location so the message names it (and its line)."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field


class _Spec(BaseModel):
    """A schema loaded from a file: it remembers the file, its directory and each field's
    YAML line (from the loader's validation context), so later checks can name them."""

    # strict: YAML already types its scalars; "8" for an int is a mistake, not a hint.
    model_config = ConfigDict(extra="forbid", strict=True)

    _source_path: Path | None = PrivateAttr(default=None)
    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)
    _lines: dict[tuple[str | int, ...], int] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: Any, /) -> None:
        ctx = context if isinstance(context, dict) else {}
        if "source_path" in ctx:
            self._source_path = Path(ctx["source_path"])
        if "base_dir" in ctx:
            self._base_dir = Path(ctx["base_dir"])
        self._lines = dict(ctx.get("lines", {}))

    @property
    def source_path(self) -> Path | None:
        """The file as the caller named it; None for a model built from a dict."""
        return self._source_path

    @property
    def base_dir(self) -> Path:
        """The file's absolute directory, against which relative paths in it resolve."""
        return self._base_dir

    def resolve_path(self, value: str) -> Path:
        """Absolute, normalised path of ``value`` relative to the file's directory."""
        return _join(self._base_dir, value)

    def line_of(self, *field: str | int) -> int | None:
        """YAML line of a field path, e.g. ``line_of("device")``; None when unknown."""
        return self._lines.get(tuple(field))

    def error(self, field_path: tuple[str | int, ...], problem: str) -> SpecError:
        """A SpecError naming this file, the field path and its line."""
        name = getattr(self, "name", None)
        return SpecError(
            str(self._source_path or name), _render(tuple(field_path)) or None, problem,
            self.line_of(*field_path),
        )


def _context_base_dir(info: ValidationInfo) -> Path:
    ctx = info.context or {}
    base = ctx.get("base_dir")
    return Path(base) if base is not None else Path.cwd()


def _join(base: Path, value: str) -> Path:
    return Path(os.path.normpath(base / value))


def _check_ref(value: str | None) -> str | None:
    if value is not None and not _REF_RE.match(value):
        raise ValueError(f"expected 'package.module:attribute', got '{value}'")
    return value


def _check_file(value: str | None, info: ValidationInfo) -> str | None:
    if value is None:
        return None
    path = _join(_context_base_dir(info), value)
    if not path.is_file():
        what = "not a file" if path.exists() else "file not found"
        raise ValueError(f"{what}: {path} ({_PATH_HINT})")
    return value


# --------------------------------------------------------------------------- pipeline


class TensorSpec(_Spec):
    name: Annotated[str, Field(min_length=1)]
    shape: Annotated[list[PositiveInt], Field(min_length=1)]
    dtype: Literal["float32"] = "float32"


class GraphSpec(_Spec):
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
        return _check_file(value, info)

    @model_validator(mode="after")
    def _one_source(self) -> GraphSpec:
        given = [k for k in ("factory", "torchscript", "onnx") if getattr(self, k) is not None]
        if len(given) != 1:
            found = " and ".join(given) if given else "none"
            raise _FieldProblem(
                None, f"set exactly one of factory, torchscript, onnx (found {found})"
            )
        if "factory_args" in self.model_fields_set and self.factory is None:
            raise _FieldProblem("factory_args", "only used with factory; remove it")
        names = [t.name for t in self.inputs]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise _FieldProblem("inputs", f"duplicate input name '{dupes[0]}'")
        return self

    @property
    def source_kind(self) -> Literal["factory", "torchscript", "onnx"]:
        if self.factory is not None:
            return "factory"
        return "torchscript" if self.torchscript is not None else "onnx"


class ModelSpec(_Spec):
    adapter: str
    adapter_options: dict[str, Any] = Field(default_factory=dict)
    graphs: Annotated[dict[GraphName, GraphSpec], Field(min_length=1)]

    @field_validator("adapter")
    @classmethod
    def _adapter_ref(cls, value: str) -> str:
        _check_ref(value)
        return value


class CalibrationSpec(_Spec):
    split: str = "calibration"
    samples: PositiveInt = 32


class AdaRoundSpec(_Spec):
    iterations: PositiveInt = 1000


class QuantizationSpec(_Spec):
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
    # Quantize + compile twice more in fresh processes and compare bytes (metric `reproducible`).
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
            return _check_file(value, info)
        raise ValueError(
            f"expected {', '.join(AIMET_CONFIGS)} or a path to a .json file, got '{value}'"
        )


class BenchmarkSpec(_Spec):
    # per graph, in each benchmark process
    warmup: NonNegativeInt = 5
    repeats: PositiveInt = 50
    min_seconds: Annotated[float, Field(ge=0.0)] = 0.0
    # Fresh benchmark processes per run. One process's samples agree closely with each other
    # while the next process can sit a few percent away (placement, layout, the machine), so
    # latency significance is tested between processes; the default is what
    # bench/aa_false_alarm.py needs for <= 1% A/A false alarms and >= 95% detection of 5%.
    processes: Annotated[int, Field(ge=1, le=1000)] = 20


class EvaluationSpec(_Spec):
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
        path = _join(_context_base_dir(info), value)
        if not path.is_dir():
            what = "not a directory" if path.exists() else "directory not found"
            raise ValueError(f"{what}: {path} ({_PATH_HINT})")
        return value


class GateSpec(_Spec):
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


class AdversarialSpec(_Spec):
    """Differential FP32-vs-INT8 search (edgegate.run.adversarial); off when the section is absent."""

    seeds: PositiveInt = 16  # PromptPack eval samples used as seeds
    epsilon: Annotated[float, Field(gt=0.0, le=64.0)] = 8.0  # L-infinity budget, 0..255 pixel units
    steps: NonNegativeInt = 4  # gradient steps per seed
    step_size: Annotated[float, Field(gt=0.0)] = 3.0
    transforms: list[Literal["brightness", "blur", "occlusion"]] = Field(
        default_factory=lambda: ["brightness", "blur", "occlusion"]
    )
    time_budget_s: Annotated[float, Field(gt=0.0)] = 120.0
    # where the INT8 side runs: its QDQ graphs on ONNX Runtime CPU (fast), or the target itself
    candidate: Literal["qdq-cpu", "target"] = "qdq-cpu"
    seed: NonNegativeInt = 0


class PipelineSpec(_Spec):
    """A pipeline file. ``source_path`` is the path as given; ``base_dir`` is its
    absolute directory, against which relative paths in the file resolve."""

    name: Name
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


# --------------------------------------------------------------------------- devices


def _int_soc_to_str(value: Any) -> Any:
    # QNN SoC ids are numbers; YAML reads `soc_model: 30` as an int.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


SocModel = Annotated[str | None, BeforeValidator(_int_soc_to_str)]


class _DeviceBase(_Spec):
    name: Name
    kind: str
    description: str | None = None
    tags: list[str] = Field(default_factory=list)
    chipset: str | None = None
    arch: HexagonArch | None = None


class CpuDevice(_DeviceBase):
    """ONNX Runtime on the host CPU."""

    kind: Literal["cpu"]
    intra_op_threads: PositiveInt | None = None


class QnnEmulatorDevice(_DeviceBase):
    """The QNN HTP emulator in onnxruntime-qnn on the host: real QNN compilation, op
    placement and HTP numerics, host timings."""

    kind: Literal["qnn-emulator"]
    backend: Literal["htp"] = "htp"
    soc_model: SocModel = None
    htp_arch: HtpArchNumber | None = None
    performance_mode: Literal[
        "burst",
        "sustained_high_performance",
        "high_performance",
        "balanced",
        "default",
        "low_balanced",
        "power_saver",
        "low_power_saver",
        "high_power_saver",
        "extreme_power_saver",
    ] = "burst"
    allow_cpu_fallback: bool = False

    @model_validator(mode="after")
    def _target_named(self) -> QnnEmulatorDevice:
        if self.arch is None:
            raise _FieldProblem(
                "arch", "field required for kind qnn-emulator (it picks the AIMET config, e.g. v66)"
            )
        if self.soc_model is None and self.htp_arch is None:
            raise _FieldProblem("htp_arch", "set htp_arch (e.g. 68) or soc_model, or both")
        # arch may be older than htp_arch: an RB5-class (v66) device quantizes with AIMET's
        # htp_v66 config (per-tensor weights) and compiles on the oldest HTP, v68.
        if self.htp_arch is not None and int(self.arch[1:]) > self.htp_arch:
            raise _FieldProblem(
                "htp_arch",
                f"{self.htp_arch} is older than arch {self.arch}; the emulated HTP must be at least the arch",
            )
        return self


class AihubDevice(_DeviceBase):
    """A device on Qualcomm AI Hub (filled in by the AI Hub target)."""

    kind: Literal["aihub"]
    device: str | None = None
    attributes: list[str] = Field(default_factory=list)
    target_runtime: (
        Literal["qnn_context_binary", "precompiled_qnn_onnx", "tflite", "onnx"] | None
    ) = None
    compile_options: str = ""
    profile_options: str = ""
    inference_options: str = ""
    # The INT8 candidate goes up as AIMET's export (a .aimet directory: ONNX + .encodings) or
    # as the QDQ ONNX; the FP32 baseline always goes up as its ONNX.
    candidate_format: Literal["aimet", "qdq"] = "aimet"
    # Waiting on jobs: status polls, how long one job may take, retries of transient failures.
    poll_interval_s: Annotated[float, Field(gt=0)] = 10.0
    job_timeout_s: Annotated[float, Field(gt=0)] = 3600.0
    max_retries: NonNegativeInt = 5

    @model_validator(mode="after")
    def _device_named(self) -> AihubDevice:
        if self.device is None and not self.attributes:
            raise _FieldProblem(
                "device",
                "set device (an AI Hub device name) or attributes "
                "(e.g. chipset:qualcomm-qcs8250-proxy)",
            )
        return self


# QNN SDK platform directories (bin/<triple>, lib/<triple>): Android, the RB5's Linux images
# (Yocto gcc9.3 / gcc11.2, Ubuntu gcc9.4) and an x86_64 Linux host acting as the board.
QnnTargetTriple = Literal[
    "aarch64-android",
    "aarch64-oe-linux-gcc9.3",
    "aarch64-oe-linux-gcc11.2",
    "aarch64-ubuntu-gcc9.4",
    "x86_64-linux-clang",
]
PositiveFloat = Annotated[float, Field(gt=0.0)]


class _QnnBoardDevice(_DeviceBase):
    """A board or phone running the QNN SDK's qnn-net-run (edgegate.targets.qnn_remote)."""

    workdir: str  # on the board; each run works in a fresh directory below it and removes it
    qnn_sdk_device: str  # on the board: bin/<triple>/qnn-net-run, lib/<triple>/, lib/hexagon-vNN/
    qnn_sdk_host: str | None = None  # on this host (default $QNN_SDK_ROOT): prepares models
    target_triple: QnnTargetTriple
    # dsp: Hexagon v66 (RB5: libQnnDsp.so + V66 stub/skel); htp: v68 and newer (libQnnHtp.so)
    backend: Literal["dsp", "htp"]
    htp_arch: HtpArchNumber | None = None  # HTP a context binary is compiled for (default: arch)
    soc_model: SocModel = None
    push_runtime: bool = False  # push qnn-net-run and the backend's libraries from the host SDK
    perf_profile: (
        Literal["burst", "sustained_high_performance", "high_performance", "balanced", "default",
                "low_balanced", "power_saver", "low_power_saver", "high_power_saver",
                "extreme_power_saver", "system_settings"] | None
    ) = None
    env: dict[str, str] = Field(default_factory=dict)  # extra environment for qnn-net-run
    connect_timeout_s: PositiveFloat = 10.0
    command_timeout_s: PositiveFloat = 600.0
    reconnect_attempts: NonNegativeInt = 3
    max_rounds: PositiveInt = 10  # qnn-net-run processes per graph; each gives one latency sample
    keep_remote_files: bool = False

    @model_validator(mode="after")
    def _backend_matches_arch(self) -> _QnnBoardDevice:
        if self.arch is None:
            return self  # the board target asks for it (stub/skel libraries, AIMET config)
        number = int(self.arch[1:])
        if self.backend == "dsp" and number != 66:
            raise _FieldProblem(
                "backend", f"dsp is the QNN backend of Hexagon v66 (RB5); arch {self.arch} uses htp"
            )
        if self.backend == "htp" and number < 68:
            raise _FieldProblem(
                "backend", f"arch {self.arch} has no HTP: use backend dsp (libQnnDsp.so, as on RB5)"
            )
        if self.htp_arch is not None:
            if self.backend != "htp":
                raise _FieldProblem("htp_arch", "only used with backend htp; remove it")
            if self.htp_arch < number:
                raise _FieldProblem("htp_arch", f"{self.htp_arch} is older than arch {self.arch}")
        return self


class SshDevice(_QnnBoardDevice):
    """A board reached over ssh (paramiko), running the QNN SDK."""

    kind: Literal["ssh"]
    host: str
    port: Annotated[int, Field(ge=1, le=65535)] = 22
    user: str
    key_file: str | None = None
    known_hosts: str | None = None  # default ~/.ssh/known_hosts; host keys are always verified
    # Pin an unknown host's key by its OpenSSH fingerprint instead of adding it to known_hosts.
    trust_host_key: Annotated[str, Field(pattern=r"^SHA256:[A-Za-z0-9+/]{43}$")] | None = None


class AdbDevice(_QnnBoardDevice):
    """A board or phone reached over adb (adbutils, through an adb server), running the QNN SDK."""

    kind: Literal["adb"]
    serial: str | None = None
    adb_host: str = "127.0.0.1"
    adb_port: Annotated[int, Field(ge=1, le=65535)] = 5037


DeviceSpec = Annotated[
    Union[CpuDevice, QnnEmulatorDevice, AihubDevice, SshDevice, AdbDevice],
    Field(discriminator="kind"),
]
DEVICE_KINDS: dict[str, type[_DeviceBase]] = {
    "cpu": CpuDevice,
    "qnn-emulator": QnnEmulatorDevice,
    "aihub": AihubDevice,
    "ssh": SshDevice,
    "adb": AdbDevice,
}


# --------------------------------------------------------------------------- loading

_Loc = tuple[Union[str, int], ...]


class _DeviceFileMissing(SpecError):
    """A device given as a path that does not exist (re-worded when it came from a pipeline)."""


def _display(path: Path) -> str:
    """``path`` relative to the cwd when it lies below it, else absolute."""
    try:
        return str(path.absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(path.absolute())


def _render(parts: _Loc) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _collect_lines(node: yaml.Node, path: _Loc, out: dict[_Loc, int], file: str) -> None:
    """Map each field path to the YAML line of its key (or of its list item)."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
            sub = path + (key,)
            line = key_node.start_mark.line + 1
            if sub in out:
                raise SpecError(
                    file, _render(sub), f"duplicate key '{key}' (first at line {out[sub]})", line
                )
            out[sub] = line
            _collect_lines(value_node, sub, out, file)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            sub = path + (i,)
            out[sub] = item.start_mark.line + 1
            _collect_lines(item, sub, out, file)


def _read_yaml(path: Path, file: str) -> tuple[Any, dict[_Loc, int]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(file, None, "file not found") from None
    except IsADirectoryError:
        raise SpecError(file, None, "is a directory, expected a YAML file") from None
    except UnicodeDecodeError:
        raise SpecError(file, None, "not UTF-8 text") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = None if node is None else loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "syntax error"
        if exc.problem and exc.context and exc.context_mark is not None:
            problem += f" ({exc.context} at line {exc.context_mark.line + 1})"
        raise SpecError(
            file, None, f"invalid YAML: {problem}", None if mark is None else mark.line + 1
        ) from None
    except yaml.YAMLError as exc:
        raise SpecError(file, None, f"invalid YAML: {exc}") from None
    finally:
        loader.dispose()
    lines: dict[_Loc, int] = {}
    if node is not None:
        _collect_lines(node, (), lines, file)
    if data is None:
        raise SpecError(file, None, "file is empty; expected a mapping of fields")
    if not isinstance(data, dict):
        raise SpecError(file, None, f"expected a mapping of fields, got {type(data).__name__}", 1)
    return data, lines


def _path_from_loc(data: Any, loc: _Loc) -> list[str | int]:
    """Turn a pydantic ``loc`` into a path through the YAML data, dropping the
    union/validator tags pydantic inserts (they are not keys in the file)."""
    parts: list[str | int] = []
    current = data
    for i, el in enumerate(loc):
        if isinstance(el, str) and "[" in el:  # '[key]', 'function-after[...]'
            continue
        if isinstance(current, dict) and el in current:
            parts.append(el)
            current = current[el]
        elif isinstance(current, list) and isinstance(el, int) and 0 <= el < len(current):
            parts.append(el)
            current = current[el]
        elif i == len(loc) - 1 and isinstance(el, str):
            parts.append(el)  # a missing field
            current = None
    return parts


def _unwrap(tp: Any) -> Any:
    """Strip Annotated, and Optional[Model] down to Model."""
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin is Union or origin is types.UnionType:
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _model_at(root: type[BaseModel], parts: list[str | int]) -> type[BaseModel] | None:
    """The model class that validates the mapping at ``parts`` (for 'allowed fields')."""
    tp: Any = root
    for part in parts:
        tp = _unwrap(tp)
        origin = typing.get_origin(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel) and isinstance(part, str):
            field = tp.model_fields.get(part)
            if field is None:
                return None
            tp = field.annotation
        elif origin is list and isinstance(part, int):
            tp = typing.get_args(tp)[0]
        elif origin is dict and isinstance(part, str):
            tp = typing.get_args(tp)[1]
        else:
            return None
    tp = _unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _problem(err: dict[str, Any], parts: list[str | int], root: type[BaseModel]) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        model = _model_at(root, parts[:-1])
        allowed = f" (allowed: {', '.join(model.model_fields)})" if model is not None else ""
        return f"unknown field '{parts[-1]}'{allowed}"
    if kind == "missing":
        return "field required"
    if kind == "string_pattern_mismatch":
        pattern = ctx.get("pattern")
        hint = _PATTERN_HINTS.get(str(pattern))
        return f"'{err['input']}' does not match {pattern}" + (f" (use {hint})" if hint else "")
    if kind == "too_short":
        n = ctx.get("min_length", 1)
        return f"needs at least {n} item{'s' if n != 1 else ''}, got {ctx.get('actual_length', 0)}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"input should be a mapping (key: value), got {_yaml_type(err['input'])}"
    if kind == "list_type":
        return f"input should be a list, got {_yaml_type(err['input'])}"
    msg: str = err["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    if msg[:1].isupper() and msg[1:2].islower():
        msg = msg[0].lower() + msg[1:]
    return msg


def _yaml_type(value: Any) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
             int: "an integer", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _validation_error(
    exc: ValidationError, file: str, data: Any, lines: dict[_Loc, int], root: type[BaseModel]
) -> SpecError:
    err = exc.errors(include_url=False)[0]
    parts = _path_from_loc(data, err["loc"])
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, _FieldProblem) and cause.field:
        parts.append(cause.field)
    problem = _problem(dict(err), parts, root)
    line = None
    for n in range(len(parts), 0, -1):
        line = lines.get(tuple(parts[:n]))
        if line is not None:
            break
    return SpecError(file, _render(tuple(parts)) or None, problem, line)


_M = TypeVar("_M", bound=BaseModel)


def load_spec_file(path: str | Path, model: type[_M]) -> _M:
    """Read a YAML file into `model`, paths in it relative to the file; a problem is one
    SpecError naming the file, line and field."""
    file = str(path)
    source = Path(path)
    data, lines = _read_yaml(source, file)
    context = {"base_dir": source.absolute().parent, "source_path": source, "lines": lines}
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise _validation_error(exc, file, data, lines, model) from None


def load_pipeline(path: str | Path) -> PipelineSpec:
    """Load and validate a pipeline file (gates parsed, referenced files checked)."""
    return load_spec_file(path, PipelineSpec)


def _devices_dirs(devices_dir: Path | None, relative_to: Path | None) -> list[Path]:
    """Where device names are looked up, in order: an explicit directory, else
    $EDGEGATE_DEVICES_DIR, else every ``devices/`` walking up from ``relative_to`` and then
    from the cwd (so a fixture's own devices/ does not hide the project's)."""
    if devices_dir is not None:
        if not Path(devices_dir).is_dir():
            raise InputError(f"devices directory {devices_dir} does not exist")
        return [Path(devices_dir)]
    env = os.environ.get("EDGEGATE_DEVICES_DIR")
    if env:
        if not Path(env).is_dir():
            raise InputError(f"EDGEGATE_DEVICES_DIR={env} is not a directory; fix or unset it")
        return [Path(env)]
    starts = [Path(relative_to).absolute()] if relative_to is not None else []
    starts.append(Path.cwd())
    found: list[Path] = []
    for start in starts:
        for d in (start, *start.parents):
            if (d / "devices").is_dir() and (d / "devices") not in found:
                found.append(d / "devices")
    return found


def _devices_dir(devices_dir: Path | None, relative_to: Path | None) -> Path | None:
    """The first directory device names are looked up in (see _devices_dirs)."""
    dirs = _devices_dirs(devices_dir, relative_to)
    return dirs[0] if dirs else None


def _is_device_path(value: str) -> bool:
    return "/" in value or os.sep in value or value.endswith((".yaml", ".yml"))


def _locate_device(
    value: str, devices_dir: Path | None, relative_to: Path | None
) -> tuple[Path, bool]:
    """(file, loaded_by_name)."""
    if _is_device_path(value):
        given = Path(value)
        candidates = [given] if given.is_absolute() else []
        if not given.is_absolute():
            if relative_to is not None:
                candidates.append(Path(relative_to) / given)
            candidates.append(Path.cwd() / given)
        for cand in candidates:
            if cand.is_file():
                return cand, False
        where = f" (looked in {relative_to} and the current directory)" if relative_to else ""
        raise _DeviceFileMissing(value, None, f"file not found{where}")
    dirs = _devices_dirs(devices_dir, relative_to)
    if not dirs:
        raise UnknownNameError(
            f"unknown device '{value}': no devices/ directory found; set EDGEGATE_DEVICES_DIR "
            "or give a path to a device .yaml"
        )
    for ddir in dirs:
        for ext in (".yaml", ".yml"):
            cand = ddir / f"{value}{ext}"
            if cand.is_file():
                return cand, True
    known = sorted({p.stem for d in dirs for p in d.iterdir() if p.suffix in (".yaml", ".yml")})
    hint = format_suggestion(value, known)
    raise UnknownNameError(
        f"unknown device '{value}'{hint}; known: {', '.join(known) if known else '(none)'}"
    )


def _load_device_file(path: Path, expected_name: str | None) -> DeviceSpec:
    file = _display(path)
    data, lines = _read_yaml(path, file)
    kinds = list(DEVICE_KINDS)
    quoted = ", ".join(f"'{k}'" for k in kinds[:-1]) + f" or '{kinds[-1]}'"
    if "kind" not in data:
        raise SpecError(file, "kind", f"field required ({quoted})")
    kind = data["kind"]
    if not isinstance(kind, str) or kind not in DEVICE_KINDS:
        hint = format_suggestion(kind, kinds) if isinstance(kind, str) else ""
        raise SpecError(file, "kind", f"input should be {quoted}{hint}", lines.get(("kind",)))
    cls = DEVICE_KINDS[kind]
    try:
        device = cls.model_validate(data, context={"source_path": Path(file)})
    except ValidationError as exc:
        raise _validation_error(exc, file, data, lines, cls) from None
    if expected_name is not None and device.name != expected_name:
        raise SpecError(
            file,
            "name",
            f"'{device.name}' does not match the file name '{path.name}'; "
            f"rename one of them (a device loaded by name must be named after its file)",
            lines.get(("name",)),
        )
    return typing.cast(DeviceSpec, device)


def load_device(
    name_or_path: str,
    *,
    devices_dir: Path | None = None,
    relative_to: Path | None = None,
) -> DeviceSpec:
    """Load a device by name (``<devices_dir>/<name>.yaml``) or by path.

    A value containing '/' or ending in .yaml/.yml is a path, tried against
    ``relative_to`` and then the cwd. ``devices_dir`` defaults to
    $EDGEGATE_DEVICES_DIR, else the nearest ``devices/`` walking up from
    ``relative_to``, then from the cwd.
    """
    path, by_name = _locate_device(name_or_path, devices_dir, relative_to)
    return _load_device_file(path, name_or_path if by_name else None)


def load_pipeline_device(pipeline: PipelineSpec, *, devices_dir: Path | None = None) -> DeviceSpec:
    """Load the device a pipeline names; lookup errors name the pipeline file and line."""
    file = str(pipeline.source_path or f"pipeline '{pipeline.name}'")
    where = file
    line = pipeline.line_of("device")
    if line is not None:
        where += f":{line}"
    try:
        return load_device(pipeline.device, devices_dir=devices_dir, relative_to=pipeline.base_dir)
    except _DeviceFileMissing:
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
        str(device.source_path or device.name),
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
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


# Public names for the fleet file's schema, which shares the spec machinery.
SpecModel = _Spec
devices_dirs = _devices_dirs
