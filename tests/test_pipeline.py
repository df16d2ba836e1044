"""Integration: the whole pipeline on the real MTCNN cascade and the mini PromptPack,
on both host targets (ONNX Runtime CPU and the QNN HTP emulator)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from edgegate.db import ExperimentDB
from edgegate.gates import GateStatus
from edgegate.metrics import Source
from edgegate.run.pipeline import RunOptions, run_pipeline

ROOT = Path(__file__).resolve().parents[1]
MINI = ROOT / "tests" / "fixtures" / "pipelines" / "person_detect_mini.yaml"

pytestmark = pytest.mark.slow


def _options(tmp: Path, device: str | None = None, **kw) -> RunOptions:
    return RunOptions(device=device, db_url=f"sqlite:///{tmp / 'eg.db'}", home=tmp / "home", **kw)


@pytest.fixture(scope="module")
def emulator_runs(tmp_path_factory: pytest.TempPathFactory, monkeypatch_module):
    """Two runs on htp-sim, in a cache of their own: the first makes the golden, the second
    reuses every cache (with the reproducibility check, a double run, both times)."""
    tmp = tmp_path_factory.mktemp("htp")
    monkeypatch_module.delenv("EDGEGATE_CACHE", raising=False)
    first = run_pipeline(MINI, _options(tmp, verify_reproducible=True, jobs=1))
    second = run_pipeline(MINI, _options(tmp, verify_reproducible=True))
    return tmp, first, second


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def _records(result) -> dict[str, bytes]:
    """The candidate's stored predictions and per-sample records, byte for byte."""
    return {a["kind"]: Path(a["path"]).read_bytes() for a in result.candidate.artifacts
            if a["kind"] in ("predictions", "per_sample_scores")}


def test_second_run_reuses_deterministic_results_and_says_from_which_run(emulator_runs) -> None:
    tmp, first, second = emulator_runs
    assert first.candidate.reused == {} and "reused_from" not in first.adversarial
    assert "reused_from" not in first.reproducibility and first.reproducibility["fresh_processes"] == 1
    by = second.candidate.reused["predictions"]
    assert by["run_id"] == first.candidate.run_id and by["run_key"] == first.candidate.run_key
    assert second.reproducibility["reused_from"]["run_id"] == first.candidate.run_id
    assert second.adversarial["reused_from"]["run_id"] == first.candidate.run_id
    # Reused results are the same results; quality metrics follow; timings are measured again.
    assert _records(second) == _records(first)
    assert second.candidate.metrics["map50"] == first.candidate.metrics["map50"]
    assert second.candidate.metrics["reproducible"].value == 1.0
    db = ExperimentDB(f"sqlite:///{tmp / 'eg.db'}")
    assert db.latency_samples(second.candidate.run_id)["pnet"] != db.latency_samples(first.candidate.run_id)["pnet"]
    assert db.get_run(second.candidate.run_id).details["reused"]["predictions"]["run_id"] == first.candidate.run_id
    report = json.loads(second.report_path.read_text())
    assert report["candidate"]["reused"]["predictions"]["run_id"] == first.candidate.run_id
    from edgegate.report.run_report import render_terminal

    text = render_terminal(report)
    assert f"INT8 predictions from run {first.candidate.run_id}" in text and "--no-cache" in text


def test_no_cache_and_two_workers_compute_the_same_records(emulator_runs, tmp_path: Path) -> None:
    """--no-cache recomputes everything (nothing reused), here in a fresh database (so the FP32
    baseline on the host CPU runs too) with predictions spread over two worker processes: the
    same bytes as the first, one-process run (the emulator and ONNX Runtime are deterministic,
    and the workers' slices are merged in sample order)."""
    _, first, _ = emulator_runs
    third = run_pipeline(MINI, _options(tmp_path, use_cache=False, jobs=2))
    assert third.candidate.reused == {} and "reused_from" not in third.adversarial
    assert not any(c.details["cached"] for c in third.candidate.compiled.values())
    assert _records(third) == _records(first)
    assert not third.baseline.from_golden
    fp32 = [Path(a["path"]).read_bytes() for r in (first, third) for a in r.baseline.artifacts if a["kind"] == "predictions"]
    assert len(fp32) == 2 and fp32[0] == fp32[1]
    assert third.candidate.calls_per_image == first.candidate.calls_per_image
    assert third.adversarial["disagreement_rate"] == first.adversarial["disagreement_rate"]


def test_first_run_makes_golden_then_candidate(emulator_runs) -> None:
    tmp, first, _ = emulator_runs
    db = ExperimentDB(f"sqlite:///{tmp / 'eg.db'}")
    base = db.get_run(first.baseline.run_id)
    cand = db.get_run(first.candidate.run_id)
    assert (base.variant, base.status) == ("fp32", "completed")
    assert (cand.variant, cand.status) == ("int8", "passed" if first.passed else "failed")
    assert db.golden("person_detect_mini", "htp-sim") == base.id
    assert cand.golden_run_id == base.id
    assert base.pack_digest == cand.pack_digest and base.pack_digest.startswith("sha256:")
    # every latency sample knows its benchmark process (3 processes x 3 repeats)
    procs = db.latency_processes(cand.id)
    assert sorted(procs) == ["onet", "pnet", "rnet"]
    assert all(p == [0, 0, 0, 1, 1, 1, 2, 2, 2] for p in procs.values())
    # No run is left "running" after the process is done with it.
    assert all(r.status != "running" for r in db.list_runs())


