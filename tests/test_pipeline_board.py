"""Integration: the person_detect_mini pipeline on a board over ssh, end to end.

The board is this machine behind a real sshd on loopback (tests/fakes/sshd.py); its "QNN SDK"
is the stand-in qnn-net-run / qnn-profile-viewer (tests/fakes/qnn_net_run_standin.py), which runs
the context binaries the QNN HTP emulator compiled. So quantization, compilation, outputs and
scores are real, and the candidate's timings come from the board path (source ``device``): here
they are this machine's times, because this machine is acting as the board.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from fakes.qnn_net_run_standin import install_fake_sdk
from fakes.sshd import start_sshd

from edgegate.db import ExperimentDB
from edgegate.metrics import Source
from edgegate.run.pipeline import RunOptions, run_pipeline

ROOT = Path(__file__).resolve().parents[1]
MINI = ROOT / "tests" / "fixtures" / "pipelines" / "person_detect_mini.yaml"

pytestmark = pytest.mark.slow


def test_person_detect_on_a_board_over_ssh(tmp_path: Path) -> None:
    server = start_sshd(tmp_path / "sshd")
    try:
        sdk = install_fake_sdk(tmp_path / "board" / "qnn-sdk")
        work = tmp_path / "board" / "work"
        work.mkdir()
        device = {
            "name": "bench-board", "kind": "ssh",
            "description": "this machine acting as the board (sshd on loopback, stand-in qnn-net-run)",
            "chipset": "qcs6490", "arch": "v68", "backend": "htp", "htp_arch": 68,
            "host": "127.0.0.1", "port": server.port, "user": server.user,
            "key_file": str(server.key_file), "known_hosts": str(server.known_hosts),
            "workdir": str(work), "qnn_sdk_device": str(sdk), "target_triple": "x86_64-linux-clang",
            "command_timeout_s": 120.0,
        }
        (tmp_path / "bench-board.yaml").write_text(yaml.safe_dump(device))
        spec = yaml.safe_load(MINI.read_text())
        spec["device"] = str(tmp_path / "bench-board.yaml")
        spec["evaluation"]["promptpack"] = str(ROOT / "tests" / "fixtures" / "packs" / "person_detect_mini")
        spec["evaluation"]["limit"] = 2  # every eval call is one qnn-net-run process on the board
        spec["quantization"]["calibration"]["samples"] = 2
        # Per-tensor weights (RB5's config): htp_v68's per-channel PReLU weights do not compile.
        spec["quantization"]["config"] = "htp_v66"
        spec["benchmark"] = {"warmup": 0, "repeats": 2, "min_seconds": 0, "processes": 1}
        pipeline = tmp_path / "pipeline.yaml"
        pipeline.write_text(yaml.safe_dump(spec))

        result = run_pipeline(pipeline, RunOptions(db_url=f"sqlite:///{tmp_path / 'eg.db'}", home=tmp_path / "home"))
    finally:
        server.stop()

    c, b = result.candidate.metrics, result.baseline.metrics
    assert result.device["kind"] == "ssh" and result.device["timing_source"] == "device"
    assert c["inference_time_ms"].source is Source.DEVICE and c["inference_time_ms"].value > 0
    assert c["load_time_ms"].source is Source.DEVICE
    assert c["peak_memory_mb"].source is Source.DEVICE and c["peak_memory_mb"].value > 20
    assert "CPU-side" in result.candidate.memory_method
    assert b["inference_time_ms"].source is Source.HOST_CPU  # the FP32 golden runs on the host CPU
    for graph in ("pnet", "rnet", "onet"):
        assert result.candidate.latency[graph].n == 2
        assert result.candidate.compiled[graph].artifact.suffix == ".bin"  # the context qnn-net-run loads
    # Outputs came back from the board and were scored like any run's.
    assert c["npu_fraction"].value == 1.0
    assert 0.0 <= c["map50"].value <= 1.0 and "baseline_agreement" in c
    db = ExperimentDB(f"sqlite:///{tmp_path / 'eg.db'}")
    assert db.get_run(result.candidate.run_id).status in ("passed", "failed")  # not "error"
    assert list(work.iterdir()) == []  # scratch files removed from the board
    profiles = result.candidate.run_dir / "qnn"  # the run's own directory (runs/<id>-<key>)
    assert (profiles / "pnet" / "round_1" / "profile.txt").is_file()
