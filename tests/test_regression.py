"""compare_models / compare_runs / strict gates on the real MTCNN cascade and the mini pack."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from sqlalchemy.orm import Session

from edgegate.cli import cli
from edgegate.db import ExperimentDB, RunRow
from edgegate.errors import InputError
from edgegate.gates import GateStatus, parse_gate
from edgegate.metrics import Measurement, Source
from edgegate.results import VariantResult
from edgegate.run.checks import strict_gates as _strict_gates
from edgegate.run.pipeline import RunOptions, run_pipeline
from edgegate.regression import EvalConfig, Rebench, TaskSpec, compare_models, compare_runs
from edgegate.packs.scorers import get_scorer
from edgegate.targets.base import Variant
from edgegate.zoo import mtcnn

ROOT = Path(__file__).resolve().parents[1]
MINI_PACK = ROOT / "tests" / "fixtures" / "packs" / "person_detect_mini"
MINI = ROOT / "tests" / "fixtures" / "pipelines" / "person_detect_mini.yaml"

TASK = TaskSpec(modality="vision", task="detection")
EVAL = EvalConfig(promptpack=MINI_PACK, split="eval")


def _adapter() -> mtcnn.MTCNNAdapter:
    return mtcnn.MTCNNAdapter(rnet_batch=16, onet_batch=4)


def _fp32() -> dict:
    return {"pnet": mtcnn.pnet(), "rnet": mtcnn.rnet(), "onet": mtcnn.onet()}


def test_identical_models_are_neutral() -> None:
    res = compare_models(_fp32(), _fp32(), _adapter(), TASK, EVAL)
    assert set(res["metrics"]) == {"precision", "recall", "f1", "map50", "accuracy"}
    assert all(m["delta"] == 0 and m["status"] == "neutral" for m in res["metrics"].values())
    assert res["candidate_only"]["baseline_agreement"] == 1.0
    assert "comparison_id" not in res


def test_damaged_candidate_regresses_and_is_stored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cand = _fp32()
    # O-Net's face logit pushed down: faces fall under its 0.7 threshold, recall drops.
    cand["onet"].dense6_1.bias.data[1] -= 6.0
    db = ExperimentDB(f"sqlite:///{tmp_path / 'c.db'}")
    with caplog.at_level(logging.WARNING, logger="edgegate.compare"):
        res = compare_models(_fp32(), cand, _adapter(), TASK, EVAL, db=db, comparison_name="onet-damaged")
    recall = res["metrics"]["recall"]
    assert recall["status"] == "regressed" and recall["delta"] < -0.2
    assert any("regression: recall" in r.getMessage() for r in caplog.records)
    stored = db.comparison(res["comparison_id"])
    assert (stored["baseline_run_id"], stored["candidate_run_id"]) == (res["baseline_run_id"], res["candidate_run_id"])
    assert stored["name"] == "onet-damaged" and stored["verdict"] == "regressed"
    assert f"recall: {recall['delta']:+.4g}" in stored["notes"]
    assert stored["metrics"]["recall"]["ci"] is not None  # paired bootstrap CI of the delta


def test_task_metrics_filter_and_unknown_metric() -> None:
    res = compare_models(_fp32(), _fp32(), _adapter(), TaskSpec("vision", "detection", metrics=["recall"]), EVAL)
    assert list(res["metrics"]) == ["recall"]
    with pytest.raises(InputError, match="did you mean 'recall'"):
        compare_models(_fp32(), _fp32(), _adapter(), TaskSpec("vision", "detection", metrics=["recal"]), EVAL)


@pytest.fixture(scope="module")
def stored_runs(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("runs")
    opts = dict(device="cpu", db_url=f"sqlite:///{tmp / 'r.db'}", home=tmp / "home")
    first = run_pipeline(MINI, RunOptions(**opts))
    second = run_pipeline(MINI, RunOptions(**opts))
    return tmp, first, second


def test_compare_stored_runs_and_pack_drift(stored_runs) -> None:
    tmp, first, second = stored_runs
    db = ExperimentDB(f"sqlite:///{tmp / 'r.db'}")
    res = compare_runs(db, first.candidate.run_id, second.candidate.run_id)
    lat = res["metrics"]["inference_time_ms"]
    # 3 benchmark processes a run (the pipeline's): tested between processes, not samples
    assert lat["test"] == "mann-whitney-u on process values" and len(lat["ratio_ci"]) == 2
    assert lat["unit"] == "process" and lat["processes"] == [3, 3]
    assert res["metrics"]["map50"]["status"] == "neutral" and res["comparison_id"] >= 1
    # FP32 golden vs INT8 on the same host CPU: same source, a real comparison.
    res2 = compare_runs(db, first.baseline.run_id, first.candidate.run_id, store=False)
    assert res2["metrics"]["inference_time_ms"]["status"] != "incomparable"
    assert "comparison_id" not in res2

    with Session(db.engine) as s, s.begin():
        s.get(RunRow, second.candidate.run_id).pack_digest = "sha256:" + "0" * 64
    with pytest.raises(InputError, match="different PromptPacks .* --allow-pack-drift"):
        compare_runs(db, first.candidate.run_id, second.candidate.run_id)
    drift = compare_runs(db, first.candidate.run_id, second.candidate.run_id, allow_pack_drift=True)
    assert drift["pack_drift"] is True


def test_runs_record_their_toolchain(stored_runs) -> None:
    from edgegate.versions import package_versions

    tmp, first, second = stored_runs
    db = ExperimentDB(f"sqlite:///{tmp / 'r.db'}")
    cpu = package_versions(["onnxruntime"])  # what the host CPU target runs on
    for v in (first.baseline, first.candidate, second.candidate):
        assert db.get_run(v.run_id).details["toolchain"] == cpu
    assert first.report["candidate"]["toolchain"] == first.report["baseline"]["toolchain"] == cpu
    assert second.baseline.from_golden and second.report["baseline"]["toolchain"] == cpu  # read back from golden
    assert "toolchain" not in second.report["candidate"]["target"]
    assert not any("toolchain" in n for n in second.notes)  # same toolchain: nothing to say
    same = compare_runs(db, first.baseline.run_id, second.baseline.run_id, store=False)
    assert same["toolchain_drift"] == {} and same["notes"] == []


def test_cli_compare_formats_and_exit_codes(stored_runs) -> None:
    tmp, first, _ = stored_runs
    db_url = f"sqlite:///{tmp / 'r.db'}"
    runner = CliRunner()
    ids = ["--baseline-run", str(first.baseline.run_id), "--candidate-run", str(first.baseline.run_id)]
    res = runner.invoke(cli, ["compare", *ids, "--db", db_url])
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[0].startswith(f"Comparison: run {first.baseline.run_id} (baseline)")
    assert "Verdict: neutral" in res.stdout
    md = runner.invoke(cli, ["compare", *ids, "--format", "md", "--db", db_url])
    assert "| Metric | Baseline | Candidate | Delta | 95% CI / test | Status |" in md.stdout
    js = runner.invoke(cli, ["compare", *ids, "--format", "json", "--db", db_url])
    assert json.loads(js.stdout)["verdict"] == "neutral"
    bad = runner.invoke(cli, ["compare", "--baseline-run", "999", "--candidate-run", "1", "--db", db_url])
    assert bad.exit_code == 2 and bad.stderr.startswith("error: --baseline-run: no run with id 999")
    thr = runner.invoke(cli, ["compare", *ids, "--threshold", "accuracy=x", "--db", db_url])
    assert thr.exit_code == 2 and "not a number or a percentage" in thr.stderr


def test_rebench_times_both_runs_again_interleaved(stored_runs) -> None:
    tmp, first, _ = stored_runs
    db = ExperimentDB(f"sqlite:///{tmp / 'r.db'}")
    b, c = first.baseline.run_id, first.candidate.run_id  # FP32 vs INT8, both on the host CPU
    stored = {k: m.value for k, m in db.metrics(c).items()}
    res = compare_runs(db, b, c, rebench=Rebench(processes=3, repeats=4, warmup=1, work_dir=tmp / "rb"), store=False)
    lat = res["metrics"]["inference_time_ms"]
    assert lat["test"].startswith("wilcoxon signed-rank on paired") and lat["processes"] == [3, 3]
    assert res["rebench"]["target"] == "cpu" and res["rebench"]["processes"] == 3
    assert lat["candidate"] != stored["inference_time_ms"]  # measured now, not read back
    # the six fresh workers ran A B, B A, A B
    order = sorted((tmp / "rb").glob("*/bench_request.json"), key=lambda p: p.stat().st_mtime_ns)
    assert [p.parent.name for p in order] == ["a0", "b0", "b1", "a1", "a2", "b2"]

    runner = CliRunner()
    ids = ["--baseline-run", str(b), "--candidate-run", str(c), "--db", f"sqlite:///{tmp / 'r.db'}"]
    out = runner.invoke(cli, ["compare", *ids, "--rebench"])  # the run's own settings: 3 processes x 3 repeats
    assert out.exit_code in (0, 1), out.output
    assert "latency re-measured now, interleaved on cpu (host-cpu): 3 processes per side x 3 repeats" in out.stdout
    two = runner.invoke(cli, ["compare", *ids, "--rebench", "--processes", "2", "--format", "json"])
    assert json.loads(two.stdout)["rebench"]["processes"] == 2
    plain = runner.invoke(cli, ["compare", *ids])
    assert "--rebench times both again side by side" in plain.stdout
    bad = runner.invoke(cli, ["compare", *ids, "--processes", "3"])
    assert bad.exit_code == 2 and bad.stderr.strip() == "error: --processes: only used with --rebench"

    # a compiled graph changed on disk since the run: refused, nothing timed
    art = next(a for a in db.artifacts(c) if a["kind"] == "bench_inputs")
    saved = Path(art["path"]).read_bytes()
    try:
        Path(art["path"]).write_bytes(saved + b"x")
        with pytest.raises(InputError, match=r"--rebench: run \d+: .* changed since the run"):
            compare_runs(db, b, c, rebench=Rebench(processes=1, repeats=1, warmup=0), store=False)
    finally:
        Path(art["path"]).write_bytes(saved)


def test_strict_gates_use_the_conservative_ci_bound(tmp_path: Path) -> None:
    # 20 images: 16 with their face found, 4 missed -> recall 0.8 exactly.
    records = [
        {"id": f"s{i}", "n_gt": 1, "n_pred": 1 if i < 16 else 0, "tp": 1 if i < 16 else 0, "fp": 0,
         "fn": 0 if i < 16 else 1, "correct": i < 16, "scores": [0.99] if i < 16 else [], "is_tp": [True] if i < 16 else []}
        for i in range(20)
    ]
    run_dir = tmp_path / "runs" / "7"
    run_dir.mkdir(parents=True)
    (run_dir / "per_sample.json").write_text(json.dumps({"detection": records}))
    ctx = SimpleNamespace(home=tmp_path, scorers=[get_scorer("detection")])
    metrics = {"recall": Measurement(0.8, Source.COMPUTED, "ratio")}
    cand = VariantResult(Variant.INT8, 7, {}, metrics, run_dir=run_dir)
    base = VariantResult(Variant.FP32, 1, {}, {"recall": Measurement(0.8, Source.COMPUTED, "ratio")})
    gates = [parse_gate("recall >= 0.75"), parse_gate("recall >= 0.9 * baseline")]
    from edgegate.gates import evaluate_gates

    plain = evaluate_gates(gates, metrics, base.metrics)
    assert [r.status for r in plain] == [GateStatus.PASS, GateStatus.PASS]
    strict = _strict_gates(ctx, gates, cand, base, plain)
    assert [r.status for r in strict] == [GateStatus.FAIL, GateStatus.FAIL]
    assert strict[0].value < 0.75 and strict[0].reason.startswith("strict, lower 95% CI bound")
