"""Toolchains: what each run records, comparisons refused across QAIRT / QNN SDK / device changes
(``--allow-toolchain-drift`` to override), runs stored before toolchains were recorded, AI Hub's
placement counts and the reproducibility check under a pinned or a floating QAIRT.

Stored runs are written straight into a temporary ExperimentDB (as run_variant leaves them);
the AI Hub tests drive the real target against the fake service with a tiny graph.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner

from edgegate.artifacts import ArtifactCache
from edgegate.cli import cli
from edgegate.db import ExperimentDB, StoredMetric
from edgegate.errors import InputError
from edgegate.metrics import Source
from edgegate.progress import Progress
from edgegate.regression import compare_runs
from edgegate.run.repro_check import ReproducibilityCheck, repro_plan
from edgegate.run.reproduce import ReproResult, compare_artifacts
from edgegate.run.stages import with_placement
from edgegate.targets.base import BenchmarkResult, CompiledGraph
from edgegate.toolchain import (
    graph_toolchain,
    host_toolchain,
    run_toolchain,
    toolchain_drift,
)

sys.path.insert(0, str(Path(__file__).parent))
from fakes.aihub_testing import RB3, aihub_target, serve, tiny_onnx

TOKEN = "eg-toolchain-token-5d1e0b7a33"
PACK = "sha256:" + "a" * 64
QAIRT_44, QAIRT_45 = "2.44.0.260227120002", "2.45.0.260326154327"
REFUSED = ("error: runs {b} and {c} ran on different toolchains ({what}); a comparison across compilers or devices "
           "misleads: rerun on one toolchain, or pass --allow-toolchain-drift\n")


def _aihub(qairt: str = QAIRT_45, device: str = RB3, client: str = "0.56.0") -> dict[str, str]:
    return {"qairt": qairt, "device": device, "device_os": "1.6", "chipset": "qualcomm-qcs6490", "client": client}


def _store(db: ExperimentDB, toolchain: dict[str, Any] | None, *, accuracy: float = 0.90) -> int:
    """A completed int8 run as run_variant leaves it (toolchain in details), or as runs stored
    before toolchains were recorded left it (None)."""
    details: dict[str, Any] = {"target": "rb3-aihub", "timing_source": "aihub-profile"}
    rid = db.start_run(invocation="t", pipeline="p", device="rb3-aihub", variant="int8", model_digest="sha256:m",
                       pack_digest=PACK, config_digest="sha256:c", details=details)
    db.add_metrics(rid, [StoredMetric("accuracy", accuracy, "ratio", "computed"),
                         StoredMetric("inference_time_ms", 4.0, "ms", "aihub-profile")])
    db.finish_run(rid, "completed", details=None if toolchain is None else {"toolchain": toolchain})
    return rid


@pytest.fixture
def db(tmp_path: Path) -> ExperimentDB:
    return ExperimentDB(f"sqlite:///{tmp_path / 'eg.db'}")


def _cli_compare(db: ExperimentDB, b: int, c: int, *extra: str) -> Any:
    return CliRunner().invoke(cli, ["compare", "--baseline-run", str(b), "--candidate-run", str(c), "--db", db.url, *extra])


# ----------------------------------------------------------------------------- recorded


def test_run_toolchain_merges_graphs_and_benchmark_the_benchmark_device_wins() -> None:
    # AI Hub: a "(Family)" device compiled on one phone and profiled on two others
    graphs = [{"toolchain": _aihub(device="Samsung Galaxy S24")}, {"toolchain": _aihub(device="Samsung Galaxy S24")}]
    bench = _aihub(device="Samsung Galaxy S24, Samsung Galaxy S24+")
    tc = run_toolchain([graph_toolchain(d) for d in graphs], bench, {"kind": "aihub"})
    assert tc == _aihub(device="Samsung Galaxy S24, Samsung Galaxy S24+")
    # what the benchmark did not report, the graphs did
    assert run_toolchain([{"qairt": QAIRT_45, "client": "0.56.0"}], {"qairt": None, "device": "x"}, {}) == {
        "qairt": QAIRT_45, "client": "0.56.0", "device": "x"}
    # a board: prepared on the host, run by the board's qnn-net-run
    board = run_toolchain(
        [graph_toolchain({"prepared_with": "QNN SDK 2.26.0 on the host"})] * 2,
        {"qnn_sdk": "v2.26.0.240828", "device": "root@rb5:22"}, {"kind": "rb5-ssh"},
    )
    assert board == {"prepared_with": "QNN SDK 2.26.0 on the host", "qnn_sdk": "v2.26.0.240828", "device": "root@rb5:22"}


def test_host_targets_record_the_runtime_packages_they_run_on() -> None:
    versions = {"onnxruntime": "1.32.0", "onnxruntime-qnn": "2.7.0"}
    assert host_toolchain({"kind": "cpu", "versions": versions}) == {"onnxruntime": "1.32.0"}
    assert host_toolchain({"kind": "qnn-emulator", "versions": versions}) == versions
    assert run_toolchain([graph_toolchain({"provider_options": {}})], None, {"kind": "qnn-emulator", "versions": versions}) == versions
    # a CPU golden and an emulator candidate: different kinds of target, not drift
    assert toolchain_drift({"onnxruntime": "1.32.0"}, versions) == {}
    assert toolchain_drift(versions, {**versions, "onnxruntime-qnn": "2.8.0"}) == {"onnxruntime-qnn": ("2.7.0", "2.8.0")}
    # only what moves numbers: a new qai-hub client or OS build is not drift
    assert toolchain_drift(_aihub(), {**_aihub(client="0.57.0"), "device_os": "1.7"}) == {}


def test_placement_counts_unspecified_layers_off_the_npu(tmp_path: Path) -> None:
    art = tmp_path / "g.bin"
    compiled = {"g": CompiledGraph("g", art, (art,), 0, 0), "h": CompiledGraph("h", art, (art,), 0, 0)}
    bench = BenchmarkResult(Source.AIHUB_PROFILE, (), None, None, "", details={"placement": {
        "g": {"NPU": 6, "GPU": 1, "CPU": 1, "UNSPECIFIED": 2}, "h": {"NPU": 4, "GPU": 0, "CPU": 0, "UNSPECIFIED": 0}}})
    out = with_placement(compiled, bench)
    assert (out["g"].npu_nodes, out["g"].cpu_nodes) == (6, 4)  # 60% on the NPU, not 75%
    assert (out["h"].npu_nodes, out["h"].cpu_nodes) == (4, 0)
    assert out["g"].details["placement"] == {"NPU": 6, "GPU": 1, "CPU": 1, "UNSPECIFIED": 2}


# ----------------------------------------------------------------------------- compare


def test_compare_refuses_a_qairt_change_and_allows_it_when_asked(db: ExperimentDB) -> None:
    b, c = _store(db, _aihub(QAIRT_44)), _store(db, _aihub(QAIRT_45), accuracy=0.80)
    what = f"qairt '{QAIRT_44}' vs '{QAIRT_45}'"
    with pytest.raises(InputError) as err:
        compare_runs(db, b, c)
    assert f"error: {err.value.message}\n" == REFUSED.format(b=b, c=c, what=what)
    res = _cli_compare(db, b, c)
    assert (res.exit_code, res.stderr, res.stdout) == (2, REFUSED.format(b=b, c=c, what=what), "")

    drift = compare_runs(db, b, c, allow_toolchain_drift=True)
    assert drift["toolchain_drift"] == {"qairt": [QAIRT_44, QAIRT_45]}
    assert drift["toolchain"] == {"baseline": _aihub(QAIRT_44), "candidate": _aihub(QAIRT_45)}
    said = f"toolchain differs, compared anyway (--allow-toolchain-drift): {what}"
    assert drift["notes"] == [said] and drift["metrics"]["accuracy"]["status"] == "regressed"
    assert db.comparison(drift["comparison_id"])["notes"].startswith(f"toolchain drift: {what}; accuracy: -0.1")
    res = _cli_compare(db, b, c, "--allow-toolchain-drift")
    assert res.exit_code == 1 and said in res.stdout.splitlines()  # accuracy regressed: exit 1 as ever
    md = _cli_compare(db, b, c, "--allow-toolchain-drift", "--format", "md")
    assert f"- {said}" in md.stdout.splitlines()


def test_compare_refuses_another_actual_device_and_a_board_sdk_change(db: ExperimentDB) -> None:
    b, c = _store(db, _aihub(device="Samsung Galaxy S24")), _store(db, _aihub(device="Samsung Galaxy S24+"))
    res = _cli_compare(db, b, c)
    assert (res.exit_code, res.stderr) == (2, REFUSED.format(b=b, c=c, what="device 'Samsung Galaxy S24' vs 'Samsung Galaxy S24+'"))
    board = {"qnn_sdk": "v2.26.0", "device": "root@rb5:22", "prepared_with": "QNN SDK 2.26.0 on the host"}
    b2, c2 = _store(db, board), _store(db, {**board, "qnn_sdk": "v2.28.0", "prepared_with": "QNN SDK 2.28.0 on the host"})
    with pytest.raises(InputError, match=r"\(qnn_sdk 'v2.26.0' vs 'v2.28.0'\); .* --allow-toolchain-drift$"):
        compare_runs(db, b2, c2)
    # the same toolchain (a newer client is not drift): compared, nothing to say
    same = compare_runs(db, _store(db, _aihub()), _store(db, _aihub(client="0.57.0")), store=False)
    assert same["toolchain_drift"] == {} and same["notes"] == []


def test_runs_without_a_recorded_toolchain_compare_as_before_with_a_note(db: ExperimentDB) -> None:
    old, new = _store(db, None), _store(db, _aihub())
    res = compare_runs(db, old, new)
    assert res["notes"] == [f"toolchain not recorded for run {old} (stored before runs recorded theirs): "
                            "not checked for toolchain drift"]
    assert res["toolchain"] == {"baseline": None, "candidate": _aihub()} and res["toolchain_drift"] == {}
    both = compare_runs(db, old, _store(db, None), store=False)
    assert both["notes"][0].startswith(f"toolchain not recorded for run {old} and {old + 2} ")
    out = _cli_compare(db, old, new)
    assert out.exit_code == 0 and "toolchain not recorded for run" in out.stdout


# ----------------------------------------------------------------------------- on the fake AI Hub


def _measure(target: Any, compiled: CompiledGraph, tmp: Path) -> dict[str, Any]:
    """What run_variant records for one variant of one graph on ``target``."""
    bench = target.benchmark([compiled], {}, warmup=1, repeats=3, min_seconds=0, work_dir=tmp)
    return run_toolchain([graph_toolchain(compiled.details)], bench.details.get("toolchain"), target.describe())


def test_aihub_qairt_change_and_family_phones_are_recorded_and_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db: ExperimentDB
) -> None:
    tiny = tiny_onnx(tmp_path / "tiny.onnx")
    with serve(monkeypatch, tmp_path, TOKEN):
        runs = {}
        for asked in ("2.44", "2.45"):
            t = aihub_target(qairt_version=asked)
            runs[asked] = _measure(t, t.compile("tiny", tiny, tmp_path / asked), tmp_path / f"run-{asked}")
        assert runs["2.45"] == {"qairt": QAIRT_45, "device": RB3, "device_os": "1.6", "chipset": "qualcomm-qcs6490",
                                "client": t.describe()["versions"]["qai-hub"]}
        assert runs["2.44"]["qairt"] == QAIRT_44
        # a "(Family)" device: each profile job runs on whichever phone is free
        family = aihub_target(device="Samsung Galaxy S24 (Family)")
        c = family.compile("tiny", tiny, tmp_path / "family")
        night1, night2 = _measure(family, c, tmp_path / "n1"), _measure(family, c, tmp_path / "n2")
    assert night1["device"] != night2["device"] and {night1["device"], night2["device"]} == {
        "Samsung Galaxy S24", "Samsung Galaxy S24+"}
    b, c2 = _store(db, runs["2.44"]), _store(db, runs["2.45"])
    with pytest.raises(InputError, match=f"qairt '{QAIRT_44}' vs '{QAIRT_45}'"):
        compare_runs(db, b, c2)
    with pytest.raises(InputError, match=re.escape(f"device '{night1['device']}' vs '{night2['device']}'")):
        compare_runs(db, _store(db, night1), _store(db, night2))


# ----------------------------------------------------------------------------- reproducibility


def test_repro_plan_by_qairt() -> None:
    assert repro_plan({"kind": "qnn-emulator"}).compile_in == (True,)  # the double run: this run + one
    assert repro_plan({"kind": "qnn-emulator"}, repeats=3).compile_in == (True, True, True)
    pinned = repro_plan({"kind": "aihub", "qairt_version": "2.45"}, repeats=2)
    assert pinned.compile_in == (True, False) and pinned.not_applicable is None and "2.45" in (pinned.note or "")
    for tag in ("latest", "default"):
        floating = repro_plan({"kind": "aihub", "qairt_version": tag}, repeats=2)
        assert floating.compile_in == (False, False)  # no AI Hub job submitted by the check
        assert floating.not_applicable and f"QAIRT '{tag}'" in floating.not_applicable


def test_compare_artifacts_leaves_a_worker_that_did_not_compile_out_of_compiled(tmp_path: Path) -> None:
    def files(tag: str, compiled: bool) -> dict[str, Any]:
        d = tmp_path / tag
        d.mkdir()
        (d / "enc.json").write_text('{"a": 1}')
        (d / "q.onnx").write_bytes(b"q")
        (d / "ctx.bin").write_bytes(b"ctx-" + tag.encode())  # a different compiled byte per set
        out: dict[str, Any] = {"encodings": str(d / "enc.json"), "qdq_onnx": str(d / "q.onnx")}
        return {"g": {**out, "compiled": [str(d / "ctx.bin")]} if compiled else out}

    res = compare_artifacts([("this run", files("run", True)), ("fresh process 1", files("w1", False)),
                             ("fresh process 2", files("w2", False))])
    assert res.reproducible and {r["artifact"] for r in res.checked} == {"encodings", "qdq_onnx"}
    res = compare_artifacts([("this run", files("run2", True)), ("fresh process 1", files("w3", True)),
                             ("fresh process 2", files("w4", False))])
    assert not res.reproducible and res.first_difference == "g: compiled ctx.bin differs (this run vs fresh process 1)"


@pytest.mark.parametrize(("qairt", "quantization_equal", "metric", "reproducible"), [
    ("latest", True, None, None),  # not applicable: never passed
    ("latest", False, 0.0, False),  # quantization differs: that is a failure whatever the QAIRT
    ("2.45", True, 1.0, True),
])
def test_check_reproducible_on_aihub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, qairt: str,
                                     quantization_equal: bool, metric: float | None, reproducible: bool | None) -> None:
    from edgegate.run import repro_check

    asked: dict[str, Any] = {}

    def fake_start(*args: Any, compile_in: tuple[bool, ...], **kw: Any) -> Any:
        asked["compile_in"] = compile_in
        return SimpleNamespace(wait=lambda: [{}], stop=lambda: None, finished=False)

    def fake_compare(primary: Any, manifests: Any) -> ReproResult:
        return ReproResult(quantization_equal, [{"equal": quantization_equal}], None if quantization_equal else "g: differs")

    monkeypatch.setattr(repro_check, "start_workers", fake_start)
    monkeypatch.setattr(repro_check, "compare_with_run", fake_compare)
    target = SimpleNamespace(describe=lambda: {"kind": "aihub", "qairt_version": qairt}, deterministic=False)
    ctx = SimpleNamespace(home=tmp_path, target=target)
    candidate = SimpleNamespace(run_id=7, compiled={}, run_dir=tmp_path / "runs" / "7-k")
    check = ReproducibilityCheck(ctx, "p.yaml", None, {}, {}, ArtifactCache(tmp_path / "a"), Progress(quiet=True))  # type: ignore[arg-type]
    check.start(tmp_path / "work")
    check.join()
    out = check.finish({}, candidate, None)  # type: ignore[arg-type]
    assert asked["compile_in"] == ((False,) if qairt == "latest" else (True,))
    assert (out.metrics["reproducible"].value if out.metrics else None) == metric
    assert out.summary["reproducible"] is reproducible
    assert ("not_applicable" in out.summary) is (qairt == "latest")


# ----------------------------------------------------------------------------- a pipeline on the fake AI Hub


ROOT = Path(__file__).resolve().parents[1]
AIHUB_PIPE = ROOT / "tests" / "fixtures" / "pipelines" / "person_detect_mini_aihub.yaml"


def _device(tmp: Path, name: str, qairt: str) -> Path:
    """A QCS8250 (Proxy) device file asking for `qairt` (the 2025 catalogue still lists it)."""
    path = tmp / f"{name}.yaml"
    path.write_text(f"name: {name}\nkind: aihub\nchipset: qcs8250\narch: v66\ndevice: QCS8250 (Proxy)\n"
                    f"qairt_version: '{qairt}'\npoll_interval_s: 0.05\njob_timeout_s: 120\nmax_retries: 3\n")
    return path


@pytest.mark.slow
def test_pipeline_on_aihub_records_toolchain_and_checks_reproducibility_by_qairt(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from fakes.aihub_server import CATALOGUE_2025

    from edgegate.run.pipeline import RunOptions, run_pipeline

    def run(device: Path, **kw: Any) -> Any:
        return run_pipeline(AIHUB_PIPE, RunOptions(device=str(device), db_url=f"sqlite:///{tmp_path / 'eg.db'}",
                                                   home=tmp_path / "home", evidence="never", **kw))

    with serve(monkeypatch, tmp_path, TOKEN, devices=CATALOGUE_2025) as fake:
        # Pinned QAIRT: one fresh compile per graph (worker 1), compared with this run's bytes.
        pinned = run(_device(tmp_path, "qcs8250-pinned", "2.45"), verify_reproducible=True)
        assert fake.count("compile") == 3 + 3 + 3  # baseline, candidate, one reproducibility worker
        assert pinned.candidate.metrics["reproducible"].value == 1.0, pinned.reproducibility["first_difference"]
        compiled_rows = [r for r in pinned.reproducibility["checked"] if r["artifact"] == "compiled"]
        assert {r["compared"] for r in compiled_rows} == {"this run vs fresh process 1"} and len(compiled_rows) == 3
        assert pinned.report["candidate"]["toolchain"]["qairt"] == QAIRT_45
        assert pinned.report["candidate"]["toolchain"]["device"] == "QCS8250 (Proxy)"
        # QAIRT 'latest': no compile job for the check, and the check is not applicable (never passed)
        before = fake.count("compile")
        floating = run(_device(tmp_path, "qcs8250-latest", "latest"), verify_reproducible=True)
        assert fake.count("compile") - before == 3 + 3
        assert "reproducible" not in floating.candidate.metrics
        assert floating.reproducibility["reproducible"] is None
        assert floating.reproducibility["not_applicable"].startswith("QAIRT 'latest' is resolved by AI Hub")
        assert floating.report["candidate"]["toolchain"]["qairt"] == "2.46.0.260430101500"
        # The pinned device moves to 2.44: its golden (2.45) is kept, with a note and a report line
        moved = run(_device(tmp_path, "qcs8250-pinned", "2.44"))
    assert moved.baseline.from_golden and moved.golden_run_id == pinned.golden_run_id
    what = f"qairt '{QAIRT_45}' vs '{QAIRT_44}'"
    assert any(n.startswith(f"golden run {pinned.golden_run_id} was measured with another toolchain than this "
                            f"candidate ({what})") for n in moved.notes)
    from edgegate.report.run_report import render_terminal

    assert f"Toolchain differs: qairt {QAIRT_45} (baseline) vs {QAIRT_44} (candidate)" in render_terminal(moved.report)
    db = ExperimentDB(f"sqlite:///{tmp_path / 'eg.db'}")
    with pytest.raises(InputError, match=re.escape(what)):
        compare_runs(db, pinned.candidate.run_id, moved.candidate.run_id)
