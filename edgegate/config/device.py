"""Device files: one schema per way of reaching hardware (``kind``), and the lookup of a
device by name (``devices/<name>.yaml``) or by path."""

from __future__ import annotations

import os
import re
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from edgegate.config.loader import (
    FieldProblem,
    NamedSpecModel,
    NonNegativeInt,
    PositiveInt,
    display_path,
    read_yaml,
)
from edgegate.errors import InputError, SpecError, UnknownNameError
from edgegate.metrics import format_suggestion
from edgegate.safe_load import excerpt

HexagonArch = Literal["v66", "v68", "v69", "v73", "v75", "v79", "v81"]
# libQnnHtp starts at v68: v66 (RB5) is the DSP backend, which the emulator does not model.
HtpArchNumber = Literal[68, 69, 73, 75, 79, 81]


# QNN's SoC ids (Qnn_SocModel_t in the QNN SDK's QnnTypes.h; 88 from the QAIRT 2.45 docs):
# the value of onnxruntime-qnn's `soc_model` provider option, of a QNN HTP config's
# `soc_id` and of qnn-context-binary-generator's --soc_model. 0 (UNKNOWN) means "not set",
# which a device file says with null.
QNN_SOC_MODELS: dict[int, str] = {
    1: "SDM845", 2: "SDM835", 3: "SDM821", 4: "SDM820", 5: "SDM801", 6: "SDM670", 7: "SDM660",
    8: "SDM652", 9: "SDM636", 10: "SDM630", 11: "SDM625", 12: "SDM855", 13: "SDM710",
    15: "SDM632", 16: "SM6150", 17: "SM7150", 18: "QCS405", 19: "SM6125", 20: "QCS403",
    21: "SDM865", 23: "IPQ6018", 24: "IPQ6028", 25: "SM7250", 26: "SA8195", 27: "SM6250",
    28: "SM4250", 29: "SM6350", 30: "SM8350", 31: "SM4350", 32: "SM7350", 33: "QCS410",
    34: "SM8325", 35: "SM7325", 36: "SM8450", 37: "SC8280X", 38: "SM7315", 39: "SA8295",
    40: "SM6225", 41: "SM7450", 42: "SM8475", 43: "SM8550", 45: "SXR1230P", 46: "SSG2115P",
    47: "STP6225P", 48: "QCS6125", 49: "QRB4210", 50: "SM6450", 51: "QCS7230", 52: "SA8255",
    53: "SXR2230P", 54: "SM7475", 55: "SM4375", 56: "QCM4325", 57: "SM8650", 58: "SSG2125P",
    59: "SM4450", 60: "SC8380XP", 61: "SM7435", 62: "SA8540", 63: "AIC100", 64: "SM7550",
    65: "SM6450Q", 66: "QCS8550", 67: "SA8620P", 68: "SM8635", 69: "SM8750", 70: "SM7675",
    71: "SM4635", 72: "SA8797", 73: "SM7635", 74: "SM6650", 75: "SXR2330P", 76: "SM6475",
    77: "QCS9100", 78: "QCM6690", 79: "IPQ9574", 80: "IPQ5404", 81: "IPQ5424", 82: "QCS8300",
    83: "QCS2290", 84: "SA525M", 85: "SM8735", 86: "SM7750", 87: "SM8850", 88: "SC8480XP",
}