def test_candidate_runs_on_the_npu_with_sources(emulator_runs) -> None:
    _, first, _ = emulator_runs
    c, b = first.candidate.metrics, first.baseline.metrics
    assert c["inference_time_ms"].source is Source.HOST_EMULATOR
    assert b["inference_time_ms"].source is Source.HOST_CPU  # FP32 reference on the host CPU
    assert c["npu_fraction"].value == 1.0 and c["cpu_nodes"].value == 0
    assert c["npu_nodes"].value > 200  # P-Net + R-Net + O-Net QDQ graphs, every node on the NPU
    assert 0.0 <= c["map50"].value <= 1.0 and "baseline_agreement" in c
    assert c["peak_memory_mb"].value > 0
    # INT8 weights are a quarter of FP32's (biases stay 32-bit).
    assert 0.24 < c["model_size_kb"].value / b["model_size_kb"].value < 0.27
    for graph in ("pnet", "rnet", "onet"):
        assert first.candidate.latency[graph].n == 9  # 3 repeats in each of 3 processes (the pipeline's)
        assert first.candidate.compiled[graph].artifact.name == f"{graph}_qnn_ctx.onnx"


def test_emulator_latency_gate_is_not_applicable(emulator_runs) -> None:
    _, first, _ = emulator_runs
    latency_gate = next(g for g in first.gates if g.gate.metric == "inference_time_ms")
    assert latency_gate.status is GateStatus.NOT_APPLICABLE
    assert "host-emulator" in latency_gate.reason


def test_second_run_reuses_golden_and_cache(emulator_runs) -> None:
    _, first, second = emulator_runs
    assert second.baseline.from_golden and second.baseline.run_id == first.baseline.run_id
    assert second.candidate.run_id != first.candidate.run_id
    assert all(c.details["cached"] for c in second.candidate.compiled.values())
    # Same artifacts, byte for byte: compile was skipped, quantize was skipped.
    def digests(r):
        return sorted((a["kind"], a["graph"], a["sha256"]) for a in r.candidate.artifacts if a["kind"] != "predictions" and a["kind"] != "per_sample_scores")
    assert digests(first) == digests(second)


def test_json_report_written(emulator_runs) -> None:
    _, first, _ = emulator_runs
    report = json.loads(first.report_path.read_text())
    assert report["pipeline"] == "person_detect_mini"
    assert report["candidate"]["metrics"]["inference_time_ms"]["source"] == "host-emulator"
    assert report["verdict"]["speedup"]["value"] is None  # host-cpu vs host-emulator: no speedup claimed
    assert {g["expr"] for g in report["gates"]} >= {"inference_time_ms <= 50"}


def test_cpu_target_end_to_end(tmp_path: Path) -> None:
    result = run_pipeline(MINI, _options(tmp_path, device="cpu"))
    c = result.candidate.metrics
    assert c["inference_time_ms"].source is Source.HOST_CPU
    assert result.baseline.metrics["inference_time_ms"].source is Source.HOST_CPU
    assert c["npu_nodes"].value == 0 and c["npu_fraction"].value == 0.0
    report = json.loads(result.report_path.read_text())
    assert report["verdict"]["speedup"]["value"] > 0  # same source: a speedup can be stated
    assert ExperimentDB(f"sqlite:///{tmp_path / 'eg.db'}").golden("person_detect_mini", "cpu") == result.baseline.run_id


def test_rebaseline_makes_a_new_golden(tmp_path: Path) -> None:
    opts = _options(tmp_path, device="cpu")
    first = run_pipeline(MINI, opts)
    again = run_pipeline(MINI, _options(tmp_path, device="cpu", rebaseline=True))
    assert not again.baseline.from_golden
    assert again.baseline.run_id != first.baseline.run_id
    db = ExperimentDB(f"sqlite:///{tmp_path / 'eg.db'}")
    assert db.golden("person_detect_mini", "cpu") == again.baseline.run_id


def test_failing_gate_and_pack_drift(tmp_path: Path) -> None:
    pack = tmp_path / "pack"
    shutil.copytree(MINI.parents[1] / "packs" / "person_detect_mini", pack)
    spec = yaml.safe_load(MINI.read_text())
    spec["evaluation"]["promptpack"] = str(pack)
    spec["gates"] = ["map50 >= 1.5"]
    pipe = tmp_path / "p.yaml"
    pipe.write_text(yaml.safe_dump(spec))
    result = run_pipeline(pipe, _options(tmp_path, device="cpu"))
    assert not result.passed and result.gates[0].status is GateStatus.FAIL
    db = ExperimentDB(f"sqlite:///{tmp_path / 'eg.db'}")
    assert db.get_run(result.candidate.run_id).status == "failed"

    # Change the pack (a new version: a new manifest digest): the golden was scored on
    # another digest, so comparing is refused until --rebaseline.
    manifest = pack / "manifest.yaml"
    text = manifest.read_text()
    assert "version: 1.0.0" in text
    manifest.write_text(text.replace("version: 1.0.0", "version: 1.0.1", 1))
    from edgegate.errors import InputError

    with pytest.raises(InputError, match="--rebaseline"):
        run_pipeline(pipe, _options(tmp_path, device="cpu"))
    assert all(r.status != "running" for r in db.list_runs())
