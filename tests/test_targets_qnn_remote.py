"""The board target (qnn-net-run over ssh / adb) on a small QDQ graph.

The "board" is this machine: a real sshd on loopback (tests/fakes/sshd.py) or a fake adb server
(tests/fakes/adb_server.py), and a fake QNN SDK whose qnn-net-run / qnn-profile-viewer are the
stand-ins in tests/fakes/qnn_net_run_standin.py. They run the context binary the QNN HTP emulator
compiled, so outputs are real; timings are this machine's, labelled ``device`` because that is
what the target measures on a real board.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fakes.adb_server import FakeAdbServer
from fakes.qnn_net_run_standin import install_fake_sdk
from fakes.sshd import start_sshd
from test_targets_local import _qdq_model

from edgegate.errors import CompileError, SpecError, TargetError
from edgegate.metrics import Source
from edgegate.config import AdbDevice, SshDevice, load_device
from edgegate.targets import target_for_device
from edgegate.targets.local import QnnEmulatorTarget
from edgegate.targets.qnn_remote import QnnRemoteTarget
from edgegate.targets.qnn_runner import BoardLayout, netrun_argv, parse_memory

ROOT = Path(__file__).resolve().parents[1]
slow = pytest.mark.slow  # a board (sshd or adb server) and qnn-net-run processes
X = np.array([[0.013, 0.5], [1.0, 2.0]], np.float32)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory):
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory):
    """The tiny graph compiled once by a board target (HTP: the emulator's context binary)."""
    tmp = tmp_path_factory.mktemp("compiled")
    model = _qdq_model(tmp / "g_qdq.onnx", with_det=False)
    device = SshDevice.model_validate(dict(
        name="compile-only", kind="ssh", host="127.0.0.1", user="nobody", workdir="/tmp",
        qnn_sdk_device="/nonexistent", target_triple="x86_64-linux-clang", backend="htp", arch="v68",
    ))
    c = QnnRemoteTarget(device).compile("g", model, tmp / "out")
    expected = QnnEmulatorTarget("emu", soc_model=None, htp_arch=68).open(
        _emulator_ctx(c)).run({"x": X})[0]
    return c, expected


def _emulator_ctx(c):
    from edgegate.targets.base import CompiledGraph

    onnx_file = next(f for f in c.files if f.suffix == ".onnx")
    return CompiledGraph(c.graph, onnx_file, c.files, c.npu_nodes, c.cpu_nodes)


def _board(tmp: Path, **standin) -> tuple[Path, Path]:
    sdk = install_fake_sdk(tmp / "board" / "qnn-sdk")
    if standin:
        (sdk / "standin.json").write_text(json.dumps(standin))
    work = tmp / "board" / "work"
    work.mkdir(parents=True)
    return sdk, work


def _ssh_device(sshd, sdk: Path, work: Path, **kw) -> SshDevice:
    fields = dict(
        name="bench-ssh", kind="ssh", host="127.0.0.1", port=sshd.port, user=sshd.user,
        key_file=str(sshd.key_file), known_hosts=str(sshd.known_hosts), workdir=str(work),
        qnn_sdk_device=str(sdk), target_triple="x86_64-linux-clang", backend="htp", arch="v68",
        connect_timeout_s=5.0, command_timeout_s=60.0, reconnect_attempts=2,
    )
    fields.update(kw)
    return SshDevice.model_validate(fields)


def _when_running(work: Path, tag: str, action) -> threading.Thread:
    """Call ``action`` once a qnn-net-run whose run directory names ``tag`` has started."""
    def watch() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if list(work.glob(f"edgegate-*/runs/*{tag}*/netrun.pid")):
                action()
                return
            time.sleep(0.02)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


# ----------------------------------------------------------------------------- happy paths


@slow
def test_ssh_board_outputs_benchmark_memory_and_cleanup(sshd, compiled, tmp_path: Path) -> None:
    c, expected = compiled
    sdk, work = _board(tmp_path)
    target = target_for_device(_ssh_device(sshd, sdk, work))
    assert isinstance(target, QnnRemoteTarget) and target.source is Source.DEVICE and not target.runs_fp32
    try:
        (y,) = target.open(c).run({"x": X})
        np.testing.assert_array_equal(y, expected)  # the board ran the emulator's context binary
        bench = target.benchmark([c], {"g": {"x": X}}, warmup=1, repeats=3, min_seconds=0.0,
                                 work_dir=tmp_path / "run")
    finally:
        assert target.cleanup() is None  # no problem removing the scratch directory
    assert list(work.iterdir()) == []  # the run's scratch directory is gone from the board
    assert bench.source is Source.DEVICE
    (timing,) = bench.timings
    assert len(timing.samples_ms) == 3 and all(s > 0 for s in timing.samples_ms)
    assert timing.warmup == 1 and timing.load_time_ms > 0
    assert bench.peak_memory_mb is not None and bench.peak_memory_mb > 20  # a Python + ORT process
    assert "CPU-side memory of the qnn-net-run process" in bench.memory_method
    rounds = bench.details["graphs"]["g"]
    assert [r["netrun_avg_ms"] for r in rounds] == list(timing.samples_ms)
    assert all(r["accelerator_avg_ms"] is not None and r["ips"] > 0 for r in rounds)
    assert bench.details["qnn_net_run_version"].startswith("QNN SDK v2.40")
    # recorded per run and compared between runs like AI Hub's QAIRT version
    assert bench.details["toolchain"]["qnn_sdk"] == bench.details["qnn_net_run_version"]
    assert bench.details["toolchain"]["device"].endswith(f"@127.0.0.1:{sshd.port}")
    kept = tmp_path / "run" / "qnn" / "g"
    cmd = (kept / "round_0" / "command.txt").read_text()
    assert "--retrieve_context" in cmd and "--profiling_level basic" in cmd and "--num_inferences 1" in cmd
    assert "libQnnHtp.so" in cmd
    assert "Execute Stats (Average):" in (kept / "round_2" / "profile.txt").read_text()
    assert "--num_inferences 1" in (kept / "warmup" / "command.txt").read_text()
    assert "VmHWM" in (kept / "round_0" / "mem.log").read_text()


@slow
def test_adb_board_runs_the_same_runner(compiled, tmp_path: Path) -> None:
    c, expected = compiled
    sdk, work = _board(tmp_path)
    adb = FakeAdbServer(tmp_path / "board").start()
    try:
        device = AdbDevice.model_validate(dict(
            name="bench-adb", kind="adb", serial=adb.serial, adb_port=adb.port, workdir=str(work),
            qnn_sdk_device=str(sdk), target_triple="x86_64-linux-clang", backend="htp", arch="v68",
            htp_arch=68, connect_timeout_s=5.0, command_timeout_s=60.0,
        ))
        target = target_for_device(device)
        try:
            (y,) = target.open(c).run({"x": X})
            bench = target.benchmark([c], {"g": {"x": X}}, warmup=0, repeats=2, min_seconds=1.0,
                                     work_dir=tmp_path / "run")
        finally:
            target.close()
    finally:
        adb.stop()
    np.testing.assert_array_equal(y, expected)
    assert list(work.iterdir()) == []
    assert len(bench.timings[0].samples_ms) == 2 and bench.peak_memory_mb > 20
    # min_seconds is spread over the rounds with qnn-net-run's --duration
    assert "--duration 1" in (tmp_path / "run" / "qnn" / "g" / "round_1" / "command.txt").read_text()
    assert not (tmp_path / "run" / "qnn" / "g" / "warmup").exists()
    assert target.describe()["connection"] == f"adb {adb.serial}@127.0.0.1:{adb.port}"


@slow
def test_push_runtime_and_host_viewer_from_host_sdk(sshd, compiled, tmp_path: Path) -> None:
    c, expected = compiled
    host_sdk = install_fake_sdk(tmp_path / "host-sdk")  # x86_64-linux-clang: qnn-net-run + viewer
    _, work = _board(tmp_path)
    device = _ssh_device(sshd, Path("/nonexistent/qnn"), work, push_runtime=True, qnn_sdk_host=str(host_sdk))
    target = QnnRemoteTarget(device)
    try:
        (y,) = target.open(c).run({"x": X})
        bench = target.benchmark([c], {"g": {"x": X}}, warmup=0, repeats=1, min_seconds=0.0, work_dir=tmp_path / "run")
    finally:
        target.close()
    np.testing.assert_array_equal(y, expected)
    cmd = (tmp_path / "run" / "qnn" / "g" / "round_0" / "command.txt").read_text()
    assert f"{work}/edgegate-" in cmd.split()[0] and cmd.split()[0].endswith("/sdk/bin/x86_64-linux-clang/qnn-net-run")
    assert bench.timings[0].samples_ms[0] > 0


# ----------------------------------------------------------------------------- faults


@slow
def test_dropped_connection_mid_run_reconnects_and_completes(sshd, compiled, tmp_path: Path) -> None:
    c, _ = compiled
    sdk, work = _board(tmp_path, sleep_s=1.0)
    target = QnnRemoteTarget(_ssh_device(sshd, sdk, work))
    watcher = _when_running(work, "g-round0", sshd.drop_connections)
    try:
        bench = target.benchmark([c], {"g": {"x": X}}, warmup=0, repeats=1, min_seconds=0.0, work_dir=tmp_path / "run")
    finally:
        target.close()
    watcher.join(5)
    assert bench.details["reconnects"] >= 1
    assert len(bench.timings[0].samples_ms) == 1
    assert list(work.iterdir()) == []


@slow
def test_board_gone_mid_run_fails_with_reason_and_keeps_partial_results(compiled, tmp_path: Path) -> None:
    c, _ = compiled
    server = start_sshd(tmp_path / "sshd")  # this test takes the server down for good
    sdk, work = _board(tmp_path, sleep_s=0.5)
    target = QnnRemoteTarget(_ssh_device(server, sdk, work, connect_timeout_s=2.0))
    b = c.__class__("b", c.artifact, c.files, c.npu_nodes, c.cpu_nodes, c.cpu_ops, 0.0, c.details)
    watcher = _when_running(work, "b-round0", server.stop)
    started = time.monotonic()
    with pytest.raises(TargetError) as info:
        target.benchmark([c, b], {"g": {"x": X}, "b": {"x": X}}, warmup=0, repeats=2, min_seconds=0.0,
                         work_dir=tmp_path / "run")
    watcher.join(5)
    assert time.monotonic() - started < 60  # bounded: never hangs
    msg = str(info.value)
    assert "connection lost" in msg and "2 reconnect attempt(s) failed" in msg
    assert f"partial results kept in {tmp_path / 'run' / 'qnn'}" in msg
    assert "was not removed" in msg  # the board is unreachable, and the error says so
    partial = json.loads((tmp_path / "run" / "qnn" / "benchmark.json").read_text())
    assert len(partial["graphs"]["g"]) == 2 and partial["graphs"]["g"][0]["netrun_avg_ms"] > 0


@slow
def test_command_timeout_stops_qnn_net_run_and_removes_scratch(sshd, compiled, tmp_path: Path) -> None:
    c, _ = compiled
    sdk, work = _board(tmp_path, sleep_s=60)
    target = QnnRemoteTarget(_ssh_device(sshd, sdk, work, command_timeout_s=2.0))
    started = time.monotonic()
    with pytest.raises(TargetError, match="did not finish within 2 s \\(command_timeout_s\\); stopped it"):
        target.benchmark([c], {"g": {"x": X}}, warmup=0, repeats=1, min_seconds=0.0, work_dir=tmp_path / "run")
    assert time.monotonic() - started < 30
    assert list(work.iterdir()) == []
    time.sleep(0.5)
    for proc in Path("/proc").glob("[0-9]*/cmdline"):  # the stand-in this test started is gone
        try:
            assert str(sdk) not in proc.read_text()
        except OSError:
            pass


@slow
def test_qnn_net_run_failure_reports_its_stderr(sshd, compiled, tmp_path: Path) -> None:
    c, _ = compiled
    sdk, work = _board(tmp_path, fail="Failed to create context from binary")
    target = QnnRemoteTarget(_ssh_device(sshd, sdk, work))
    try:
        with pytest.raises(TargetError, match="qnn-net-run failed \\(exit 1\\) on g-infer: ERROR: Failed to create context"):
            target.open(c).run({"x": X})
    finally:
        target.close()
    assert list(work.iterdir()) == []


@slow
def test_missing_qnn_net_run_on_the_board(sshd, compiled, tmp_path: Path) -> None:
    c, _ = compiled
    _, work = _board(tmp_path)
    target = QnnRemoteTarget(_ssh_device(sshd, tmp_path / "no-sdk", work))
    with pytest.raises(TargetError, match="qnn-net-run not found at .*/no-sdk/bin/x86_64-linux-clang/qnn-net-run"):
        target.open(c).run({"x": X})
    target.close()


# ----------------------------------------------------------------------------- preparing on the host


def _rb5(**kw) -> SshDevice:
    fields = dict(name="rb5", kind="ssh", host="rb5.local", user="root", workdir="/data/edgegate",
                  qnn_sdk_device="/opt/qnn", target_triple="aarch64-ubuntu-gcc9.4", backend="dsp", arch="v66")
    fields.update(kw)
    return SshDevice.model_validate(fields)


def test_dsp_without_host_sdk_names_the_missing_tool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QNN_SDK_ROOT", raising=False)
    model = _qdq_model(tmp_path / "g_qdq.onnx", with_det=False)
    with pytest.raises(CompileError) as info:
        QnnRemoteTarget(_rb5()).compile("g", model, tmp_path / "out")
    assert str(info.value) == (
        "device 'rb5': backend dsp (Hexagon v66) is prepared with the QNN SDK on this host, and "
        "qnn-onnx-converter was not found: QNN_SDK_ROOT is not set and the device file has no "
        "qnn_sdk_host (the QNN HTP emulator makes HTP context binaries only)"
    )


_FAKE_TOOL = """#!/bin/sh
# records its command line, writes what the real tool would (test fixture)
echo "$(basename "$0") $*" >> "$(dirname "$0")/../../calls.log"
while [ $# -gt 0 ]; do
  case "$1" in
    --output_path) touch "$2" "${2%.cpp}.bin";;
    -o) out=$2;; -t) t=$2;; -c) cpp=$2;;
    --output_dir) od=$2;; --binary_file) bf=$2;;
  esac
  shift
done
[ -n "$out" ] && mkdir -p "$out/$t" && touch "$out/$t/lib$(basename "${cpp%.cpp}").so"
[ -n "$od" ] && touch "$od/$bf.bin"
exit 0
"""


def _fake_host_sdk(root: Path, tools=("qnn-onnx-converter", "qnn-model-lib-generator", "qnn-context-binary-generator")) -> Path:
    bindir = root / "bin" / "x86_64-linux-clang"
    bindir.mkdir(parents=True)
    for tool in tools:
        (bindir / tool).write_text(_FAKE_TOOL)
        (bindir / tool).chmod(0o755)
    (root / "sdk.yaml").write_text("name: qairt\nversion: 2.26.0.240828\n")
    return root


def _aimet_export(tmp: Path) -> Path:
    """What quantize.py leaves: <g>_qdq.onnx beside AIMET's <g>.onnx and <g>.encodings."""
    qdq = _qdq_model(tmp / "g_qdq.onnx", with_det=False)
    shutil.copy(qdq, tmp / "g.onnx")
    (tmp / "g.encodings").write_text('{"version": "1.0.0", "activation_encodings": [], "param_encodings": []}')
    return qdq


def test_host_sdk_prepares_dsp_model_library_with_aimet_encodings(tmp_path: Path, monkeypatch) -> None:
    sdk = _fake_host_sdk(tmp_path / "qnn")
    monkeypatch.setenv("QNN_SDK_ROOT", str(sdk))
    qdq = _aimet_export(tmp_path)
    target = QnnRemoteTarget(_rb5())
    c = target.compile("g", qdq, tmp_path / "out")
    out = tmp_path / "out"
    assert c.artifact == out / "model_libs" / "aarch64-ubuntu-gcc9.4" / "libg.so"
    assert c.details["model_flag"] == "--model" and (c.npu_nodes, c.cpu_nodes) == (5, 0)
    assert c.details["prepared_with"] == "QNN SDK 2.26.0.240828 on the host"
    calls = (sdk / "calls.log").read_text().splitlines()
    assert calls == [
        f"qnn-onnx-converter --input_network {tmp_path / 'g.onnx'} --quantization_overrides "
        f"{tmp_path / 'g.encodings'} --input_list {out / 'calibration_input_list.txt'} --output_path {out / 'g.cpp'}",
        f"qnn-model-lib-generator -c {out / 'g.cpp'} -b {out / 'g.bin'} -o {out / 'model_libs'} -t aarch64-ubuntu-gcc9.4",
    ]
    assert (out / "calibration_input_list.txt").read_text() == f"x:={out / 'calibration' / 'x.raw'}\n"
    assert (out / "calibration" / "x.raw").stat().st_size == 4 * 4
    assert target.describe()["runtime"] == (
        "qnn-net-run (dsp backend, aarch64-ubuntu-gcc9.4); prepared by QNN SDK 2.26.0.240828 on the host")


def test_host_sdk_prepares_htp_context_binary_for_the_board_arch(tmp_path: Path, monkeypatch) -> None:
    sdk = _fake_host_sdk(tmp_path / "qnn")
    monkeypatch.setenv("QNN_SDK_ROOT", str(sdk))
    device = _rb5(name="qcs6490", backend="htp", arch="v68", target_triple="aarch64-oe-linux-gcc11.2", soc_model=35)
    c = QnnRemoteTarget(device).compile("g", _aimet_export(tmp_path), tmp_path / "out")
    out = tmp_path / "out"
    assert c.artifact == out / "g_ctx.bin" and c.details["model_flag"] == "--retrieve_context"
    calls = (sdk / "calls.log").read_text().splitlines()
    assert calls[1].endswith("-t x86_64-linux-clang")  # the context generator loads a host model library
    assert calls[2] == (
        f"qnn-context-binary-generator --model {out / 'model_libs' / 'x86_64-linux-clang' / 'libg.so'} "
        f"--backend {sdk / 'lib' / 'x86_64-linux-clang' / 'libQnnHtp.so'} --binary_file g_ctx "
        f"--output_dir {out} --config_file {out / 'htp_context_config.json'}"
    )
    assert json.loads((out / "htp_backend_extensions.json").read_text()) == {"devices": [{"dsp_arch": "v68", "soc_id": 35}]}


def test_host_sdk_missing_tool_is_named(tmp_path: Path, monkeypatch) -> None:
    sdk = _fake_host_sdk(tmp_path / "qnn", tools=("qnn-onnx-converter",))
    monkeypatch.setenv("QNN_SDK_ROOT", str(sdk))
    with pytest.raises(CompileError, match="qnn-model-lib-generator not found in the host QNN SDK"):
        QnnRemoteTarget(_rb5()).compile("g", _aimet_export(tmp_path), tmp_path / "out")


# ----------------------------------------------------------------------------- pieces


def test_rb5_dsp_command_line_and_environment() -> None:
    layout = BoardLayout("/opt/qnn", "aarch64-ubuntu-gcc9.4", "dsp", "v66")
    assert netrun_argv(layout, model_flag="--model", model="/d/libpnet.so", input_list="/d/in.txt",
                       output_dir="/d/out", profile=True, num_inferences=10, perf_profile="burst") == [
        "/opt/qnn/bin/aarch64-ubuntu-gcc9.4/qnn-net-run", "--backend", "/opt/qnn/lib/aarch64-ubuntu-gcc9.4/libQnnDsp.so",
        "--model", "/d/libpnet.so", "--input_list", "/d/in.txt", "--output_dir", "/d/out",
        "--profiling_level", "basic", "--num_inferences", "10", "--perf_profile", "burst",
    ]
    assert layout.env() == {"LD_LIBRARY_PATH": "/opt/qnn/lib/aarch64-ubuntu-gcc9.4",
                            "ADSP_LIBRARY_PATH": "/opt/qnn/lib/hexagon-v66/unsigned;/usr/lib/rfsa/adsp;/dsp"}
    assert layout.runtime_files() == [
        "bin/aarch64-ubuntu-gcc9.4/qnn-net-run", "lib/aarch64-ubuntu-gcc9.4/libQnnSystem.so",
        "lib/aarch64-ubuntu-gcc9.4/libQnnDsp.so", "lib/aarch64-ubuntu-gcc9.4/libQnnDspV66Stub.so",
        "lib/hexagon-v66/unsigned/libQnnDspV66Skel.so",
    ]
    phone = BoardLayout("/data/local/tmp/qnn", "aarch64-android", "htp", "v73", {"ADSP_LIBRARY_PATH": "/x"})
    assert phone.env()["ADSP_LIBRARY_PATH"] == "/x" and phone.android
    assert "lib/hexagon-v73/unsigned/libQnnHtpV73Skel.so" in phone.runtime_files()


def test_memory_logs_parse_proc_status_and_dumpsys() -> None:
    mem = "VmHWM: 100 kB VmRSS: 90 kB \nVmHWM: 250 kB VmRSS: 240 kB \nVmHWM: 250 kB VmRSS: 120 kB \n"
    pss = "                TOTAL    51234    40000    10000\n  TOTAL PSS:    60111            TOTAL RSS:    90000\n"
    m = parse_memory(mem, pss)
    assert (m.vmhwm_kb, m.vmrss_kb, m.pss_kb, m.polls) == (250, 240, 60111, 3)
    assert parse_memory("").peak_mb is None


def test_device_files_check_backend_against_arch(tmp_path: Path) -> None:
    rb5 = load_device(str(ROOT / "devices" / "rb5-ssh.yaml"))
    assert (rb5.kind, rb5.backend, rb5.arch, rb5.push_runtime) == ("ssh", "dsp", "v66", True)
    adb = load_device(str(ROOT / "devices" / "rb5-adb.yaml"))
    assert (adb.kind, adb.backend, adb.arch) == ("adb", "dsp", "v66")
    text = (ROOT / "devices" / "rb5-ssh.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("backend: dsp", "backend: htp"))
    with pytest.raises(SpecError, match="backend: arch v66 has no HTP: use backend dsp"):
        load_device(str(bad))
    bad.write_text(text.replace("arch: v66", "arch: v73"))
    with pytest.raises(SpecError, match="backend: dsp is the QNN backend of Hexagon v66"):
        load_device(str(bad))
    bad.write_text(text.replace("trust_host_key: null", "trust_host_key: md5:aa"))
    with pytest.raises(SpecError, match="trust_host_key"):
        load_device(str(bad))


def test_board_target_needs_the_hexagon_arch() -> None:
    with pytest.raises(SpecError, match="arch: field required for kind ssh: the board's Hexagon version"):
        target_for_device(_rb5(arch=None))


# ----------------------------------------------------------------------------- input lists (issue 15)


@slow
def test_input_list_survives_a_work_directory_with_spaces_and_commas(sshd, compiled, tmp_path: Path) -> None:
    """qnn-net-run splits its input list on whitespace (and --input_list on commas) and knows no
    quoting: the list holds paths relative to the run's directory, so no work directory breaks it."""
    c, expected = compiled
    sdk = install_fake_sdk(tmp_path / "board sdk" / "qnn-sdk")
    work = tmp_path / "board" / "work dir, with spaces"
    work.mkdir(parents=True)
    target = QnnRemoteTarget(_ssh_device(sshd, sdk, work))
    try:
        (y,) = target.open(c).run({"x": X})
        target.benchmark([c], {"g": {"x": X}}, warmup=0, repeats=1, min_seconds=0.0, work_dir=tmp_path / "run")
    finally:
        assert target.cleanup() is None
    np.testing.assert_array_equal(y, expected)
    assert list(work.iterdir()) == []
    kept = tmp_path / "run" / "qnn" / "g" / "round_0"
    assert (kept / "input_list.txt").read_text() == "x:=inputs/0_x.raw\n"
    argv = (kept / "command.txt").read_text().split()
    assert argv[argv.index("--input_list") + 1] == "input_list.txt"
    assert argv[argv.index("--retrieve_context") + 1].startswith("../../models/")


def test_tensor_names_the_input_list_cannot_carry_are_refused() -> None:
    from edgegate.targets.qnn_runner import input_list_name_problem

    assert input_list_name_problem("x") is None and input_list_name_problem("input_ids:0") is None
    for bad in ("my image", "tab\tname", "", "a:=b", "#x"):
        assert input_list_name_problem(bad), bad


def test_a_pipeline_tensor_name_with_whitespace_is_refused_at_load(tmp_path: Path, monkeypatch) -> None:
    from edgegate.run.context import load_context

    monkeypatch.chdir(ROOT)
    mini = ROOT / "tests" / "fixtures" / "pipelines" / "person_detect_mini.yaml"
    text = mini.read_text().replace("../packs/person_detect_mini", str(ROOT / "tests/fixtures/packs/person_detect_mini"))
    old = "inputs: [{name: crops, shape: [16, 3, 24, 24]}]"
    assert old in text
    path = tmp_path / "p.yaml"
    path.write_text(text.replace(old, 'inputs: [{name: "rnet crops", shape: [16, 3, 24, 24]}]'))
    with pytest.raises(SpecError) as info:
        load_context(path, home=tmp_path / "home")
    line = next(i for i, ln in enumerate(path.read_text().splitlines(), 1) if "rnet crops" in ln)
    assert str(info.value) == (f"{path}:{line}: model.graphs.rnet.inputs[0].name: tensor name 'rnet crops' is empty "
                               "or has whitespace, which qnn-net-run's input list cannot carry")