def _known_soc_model(value: Any) -> Any:
    """A QNN SoC id (``43`` or ``"43"``) as its decimal string; anything else is an error
    naming the ids (and the id of a SoC given by name, e.g. SM8550 -> 43)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        # ValueError, not TypeError: pydantic turns only ValueError into a field error
        raise ValueError(  # noqa: TRY004
            f"expected a QNN SoC id (a number such as 43 for SM8550), got {type(value).__name__}")
    text = str(value).strip()
    if text.isascii() and text.isdigit() and len(text) <= 4 and int(text) in QNN_SOC_MODELS:
        return str(int(text))
    by_name = {name: soc for soc, name in QNN_SOC_MODELS.items()}
    named = by_name.get(text.upper()) if len(text) <= 16 else None
    if named is not None:
        raise ValueError(f"'{text}' is a SoC name; soc_model takes its QNN id: {named}")
    if text in ("0", "00"):
        raise ValueError("0 is QNN's 'unknown SoC'; leave soc_model out (null) instead")
    examples = ", ".join(f"{soc} ({QNN_SOC_MODELS[soc]})" for soc in (30, 36, 43, 57, 69))
    raise ValueError(
        f"'{excerpt(text, 40)}' is not a QNN SoC id; known ids include {examples} "
        "(the full list: QNN_SOC_MODELS in edgegate/config/device.py, from QnnTypes.h)"
    )


SocModel = Annotated[str | None, BeforeValidator(_known_soc_model)]


def _text_of(pattern: str, what: str) -> AfterValidator:
    """A check that a free-text field which reaches a tool (a remote shell, qnn-net-run's
    input list, an AI Hub option string) holds only what that tool reads safely."""
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"'{excerpt(value, 60)}' is not {what}")
        return value

    return AfterValidator(check)


# On the board, inside shell commands (quoted) and qnn-net-run's input list (written so that
# spaces and commas survive, targets/qnn_runner.py): an absolute POSIX path without quotes or
# other characters a shell reads.
RemotePath = Annotated[str, _text_of(r"/[A-Za-z0-9._+@%,/ -]*", "an absolute path of letters, digits, spaces and ._+@%,-/")]
EnvName = Annotated[str, _text_of(r"[A-Za-z_][A-Za-z0-9_]*", "an environment variable name")]
EnvValue = Annotated[str, _text_of(r"[^\x00-\x1f\x7f]{0,4096}", "a one-line value of at most 4096 characters")]
HostName = Annotated[str, _text_of(r"[A-Za-z0-9_.:\[\]][A-Za-z0-9_.:\[\]-]{0,252}", "a host name or IP address")]
UserName = Annotated[str, _text_of(r"[A-Za-z0-9_.][A-Za-z0-9_.-]{0,63}", "a user name")]
AdbSerial = Annotated[str, _text_of(r"[A-Za-z0-9._:-]{1,128}", "an adb serial (as `adb devices` lists it)")]
# AI Hub job options: one line of --flag value pairs, as on the command line of its client.
ToolOptions = Annotated[str, _text_of(r"[^\x00-\x1f\x7f]{0,2000}", "one line of options of at most 2000 characters")]


class DeviceBase(NamedSpecModel):
    """What every device file holds, whatever its kind."""

    kind: str
    description: str | None = None
    tags: list[str] = Field(default_factory=list)
    chipset: str | None = None
    arch: HexagonArch | None = None


class CpuDevice(DeviceBase):
    """ONNX Runtime on the host CPU."""

    kind: Literal["cpu"]
    intra_op_threads: PositiveInt | None = None


class QnnEmulatorDevice(DeviceBase):
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
            raise FieldProblem(
                "arch", "field required for kind qnn-emulator (it picks the AIMET config, e.g. v66)"
            )
        if self.soc_model is None and self.htp_arch is None:
            raise FieldProblem("htp_arch", "set htp_arch (e.g. 68) or soc_model, or both")
        # arch may be older than htp_arch: an RB5-class (v66) device quantizes with AIMET's
        # htp_v66 config (per-tensor weights) and compiles on the oldest HTP, v68.
        if self.htp_arch is not None and int(self.arch[1:]) > self.htp_arch:
            raise FieldProblem(
                "htp_arch",
                f"{self.htp_arch} is older than arch {self.arch}; the emulated HTP must be at least the arch",
            )
        return self


class AihubDevice(DeviceBase):
    """A device on Qualcomm AI Hub (filled in by the AI Hub target)."""

    kind: Literal["aihub"]
    device: str | None = None
    attributes: list[str] = Field(default_factory=list)
    target_runtime: (
        Literal["qnn_context_binary", "precompiled_qnn_onnx", "tflite", "onnx"] | None
    ) = None
    compile_options: ToolOptions = ""
    profile_options: ToolOptions = ""
    inference_options: ToolOptions = ""
    # The INT8 candidate goes up as AIMET's export (a .aimet directory: ONNX + .encodings) or
    # as the QDQ ONNX; the FP32 baseline always goes up as its ONNX.
    candidate_format: Literal["aimet", "qdq"] = "aimet"
    # The QAIRT (Qualcomm AI Runtime) every compile, profile and inference job runs, passed as
    # --qairt_version: a version AI Hub lists (get_frameworks), or "default" / "latest", which
    # AI Hub resolves (recorded as resolved; compile jobs are then never reused). Pinned by
    # default so that a golden and a candidate compare one toolchain: 2.45 is the QAIRT of
    # ai-hub-models 0.56-0.58's release assets (tool_versions qairt 2.45.0.260326154327).
    qairt_version: Annotated[str, Field(pattern=r"^(latest|default|v?\d+\.\d+[0-9A-Za-z._]*)$")] = "2.45"
    # A profile that places a layer of a quantized graph on CPU or GPU fails the run unless true.
    allow_cpu_fallback: bool = False
    # Waiting on jobs: status polls, how long one job may take, retries of transient failures.
    poll_interval_s: Annotated[float, Field(gt=0)] = 10.0
    job_timeout_s: Annotated[float, Field(gt=0)] = 3600.0
    max_retries: NonNegativeInt = 5
    # 429/503 answers wait out Retry-After up to this long per call (the client's 10 minutes).
    rate_limit_budget_s: Annotated[float, Field(gt=0)] = 600.0
    # FAILED jobs whose failure type is transient (CLOUD_THROTTLED, RUNTIME_INTERNAL_SERVICE_BUSY,
    # RUNTIME_TIMEOUT, ...) are submitted again up to this many times per job.
    transient_resubmits: NonNegativeInt = 1

    @model_validator(mode="after")
    def _device_named(self) -> AihubDevice:
        if self.device is None and not self.attributes:
            raise FieldProblem(
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


class _QnnBoardDevice(DeviceBase):
    """A board or phone running the QNN SDK's qnn-net-run (edgegate.targets.qnn_remote)."""

    workdir: RemotePath  # on the board; each run works in a fresh directory below it and removes it
    qnn_sdk_device: RemotePath  # on the board: bin/<triple>/qnn-net-run, lib/<triple>/, lib/hexagon-vNN/
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
    env: dict[EnvName, EnvValue] = Field(default_factory=dict)  # extra environment for qnn-net-run
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
            raise FieldProblem(
                "backend", f"dsp is the QNN backend of Hexagon v66 (RB5); arch {self.arch} uses htp"
            )
        if self.backend == "htp" and number < 68:
            raise FieldProblem(
                "backend", f"arch {self.arch} has no HTP: use backend dsp (libQnnDsp.so, as on RB5)"
            )
        if self.htp_arch is not None:
            if self.backend != "htp":
                raise FieldProblem("htp_arch", "only used with backend htp; remove it")
            if self.htp_arch < number:
                raise FieldProblem("htp_arch", f"{self.htp_arch} is older than arch {self.arch}")
        return self


