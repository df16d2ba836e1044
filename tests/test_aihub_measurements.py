"""AI Hub measurements are fresh, their toolchain pinned and recorded, their memory and
placement as AI Hub shows them (issue 13, items 1-4 and 7), against the fake AI Hub."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from edgegate.artifacts import ArtifactCache
from edgegate.db import ExperimentDB
from edgegate.errors import CompileError, TargetError
from edgegate.targets.aihub import profile_result
from edgegate.targets.base import CompiledGraph, Variant, benchmark_interleaved

sys.path.insert(0, str(Path(__file__).parent))
from fakes.aihub_server import FakeAihub  # noqa: E402
from fakes.aihub_testing import IQ9075, RB3, aihub_target, attach, serve, tiny_onnx  # noqa: E402

TOKEN = "eg-measure-token-41d0c7e2"
BENCH = {"warmup": 0, "repeats": 1, "min_seconds": 0}


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    with serve(monkeypatch, tmp_path, TOKEN) as server:
        yield server


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return tiny_onnx(tmp_path / "tiny.onnx")


@pytest.fixture
def db(tmp_path: Path) -> ExperimentDB:
    return ExperimentDB(f"sqlite:///{tmp_path / 'eg.db'}")


def _job_ids(bench) -> list[str]:
    return [p["job_id"] for p in bench.details["profiles"].values()]


# ----------------------------------------------------------------------------- fresh measurements


def test_every_run_rebench_and_rerun_submits_new_profile_jobs(
    fake: FakeAihub, tiny: Path, db: ExperimentDB, tmp_path: Path
) -> None:
    t = aihub_target(db)
    c = t.compile("tiny", tiny, tmp_path / "c")
    first = t.benchmark([c], {}, work_dir=tmp_path / "w1", **BENCH)
    again = t.benchmark([c], {}, work_dir=tmp_path / "w2", **BENCH)  # a confirmation rerun, same process
    assert fake.count("profile") == 2 and _job_ids(first) != _job_ids(again)
    # compare --rebench: A/B interleaved, each process its own profile jobs
    a, b = benchmark_interleaved(t, ([c], {}), ([c], {}), processes=2, work_dir=tmp_path / "ab", **BENCH)
    assert fake.count("profile") == 6
    # the next run (a new invocation on the same database) measures again
    attach(t, db, "nightly-2")
    t.benchmark([c], {}, work_dir=tmp_path / "w3", **BENCH)
    # a rebench target is not attached to any run: its own jobs too
    lone = aihub_target()
    lone.benchmark([c], {}, work_dir=tmp_path / "w4", **BENCH)
    assert fake.count("profile") == 8
    assert not any(j["reused"] for j in db.aihub_jobs() if j["kind"] == "profile")


def test_a_restarted_run_waits_on_its_own_in_flight_profile_job(
    fake: FakeAihub, tiny: Path, db: ExperimentDB, tmp_path: Path
) -> None:
    hold = fake.behave("profile", never_finish=True)
    t = aihub_target(db, invocation="inv-1", job_timeout_s=0.3)
    c = t.compile("tiny", tiny, tmp_path / "c")
    with pytest.raises(TargetError, match="rerun to keep waiting on the same job"):
        t.benchmark([c], {}, work_dir=tmp_path / "w1", **BENCH)
    (waiting,) = [s["job_id"] for s in fake.submissions if s["kind"] == "profile"]
    hold.never_finish, hold.delay_s = False, 0.0  # the service finishes it meanwhile
    # restarted with the same invocation: the same job, not a second one
    t2 = aihub_target(db, invocation="inv-1")
    bench = t2.benchmark([c], {}, work_dir=tmp_path / "w2", **BENCH)
    assert fake.count("profile") == 1 and _job_ids(bench) == [waiting]
    assert bench.details["profiles"]["tiny"]["reused_job"] is True


def test_a_crashed_run_is_taken_over_by_its_restart_but_finished_jobs_never_are(
    fake: FakeAihub, tiny: Path, db: ExperimentDB, tmp_path: Path
) -> None:
    hold = fake.behave("profile", never_finish=True)
    t = aihub_target(db, job_timeout_s=0.3)
    c = t.compile("tiny", tiny, tmp_path / "c")
    with pytest.raises(TargetError):
        t.benchmark([c], {}, work_dir=tmp_path / "w1", **BENCH)
    db.finish_run(t.ledger.run_id, "aborted")  # the process died (ExperimentDB marks it so on open)
    hold.never_finish, hold.delay_s = False, 0.0
    # the same command again (a new invocation): it waits on the crashed run's job
    t2 = aihub_target(db)
    bench = t2.benchmark([c], {}, work_dir=tmp_path / "w2", **BENCH)
    assert fake.count("profile") == 1 and bench.details["profiles"]["tiny"]["reused_job"] is True
    db.finish_run(t2.ledger.run_id, "completed")
    # a third run: the finished measurements of the others are yesterday's numbers
    t3 = aihub_target(db)
    t3.benchmark([c], {}, work_dir=tmp_path / "w3", **BENCH)
    db.finish_run(t3.ledger.run_id, "aborted")  # crashed after its profile finished
    t4 = aihub_target(db)
    t4.benchmark([c], {}, work_dir=tmp_path / "w4", **BENCH)
    assert fake.count("profile") == 3


# ----------------------------------------------------------------------------- toolchain


def test_a_qairt_change_is_recorded_and_misses_the_compile_cache(
    fake: FakeAihub, tiny: Path, db: ExperimentDB, tmp_path: Path
) -> None:
    from edgegate.run.stages import compile_graphs

    cache = ArtifactCache(tmp_path / "cache")

    def compiled(**kw) -> CompiledGraph:
        return compile_graphs(aihub_target(db, **kw), {"tiny": tiny}, cache, Variant.INT8)["tiny"]

    base = compiled()
    assert base.details["toolchain"]["qairt"] == "2.45.0.260326154327"
    assert "--qairt_version 2.45" in fake.submissions[-1]["options"]
    assert compiled().details["cached"] is True and fake.count("compile") == 1
    # the device file pins another QAIRT: a new compile, recorded
    newer = compiled(qairt_version="2.46")
    assert newer.details["cached"] is False and fake.count("compile") == 2
    assert newer.details["toolchain"]["qairt"] == "2.46.0.260430101500"
    # AI Hub ships a patch release under the same pin: describe() resolves it, the cache misses
    fake.qairt[2].full_version = "2.45.1.260515080000"
    patched = compiled()
    assert patched.details["cached"] is False and patched.details["toolchain"]["qairt"] == "2.45.1.260515080000"
    assert fake.count("compile") == 3


def test_under_latest_compile_jobs_are_never_reused_and_the_version_is_resolved(
    fake: FakeAihub, tiny: Path, db: ExperimentDB, tmp_path: Path
) -> None:
    t1 = aihub_target(db, qairt_version="latest")
    desc = t1.describe()
    assert desc["qairt_version"] == "latest" and desc["qairt_resolved"] == "2.46.0.260430101500"
    c1 = t1.compile("tiny", tiny, tmp_path / "a")
    assert "--qairt_version latest" in fake.submissions[-1]["options"]
    assert c1.details["toolchain"]["qairt"] == "2.46.0.260430101500"
    aihub_target(db, qairt_version="latest").compile("tiny", tiny, tmp_path / "b")
    assert fake.count("compile") == 2  # a pinned version would have reused the first job
    # the user's own --qairt_version wins over the device file's
    t3 = aihub_target(compile_options="--qairt_version 2.44")
    assert t3.describe()["qairt_version"] == "2.44" and "--qairt_version 2.44" in t3.describe()["profile_options"]
    with pytest.raises(Exception, match="qairt_version: AI Hub offers no QAIRT '2.30'"):
        aihub_target(qairt_version="2.30").describe()


def test_context_binaries_get_deterministic_graph_names(fake: FakeAihub, tiny: Path, tmp_path: Path) -> None:
    c = aihub_target(device=IQ9075).compile("tiny", tiny, tmp_path / "a")
    assert fake.submissions[-1]["options"].endswith("--qnn_options context_enable_graphs=tiny")
    assert c.details["aihub"]["graph_names"] == "tiny" and c.details["toolchain"]["chipset"] == "qualcomm-qcs9075"
    assert c.details["aihub"]["metadata"]["QNN_CONTEXT_BIN_HEXAGON_VERSION"] == "v73"
    # the user's own --qnn_options are left alone (and QNN then names the graph itself)
    own = aihub_target(device=IQ9075, compile_options="--qnn_options default_graph_htp_config=x")
    c2 = own.compile("tiny", tiny, tmp_path / "b")
    assert "context_enable_graphs" not in fake.submissions[-1]["options"] and c2.details["aihub"]["graph_names"] != "tiny"
    # TFLite has no context binary: nothing added
    aihub_target(device=RB3).compile("tiny", tiny, tmp_path / "c")
    assert "--qnn_options" not in fake.submissions[-1]["options"]


def test_a_family_device_records_the_phones_that_ran(fake: FakeAihub, tiny: Path, tmp_path: Path) -> None:
    t = aihub_target(device="Samsung Galaxy S24 (Family)")
    graphs = [t.compile(g, tiny_onnx(tmp_path / f"{g}.onnx", seed=i), tmp_path / g) for i, g in enumerate(("a", "b"))]
    bench = t.benchmark(graphs, {}, work_dir=tmp_path / "w", **BENCH)
    ran = {p["toolchain"]["device"] for p in bench.details["profiles"].values()}
    assert ran == {"Samsung Galaxy S24", "Samsung Galaxy S24+"}  # not the family name asked for
    assert bench.details["toolchain"]["device"] == "Samsung Galaxy S24, Samsung Galaxy S24+"
    assert bench.details["toolchain"]["chipset"] == "qualcomm-snapdragon-8gen3"


# ----------------------------------------------------------------------------- memory and placement


def _profile(job: str, inference: tuple[int, int], load: tuple[int, int], units: list[str]) -> dict:
    es = {"estimated_inference_time": 900, "all_inference_times": [1000, 1100, 1200],
          "estimated_inference_peak_memory": load[1] + inference[1], "first_load_time": 5000,
          "inference_memory_peak_range": inference, "first_load_memory_peak_range": load}
    layers = [{"name": f"l{i}", "type": "Conv", "compute_unit": u} for i, u in enumerate(units)]
    return {"profile": {"execution_summary": es, "execution_detail": layers}, "job_id": job, "url": f"u/{job}"}


def test_memory_is_per_graph_with_the_largest_graph_as_headline(tmp_path: Path) -> None:
    mib = 2**20
    compiled = [CompiledGraph(g, tmp_path, (tmp_path,), 0, 0) for g in ("pnet", "rnet")]
    res = profile_result("d", compiled, [
        _profile("j1", (3 * mib, 4 * mib), (10 * mib, 12 * mib), ["NPU", "NPU"]),
        _profile("j2", (1 * mib, 6 * mib), (20 * mib, 21 * mib), ["NPU", "UNSPECIFIED", "GPU"]),
    ])
    assert res.peak_memory_mb == 6.0 and res.load_peak_memory_mb == 21.0  # the largest graph, not a sum
    assert res.details["memory_per_graph_mb"]["pnet"] == {
        "inference_peak_mb": 4.0, "inference_peak_range_mb": [3.0, 4.0], "load_peak_mb": 12.0, "load_peak_range_mb": [10.0, 12.0]}
    assert "largest graph" in res.memory_method and "upper end" in res.memory_method
    assert res.details["profiles"]["pnet"]["estimated_inference_time_ms"] == 0.9
    assert res.details["profiles"]["pnet"]["median_inference_time_ms"] == 1.1
    # UNSPECIFIED layers are counted, not dropped
    assert res.details["placement"]["rnet"] == {"NPU": 1, "GPU": 1, "CPU": 0, "UNSPECIFIED": 1}


def test_a_cpu_layer_of_a_quantized_graph_fails_the_placement_gate(fake: FakeAihub, tmp_path: Path) -> None:
    quantized = tiny_onnx(tmp_path / "q.onnx", qdq=True)
    fake.behave("profile", cpu_op_types=("Relu",))
    t = aihub_target()
    c = t.compile("tiny", quantized, tmp_path / "c")
    assert c.details["aihub"]["quantized"] is True
    with pytest.raises(CompileError) as err:
        t.benchmark([c], {}, work_dir=tmp_path / "w", **BENCH)
    msg = err.value.message
    assert "graph 'tiny'" in msg and "1 of 2 layers off the NPU: relu (Relu) on CPU" in msg
    assert "allow_cpu_fallback: true" in msg and "\n" not in msg
    # the FP32 baseline is a reference (GPU/CPU by design on v68): not gated
    plain = t.compile("fp32", tiny_onnx(tmp_path / "f.onnx"), tmp_path / "f")
    assert t.benchmark([plain], {}, work_dir=tmp_path / "w2", **BENCH).details["placement"]["fp32"]["CPU"] == 1
    # with fallback allowed the run goes on, and every layer is counted
    fake.behave("profile", cpu_op_types=("Relu",), unspecified_op_types=("Conv",))
    allowed = aihub_target(allow_cpu_fallback=True)
    assert allowed.allow_cpu_fallback is True
    bench = allowed.benchmark([c], {}, work_dir=tmp_path / "w3", **BENCH)
    assert bench.details["placement"]["tiny"] == {"NPU": 0, "GPU": 0, "CPU": 1, "UNSPECIFIED": 1}
