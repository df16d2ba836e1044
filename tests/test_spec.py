from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from edgegate.errors import SpecError, UnknownNameError
from edgegate.config import (
    AdbDevice,
    AihubDevice,
    CpuDevice,
    PipelineSpec,
    QnnEmulatorDevice,
    SshDevice,
    aimet_config_for,
    config_digest,
    load_device,
    load_pipeline,
    load_pipeline_device,
)

SPECS = Path(__file__).parent / "fixtures" / "specs"

# Line numbers in the error tests below refer to this text (line 1 = "name: ...").
BASE = """\
name: person_detect
model:
  adapter: "edgegate.zoo.mtcnn:MTCNNAdapter"
  graphs:
    pnet:
      factory: "edgegate.zoo.mtcnn:pnet"
      inputs: [{name: image, shape: [1, 3, 120, 160]}]
      outputs: [prob, reg]
quantization:
  scheme: tf_enhanced
device: htp-sim
benchmark:
  repeats: 50
evaluation:
  promptpack: pack
  scorers: [detection]
gates:
  - "accuracy >= 0.99 * baseline"
  - "inference_time_ms <= 50"
"""


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cwd holding pack/, models/, devices/ so pipelines can be loaded as 'p.yaml'."""
    (tmp_path / "pack").mkdir()
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "pnet.pt").write_bytes(b"")
    (tmp_path / "devices").mkdir()
    for name in ("htp-sim", "cpu"):
        (tmp_path / "devices" / f"{name}.yaml").write_text(
            (SPECS / "devices" / f"{name}.yaml").read_text()
        )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EDGEGATE_DEVICES_DIR", raising=False)
    return tmp_path


def write(text: str, name: str = "p.yaml") -> str:
    Path(name).write_text(textwrap.dedent(text))
    return name


def spec_error(text: str) -> str:
    with pytest.raises(SpecError) as info:
        load_pipeline(write(text))
    return str(info.value)


# --------------------------------------------------------------------------- valid


def test_valid_fixture_loads_with_defaults_and_resolved_paths() -> None:
    spec = load_pipeline(SPECS / "pipeline.yaml")
    assert spec.name == "person_detect"
    assert list(spec.model.graphs) == ["pnet", "rnet"]
    assert spec.model.graphs["pnet"].source_kind == "factory"
    assert spec.model.graphs["rnet"].inputs[0].dtype == "float32"
    assert spec.quantization.adaround is not None
    assert spec.quantization.adaround.iterations == 1000
    assert spec.quantization.calibration.samples == 32
    assert spec.benchmark.min_seconds == 0.0
    assert spec.evaluation.split == "eval"
    assert spec.source_path == SPECS / "pipeline.yaml"
    assert spec.base_dir == SPECS.absolute()
    assert spec.promptpack_path == SPECS.absolute() / "promptpack_placeholder"
    assert spec.graph_path("rnet") == SPECS.absolute() / "models" / "rnet_placeholder.pt"
    assert spec.graph_path("pnet") is None
    assert spec.quantization_config_path is None
    gates = spec.parsed_gates()
    assert [g.describe() for g in gates] == [
        "accuracy >= 0.99 * baseline",
        "inference_time_ms <= 50 (host timing allowed)",
        "npu_fraction == 1",
    ]
    assert spec.line_of("device") == 23


def test_fixture_device_and_aimet_config() -> None:
    spec = load_pipeline(SPECS / "pipeline.yaml")
    device = load_pipeline_device(spec)
    assert isinstance(device, QnnEmulatorDevice)
    assert device.source_path is not None
    assert device.source_path.name == "htp-sim.yaml"
    assert device.arch == "v66" and device.htp_arch == 68
    assert aimet_config_for(spec, device) == "htp_v66"
    cpu = load_device("cpu", devices_dir=SPECS / "devices")
    assert isinstance(cpu, CpuDevice)
    assert aimet_config_for(spec, cpu) == "default"


def test_repo_devices_load() -> None:
    repo_devices = Path(__file__).parent.parent / "devices"
    sim = load_device("htp-sim", devices_dir=repo_devices)
    assert isinstance(sim, QnnEmulatorDevice)
    assert sim.tags == ["emulator", "rb5-class"]
    assert isinstance(load_device("cpu", devices_dir=repo_devices), CpuDevice)


def test_explicit_quant_config_wins(workdir: Path) -> None:
    (workdir / "my_config.json").write_text("{}")
    spec = load_pipeline(write(BASE.replace("scheme: tf_enhanced", "config: my_config.json")))
    device = load_pipeline_device(spec)
    assert spec.quantization_config_path == workdir / "my_config.json"
    assert aimet_config_for(spec, device) == str(workdir / "my_config.json")
    named = load_pipeline(write(BASE.replace("scheme: tf_enhanced", "config: htp_v73")))
    assert aimet_config_for(named, device) == "htp_v73"


def test_config_digest_is_stable_and_sensitive(workdir: Path) -> None:
    spec = load_pipeline(write(BASE))
    device = load_pipeline_device(spec)
    digest = config_digest(spec, device)
    assert digest.startswith("sha256:") and len(digest) == len("sha256:") + 64
    assert config_digest(load_pipeline(write(BASE)), device) == digest
    other = load_pipeline(write(BASE.replace("repeats: 50", "repeats: 51")))
    assert config_digest(other, device) != digest


def test_adaround_false_and_mapping(workdir: Path) -> None:
    off = load_pipeline(write(BASE.replace("scheme: tf_enhanced", "adaround: false")))
    assert off.quantization.adaround is None
    on = load_pipeline(write(BASE.replace("scheme: tf_enhanced", "adaround: {iterations: 10}")))
    assert on.quantization.adaround is not None and on.quantization.adaround.iterations == 10


def test_torchscript_graph_relative_to_pipeline_file(workdir: Path) -> None:
    text = BASE.replace('factory: "edgegate.zoo.mtcnn:pnet"', "torchscript: ../models/pnet.pt")
    text = text.replace("promptpack: pack", "promptpack: ../pack")
    (workdir / "pipelines").mkdir()
    spec = load_pipeline(write(text, "pipelines/p.yaml"))
    assert spec.source_path == Path("pipelines/p.yaml")
    assert spec.base_dir == workdir / "pipelines"
    assert spec.graph_path("pnet") == workdir / "models" / "pnet.pt"
    assert spec.promptpack_path == workdir / "pack"
    assert spec.evaluation.promptpack == "../pack"  # kept as written


# --------------------------------------------------------------------------- errors


def test_unknown_key_names_line_and_allowed_fields(workdir: Path) -> None:
    text = BASE.replace("  scheme: tf_enhanced", "  scheme: tf_enhanced\n  shceme: tf")
    assert spec_error(text) == (
        "p.yaml:11: quantization.shceme: unknown field 'shceme' (allowed: engine, config, "
        "scheme, param_bw, output_bw, calibration, bn_fold, cle, adaround, seed, verify_reproducible)"
    )


def test_wrong_literal(workdir: Path) -> None:
    text = BASE.replace("scheme: tf_enhanced", "scheme: minmax")
    assert spec_error(text) == (
        "p.yaml:10: quantization.scheme: input should be 'tf_enhanced', 'tf' or 'percentile'"
    )


def test_wrong_type(workdir: Path) -> None:
    text = BASE.replace("repeats: 50", 'repeats: "fifty"')
    assert spec_error(text) == "p.yaml:13: benchmark.repeats: input should be a valid integer"


def test_benchmark_processes_must_be_positive(workdir: Path) -> None:
    text = BASE.replace("repeats: 50", "repeats: 50\n  processes: 0")
    assert spec_error(text) == "p.yaml:14: benchmark.processes: input should be greater than or equal to 1"
    assert load_pipeline(write(BASE)).benchmark.processes == 20  # the default


def test_out_of_range_shape(workdir: Path) -> None:
    text = BASE.replace("[1, 3, 120, 160]", "[1, 3, 0, 160]")
    assert spec_error(text) == (
        "p.yaml:7: model.graphs.pnet.inputs[0].shape[2]: input should be greater than or equal to 1"
    )


def test_missing_required_field(workdir: Path) -> None:
    text = BASE.replace("  scorers: [detection]\n", "")
    assert spec_error(text) == "p.yaml:14: evaluation.scorers: field required"


def test_missing_top_level_field(workdir: Path) -> None:
    text = BASE.replace("device: htp-sim\n", "")
    assert spec_error(text) == "p.yaml: device: field required"


def test_two_model_sources(workdir: Path) -> None:
    text = BASE.replace(
        '      factory: "edgegate.zoo.mtcnn:pnet"\n',
        '      factory: "edgegate.zoo.mtcnn:pnet"\n      torchscript: models/pnet.pt\n',
    )
    assert spec_error(text) == (
        "p.yaml:5: model.graphs.pnet: set exactly one of factory, torchscript, onnx "
        "(found factory and torchscript)"
    )


def test_no_model_source(workdir: Path) -> None:
    text = BASE.replace('      factory: "edgegate.zoo.mtcnn:pnet"\n', "")
    assert spec_error(text) == (
        "p.yaml:5: model.graphs.pnet: set exactly one of factory, torchscript, onnx (found none)"
    )


def test_missing_torchscript_file(workdir: Path) -> None:
    text = BASE.replace('factory: "edgegate.zoo.mtcnn:pnet"', "torchscript: models/missing.pt")
    assert spec_error(text) == (
        f"p.yaml:6: model.graphs.pnet.torchscript: file not found: "
        f"{workdir / 'models' / 'missing.pt'} (paths are relative to the pipeline file)"
    )


def test_missing_promptpack_dir(workdir: Path) -> None:
    text = BASE.replace("promptpack: pack", "promptpack: nopack")
    assert spec_error(text) == (
        f"p.yaml:15: evaluation.promptpack: directory not found: {workdir / 'nopack'} "
        "(paths are relative to the pipeline file)"
    )


def test_bad_adapter_reference(workdir: Path) -> None:
    text = BASE.replace('"edgegate.zoo.mtcnn:MTCNNAdapter"', "edgegate.zoo.mtcnn.MTCNNAdapter")
    assert spec_error(text) == (
        "p.yaml:3: model.adapter: expected 'package.module:attribute', "
        "got 'edgegate.zoo.mtcnn.MTCNNAdapter'"
    )


def test_bad_graph_name(workdir: Path) -> None:
    text = BASE.replace("    pnet:", "    PNet:")
    assert spec_error(text) == (
        "p.yaml:5: model.graphs.PNet: 'PNet' does not match ^[a-z][a-z0-9_]*$ "
        "(use lower-case letters, digits and '_', starting with a letter)"
    )


def test_empty_graphs(workdir: Path) -> None:
    graphs = BASE[BASE.index("  graphs:\n") : BASE.index("quantization:")]
    text = BASE.replace(graphs, "  graphs: {}\n")
    assert spec_error(text) == "p.yaml:4: model.graphs: needs at least 1 item, got 0"


def test_bad_gate_expression(workdir: Path) -> None:
    text = BASE.replace('"inference_time_ms <= 50"', '"inference_time_ms <= 50ms"')
    assert spec_error(text) == (
        "p.yaml:19: gates[1]: gate 'inference_time_ms <= 50ms': expected end of expression "
        "at column 24, found 'ms' (form: METRIC OP NUMBER [* baseline], "
        "e.g. 'accuracy >= 0.99 * baseline')"
    )


def test_unknown_gate_metric_did_you_mean(workdir: Path) -> None:
    text = BASE.replace('"accuracy >= 0.99 * baseline"', '"acuracy >= 0.99 * baseline"')
    assert spec_error(text) == (
        "p.yaml:18: gates[0]: gate 'acuracy >= 0.99 * baseline': "
        "unknown metric 'acuracy' (did you mean 'accuracy', 'top5_accuracy' or 'top1_accuracy'?)"
    )


def test_gate_mapping_form_and_bad_item(workdir: Path) -> None:
    text = BASE.replace(
        '"inference_time_ms <= 50"', '{expr: "inference_time_ms <= 50", allow_host_timing: true}'
    )
    spec = load_pipeline(write(text))
    assert spec.parsed_gates()[1].allow_host_timing is True
    bad = BASE.replace('"inference_time_ms <= 50"', "50")
    assert spec_error(bad) == (
        "p.yaml:19: gates[1]: expected a gate expression string or a mapping "
        "{expr: ..., allow_host_timing: ...}"
    )


def test_yaml_syntax_error_fixture() -> None:
    path = "tests/fixtures/specs/bad_syntax.yaml"
    with pytest.raises(SpecError) as info:
        load_pipeline(Path(__file__).parent.parent / path)
    assert info.value.line == 4
    assert info.value.problem == (
        "invalid YAML: expected <block end>, but found '<block mapping start>' "
        "(while parsing a block mapping at line 3)"
    )


def test_duplicate_key(workdir: Path) -> None:
    assert spec_error(BASE + "device: cpu\n") == (
        "p.yaml:20: device: duplicate key 'device' (first at line 11)"
    )


def test_missing_and_empty_files(workdir: Path) -> None:
    with pytest.raises(SpecError) as info:
        load_pipeline("pipelines/none.yaml")
    assert str(info.value) == "pipelines/none.yaml: file not found"
    assert spec_error("") == "p.yaml: file is empty; expected a mapping of fields"
    assert spec_error("- a\n- b\n") == "p.yaml:1: expected a mapping of fields, got list"


def test_model_validate_without_file(workdir: Path) -> None:
    # The Python API: paths resolve against the cwd when there is no file.
    import yaml

    spec = PipelineSpec.model_validate(yaml.safe_load(BASE))
    assert spec.source_path is None
    assert spec.base_dir == workdir
    assert spec.promptpack_path == workdir / "pack"
    with pytest.raises(UnknownNameError) as info:
        spec.graph_path("pnt")
    assert str(info.value) == "unknown graph 'pnt' (did you mean 'pnet'?); graphs: pnet"


# --------------------------------------------------------------------------- devices


def test_unknown_device_did_you_mean(workdir: Path) -> None:
    with pytest.raises(UnknownNameError) as info:
        load_device("htp-sm")
    assert str(info.value) == "unknown device 'htp-sm' (did you mean 'htp-sim'?); known: cpu, htp-sim"


def test_unknown_device_through_pipeline(workdir: Path) -> None:
    spec = load_pipeline(write(BASE.replace("device: htp-sim", "device: htp-sm")))
    with pytest.raises(UnknownNameError) as info:
        load_pipeline_device(spec)
    assert str(info.value) == (
        "p.yaml:11: device: unknown device 'htp-sm' (did you mean 'htp-sim'?); known: cpu, htp-sim"
    )


def test_device_path_relative_to_pipeline(workdir: Path) -> None:
    (workdir / "pipelines").mkdir()
    (workdir / "pipelines" / "pack").mkdir()
    (workdir / "pipelines" / "boards").mkdir()
    (workdir / "pipelines" / "boards" / "mine.yaml").write_text(
        "name: my-board\nkind: cpu\nintra_op_threads: 2\n"
    )
    spec = load_pipeline(write(BASE.replace("device: htp-sim", "device: boards/mine.yaml"),
                               "pipelines/p.yaml"))
    device = load_pipeline_device(spec)
    assert isinstance(device, CpuDevice) and device.intra_op_threads == 2

    missing = load_pipeline(write(BASE.replace("device: htp-sim", "device: boards/x.yaml"),
                                  "pipelines/q.yaml"))
    with pytest.raises(SpecError) as info:
        load_pipeline_device(missing)
    assert str(info.value) == (
        "pipelines/q.yaml:11: device: device file 'boards/x.yaml' not found (relative paths are "
        "resolved against the pipeline file's directory, then the current directory)"
    )


def test_devices_dir_from_env(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEGATE_DEVICES_DIR", str(SPECS / "bad_devices"))
    with pytest.raises(UnknownNameError) as info:
        load_device("htp-sim")
    assert str(info.value) == "unknown device 'htp-sim'; known: mismatch"


def test_device_name_mismatch_fixture(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(SPECS)
    with pytest.raises(SpecError) as info:
        load_device("mismatch", devices_dir=Path("bad_devices"))
    assert str(info.value) == (
        "bad_devices/mismatch.yaml:1: name: 'htp-simulator' does not match the file name "
        "'mismatch.yaml'; rename one of them (a device loaded by name must be named after its file)"
    )
    # By path the name is free.
    assert load_device("bad_devices/mismatch.yaml").name == "htp-simulator"


def device_error(text: str) -> str:
    Path("devices/dev.yaml").write_text(textwrap.dedent(text))
    with pytest.raises(SpecError) as info:
        load_device("dev")
    return str(info.value)


def test_device_kind_errors(workdir: Path) -> None:
    assert device_error("name: dev\n") == (
        "devices/dev.yaml: kind: field required ('cpu', 'qnn-emulator', 'aihub', 'ssh' or 'adb')"
    )
    assert device_error("name: dev\nkind: qnn-emulater\n") == (
        "devices/dev.yaml:2: kind: input should be 'cpu', 'qnn-emulator', 'aihub', 'ssh' or 'adb'"
        " (did you mean 'qnn-emulator'?)"
    )


def test_qnn_emulator_rules(workdir: Path) -> None:
    assert device_error("name: dev\nkind: qnn-emulator\nhtp_arch: 68\n") == (
        "devices/dev.yaml: arch: field required for kind qnn-emulator "
        "(it picks the AIMET config, e.g. v66)"
    )
    assert device_error("name: dev\nkind: qnn-emulator\narch: v66\n") == (
        "devices/dev.yaml: htp_arch: set htp_arch (e.g. 68) or soc_model, or both"
    )
    assert device_error("name: dev\nkind: qnn-emulator\narch: v73\nhtp_arch: 68\n") == (
        "devices/dev.yaml:4: htp_arch: 68 is older than arch v73; the emulated HTP must be at least the arch"
    )
    # libQnnHtp has no v66 (RB5's v66 is the DSP backend): an RB5-class device compiles on v68.
    assert device_error("name: dev\nkind: qnn-emulator\narch: v66\nhtp_arch: 66\n") == (
        "devices/dev.yaml:4: htp_arch: input should be 68, 69, 73, 75, 79 or 81"
    )
    assert device_error("name: dev\nkind: qnn-emulator\narch: v67\nhtp_arch: 68\n") == (
        "devices/dev.yaml:3: arch: input should be 'v66', 'v68', 'v69', 'v73', 'v75', 'v79' "
        "or 'v81'"
    )
    assert device_error("name: dev\nkind: qnn-emulator\narch: v66\nsoc: 30\n") == (
        "devices/dev.yaml:4: soc: unknown field 'soc' (allowed: name, kind, description, tags, "
        "chipset, arch, backend, soc_model, htp_arch, performance_mode, allow_cpu_fallback)"
    )
    Path("devices/dev.yaml").write_text("name: dev\nkind: qnn-emulator\narch: v73\nsoc_model: 43\n")
    device = load_device("dev")
    assert isinstance(device, QnnEmulatorDevice) and device.soc_model == "43"


def test_other_device_kinds(workdir: Path) -> None:
    assert device_error("name: dev\nkind: aihub\n") == (
        "devices/dev.yaml: device: set device (an AI Hub device name) or attributes "
        "(e.g. chipset:qualcomm-qcs8250-proxy)"
    )
    Path("devices/hub.yaml").write_text(
        "name: hub\nkind: aihub\narch: v66\nattributes: [chipset:qualcomm-qcs8250-proxy]\n"
    )
    assert isinstance(load_device("hub"), AihubDevice)
    Path("devices/board.yaml").write_text(
        "name: board\nkind: ssh\nhost: rb5.local\nuser: root\nworkdir: /data/eg\n"
        "qnn_sdk_device: /opt/qnn\ntarget_triple: aarch64-ubuntu-gcc9.4\nbackend: dsp\n"
    )
    board = load_device("board")
    assert isinstance(board, SshDevice) and board.port == 22
    assert device_error("name: dev\nkind: adb\nworkdir: /data/local/tmp\n") == (
        "devices/dev.yaml: qnn_sdk_device: field required"
    )
    Path("devices/phone.yaml").write_text(
        "name: phone\nkind: adb\nworkdir: /data/local/tmp\nqnn_sdk_device: /data/local/tmp/qnn\n"
        "target_triple: aarch64-android\nbackend: htp\n"
    )
    phone = load_device("phone")
    assert isinstance(phone, AdbDevice) and phone.adb_port == 5037
    with pytest.raises(SpecError) as info:
        aimet_config_for(load_pipeline(write(BASE)), phone)
    assert str(info.value) == (
        "devices/phone.yaml: arch: not set for kind adb, so no AIMET config can be chosen; "
        "set arch (e.g. v66) in the device file or quantization.config in the pipeline"
    )