class SshDevice(_QnnBoardDevice):
    """A board reached over ssh (paramiko), running the QNN SDK."""

    kind: Literal["ssh"]
    host: HostName
    port: Annotated[int, Field(ge=1, le=65535)] = 22
    user: UserName
    key_file: str | None = None
    known_hosts: str | None = None  # default ~/.ssh/known_hosts; host keys are always verified
    # Pin an unknown host's key by its OpenSSH fingerprint instead of adding it to known_hosts.
    trust_host_key: Annotated[str, Field(pattern=r"^SHA256:[A-Za-z0-9+/]{43}$")] | None = None


class AdbDevice(_QnnBoardDevice):
    """A board or phone reached over adb (adbutils, through an adb server), running the QNN SDK."""

    kind: Literal["adb"]
    serial: AdbSerial | None = None
    adb_host: HostName = "127.0.0.1"
    adb_port: Annotated[int, Field(ge=1, le=65535)] = 5037


DeviceSpec = Annotated[
    Union[CpuDevice, QnnEmulatorDevice, AihubDevice, SshDevice, AdbDevice],
    Field(discriminator="kind"),
]
DEVICE_KINDS: dict[str, type[DeviceBase]] = {
    "cpu": CpuDevice,
    "qnn-emulator": QnnEmulatorDevice,
    "aihub": AihubDevice,
    "ssh": SshDevice,
    "adb": AdbDevice,
}


# --------------------------------------------------------------------------- lookup


class DeviceFileMissing(SpecError):
    """A device given as a path that does not exist (re-worded when it came from a pipeline)."""


def devices_dirs(devices_dir: Path | None, relative_to: Path | None) -> list[Path]:
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


def _is_device_path(value: str) -> bool:
    return "/" in value or os.sep in value or value.endswith((".yaml", ".yml"))


def device_files(dirs: list[Path]) -> dict[str, Path]:
    """Every device file in ``dirs`` by device name; where two directories (or a .yaml and a
    .yml) hold the same name, the first wins, as in a lookup by name."""
    files: dict[str, Path] = {}
    for d in dirs:
        for p in sorted(d.iterdir()):
            if p.suffix in (".yaml", ".yml") and p.is_file():
                files.setdefault(p.stem, p)
    return files


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
        raise DeviceFileMissing(value, None, f"file not found{where}")
    dirs = devices_dirs(devices_dir, relative_to)
    if not dirs:
        raise UnknownNameError(
            f"unknown device '{value}': no devices/ directory found; set EDGEGATE_DEVICES_DIR "
            "or give a path to a device .yaml"
        )
    files = device_files(dirs)
    if value in files:
        return files[value], True
    known = sorted(files)
    hint = format_suggestion(value, known)
    raise UnknownNameError(
        f"unknown device '{value}'{hint}; known: {', '.join(known) if known else '(none)'}"
    )


def _load_device_file(path: Path, expected_name: str | None) -> DeviceSpec:
    doc = read_yaml(path, display_path(path))
    file, data = doc.file, doc.data
    kinds = list(DEVICE_KINDS)
    quoted = ", ".join(f"'{k}'" for k in kinds[:-1]) + f" or '{kinds[-1]}'"
    if "kind" not in data:
        raise SpecError(file, "kind", f"field required ({quoted})")
    kind = data["kind"]
    if not isinstance(kind, str) or kind not in DEVICE_KINDS:
        hint = format_suggestion(kind, kinds) if isinstance(kind, str) else ""
        raise SpecError(file, "kind", f"input should be {quoted}{hint}", doc.line_of("kind"))
    device = doc.validate(DEVICE_KINDS[kind], {"source_path": Path(file)})
    if expected_name is not None and device.name != expected_name:
        raise SpecError(
            file,
            "name",
            f"'{device.name}' does not match the file name '{path.name}'; "
            f"rename one of them (a device loaded by name must be named after its file)",
            doc.line_of("name"),
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
