"""The AI Hub target through the real qai_hub client, against the fake AI Hub in tests/fakes.

Every test drives ``qai_hub`` over HTTP (protobuf bodies, its own upload/download URLs);
nothing in the client is patched except its retry delays (shortened for speed).
"""

from __future__ import annotations

import json
import logging
import sys
import uuid
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from edgegate.db import ExperimentDB
from edgegate.errors import CompileError, InputError, TargetError
from edgegate.metrics import Source
from edgegate.config import AihubDevice
from edgegate.targets.aihub import AihubTarget, default_runtime, profile_result
from edgegate.targets.aihub_session import HubSession

RB3 = "Dragonwing RB3 Gen 2 Vision Kit"  # QCS6490, Hexagon v68: TFLite runs both variants

sys.path.insert(0, str(Path(__file__).parent))
from fakes.aihub_server import FakeAihub  # noqa: E402

TOKEN = "eg-test-token-7f3a9c1d5b2e"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    import qai_hub.util.session as session

    monkeypatch.setattr(session, "BACKOFF_FACTOR", 0.01)  # the client's own urllib3 retries
    monkeypatch.setattr(HubSession, "backoff_s", 0.01)
    with FakeAihub(TOKEN) as server:
        monkeypatch.setenv("EDGEGATE_AIHUB_TOKEN", TOKEN)
        monkeypatch.setenv("EDGEGATE_AIHUB_API_URL", server.url)
        monkeypatch.setenv("QAIHUB_CLIENT_INI", str(tmp_path / "absent.ini"))
        yield server


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return _tiny(tmp_path / "tiny.onnx", 0)


def _tiny(path: Path, seed: int) -> Path:
    rng = np.random.RandomState(seed)
    w = numpy_helper.from_array(rng.randn(4, 3, 3, 3).astype(np.float32), "conv.weight")
    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "conv.weight"], ["c"], pads=[1, 1, 1, 1], name="conv"),
         helper.make_node("Relu", ["c"], ["y"], name="relu")],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        [w],
    )
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.fixture
def db(tmp_path: Path) -> ExperimentDB:
    return ExperimentDB(f"sqlite:///{tmp_path / 'eg.db'}")


def _target(db: ExperimentDB | None = None, *, invocation: str | None = None, **kw) -> AihubTarget:
    """A target on the fake; with a db, attached to a new run (a new invocation unless given)."""
    fields = {"name": "rb3-aihub", "kind": "aihub", "device": RB3, "poll_interval_s": 0.02,
              "job_timeout_s": 30, "max_retries": 3, **kw}
    t = AihubTarget(AihubDevice(**fields))
    if db is not None:
        run_id = db.start_run(invocation=invocation or uuid.uuid4().hex, pipeline="p", device=fields["name"],
                              variant="int8", model_digest=None, pack_digest=None, config_digest=None)
        t.attach_run(db, run_id)
    return t


def _feeds(n: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.RandomState(1)
    return [{"x": rng.rand(1, 3, 8, 8).astype(np.float32)} for _ in range(n)]


def test_happy_path_compile_profile_infer(fake: FakeAihub, tiny: Path, db: ExperimentDB, tmp_path: Path) -> None:
    t = _target(db)
    desc = t.describe()
    assert desc["aihub_device"] == RB3 and desc["target_runtime"] == "tflite"  # v68: no fp16 HTP
    assert desc["versions"]["qai-hub"] and desc["compile_key"]["options"] == "--target_runtime tflite --qairt_version 2.45"
    assert desc["qairt_version"] == desc["compile_key"]["qairt_version"] == "2.45"
    assert desc["compile_key"]["service"].startswith("http://127.0.0.1:")  # model ids are the service's
    assert desc["qairt_resolved"] == desc["compile_key"]["qairt_resolved"] == "2.45.0.260326154327"

    c = t.compile("tiny", tiny, tmp_path / "out")
    assert c.artifact.is_file() and c.details["aihub"]["source_format"] == "onnx"
    assert c.details["inputs"] == ["x"] and c.details["outputs"] == ["y"]

    bench = t.benchmark([c], {}, warmup=1, repeats=3, min_seconds=0, work_dir=tmp_path / "run")
    assert bench.source is Source.AIHUB_PROFILE
    (timing,) = bench.timings
    prof = json.loads((tmp_path / "run" / "tiny_aihub_profile.json").read_text())
    es = prof["execution_summary"]
    # every all_inference_times sample kept, microseconds -> milliseconds
    assert timing.samples_ms == tuple(v / 1e3 for v in es["all_inference_times"]) and len(timing.samples_ms) == 20
    assert timing.load_time_ms == es["first_load_time"] / 1e3
    # AI Hub's inference memory (the upper end of its range), not the load-including estimate
    lo, hi = es["inference_memory_peak_range"]
    assert bench.peak_memory_mb == pytest.approx(hi / 2**20) and hi < es["estimated_inference_peak_memory"]
    assert bench.load_peak_memory_mb == pytest.approx(es["first_load_memory_peak_range"][1] / 2**20)
    assert bench.details["memory_per_graph_mb"]["tiny"]["inference_peak_range_mb"] == pytest.approx([lo / 2**20, hi / 2**20])
    assert "upper end of inference_memory_peak_range" in bench.memory_method
    profile = bench.details["profiles"]["tiny"]
    assert profile["estimated_inference_time_ms"] == es["estimated_inference_time"] / 1e3
    assert profile["median_inference_time_ms"] == pytest.approx(float(np.median(timing.samples_ms)))
    assert bench.details["placement"] == {"tiny": {"NPU": 2, "GPU": 0, "CPU": 0, "UNSPECIFIED": 0}}
    assert prof["tool_versions"] == [{"name": "QAIRT", "version": "2.45.0.260326154327"}]
    assert c.details["toolchain"] == bench.details["toolchain"] == {
        "qairt": "2.45.0.260326154327", "device": RB3, "device_os": "1.6", "chipset": "qualcomm-qcs6490",
        "client": desc["versions"]["qai-hub"]}

    feeds = _feeds(3)
    outs = t.run_batch(c, feeds)
    ref = ort.InferenceSession(str(tiny), providers=["CPUExecutionProvider"])
    for f, o in zip(feeds, outs):
        np.testing.assert_allclose(o[0], ref.run(None, f)[0], rtol=1e-6)
    assert [s["kind"] for s in fake.submissions] == ["compile", "profile", "inference"]

    jobs = db.aihub_jobs()
    kinds = sorted((j["kind"], j["status"]) for j in jobs)
    assert kinds == [("compile", "SUCCESS"), ("inference", "SUCCESS"), ("profile", "SUCCESS"),
                     ("upload", "SUCCESS"), ("upload", "SUCCESS")]  # the model and the dataset
    assert all(j["run_id"] is not None and j["client_version"] for j in jobs)
    compile_row = next(j for j in jobs if j["kind"] == "compile")
    assert compile_row["url"].endswith(f"/jobs/{compile_row['job_id']}/")
    assert compile_row["result"]["target_model_id"] == c.details["aihub"]["target_model_id"]


def test_rerun_reuses_the_pinned_compile_and_uploads_but_measures_again(
    fake: FakeAihub, tiny: Path, db: ExperimentDB, tmp_path: Path
) -> None:
    t = _target(db)
    c = t.compile("tiny", tiny, tmp_path / "a")
    t.run_batch(c, _feeds(2))
    # A second run (a new target, a new invocation on the same database): the compile job of
    # the pinned QAIRT and the dataset upload are reused, the scored inference job is its own.
    t2 = _target(db)
    c2 = t2.compile("tiny", tiny, tmp_path / "b")
    t2.run_batch(c2, _feeds(2))
    assert [s["kind"] for s in fake.submissions] == ["compile", "inference", "inference"]
    assert c2.details["aihub"]["reused_job"] is True
    # the model upload is not even needed
    assert sorted(j["kind"] for j in db.aihub_jobs() if j["reused"]) == ["compile", "upload"]


def test_aimet_directory_goes_up_with_its_encodings(fake: FakeAihub, tiny: Path, tmp_path: Path) -> None:
    # A quantize cache entry as EdgeGate writes it: QDQ ONNX + AIMET's ONNX + .encodings.
    entry = tmp_path / "quantized"
    entry.mkdir()
    (entry / "tiny_qdq.onnx").write_bytes(tiny.read_bytes())
    (entry / "tiny.onnx").write_bytes(tiny.read_bytes())
    enc = {"version": "1.0.0", "activation_encodings": [
        {"name": "x", "bw": 8, "scale": [1 / 255], "offset": [0], "dtype": "INT", "enc_type": "PER_TENSOR", "is_sym": False},
        {"name": "y", "bw": 8, "scale": [0.05], "offset": [0], "dtype": "INT", "enc_type": "PER_TENSOR", "is_sym": False}],
        "param_encodings": [{"name": "conv.weight", "bw": 8, "scale": [0.02], "offset": [-128], "dtype": "INT",
                             "enc_type": "PER_TENSOR", "is_sym": True}]}
    (entry / "tiny.encodings").write_text(json.dumps(enc))
    (entry / "manifest.json").write_text(json.dumps({"meta": {
        "qdq_onnx": "tiny_qdq.onnx", "encodings": "tiny.encodings", "encodings_onnx": "tiny.onnx"}}))
    t = _target()
    c = t.compile("tiny", entry / "tiny_qdq.onnx", tmp_path / "out")
    assert c.details["aihub"]["source_format"] == "aimet"
    feeds = _feeds(2)
    got = t.run_batch(c, feeds)[0][0]
    ref = ort.InferenceSession(str(tiny), providers=["CPUExecutionProvider"]).run(None, feeds[0])[0]
    # The service honoured the encodings: outputs sit on the 0.05 grid, near the float ones.
    np.testing.assert_allclose(got / 0.05, np.round(got / 0.05), atol=1e-3)
    assert np.abs(got - np.clip(ref, 0, 255 * 0.05)).max() < 0.2
    # qdq format: the QDQ ONNX itself goes up
    t2 = _target(candidate_format="qdq")
    assert t2.compile("tiny", entry / "tiny_qdq.onnx", tmp_path / "out2").details["aihub"]["source_format"] == "onnx"


def test_failed_job_names_id_reason_and_url_then_rerun_resubmits(
    fake: FakeAihub, tiny: Path, db: ExperimentDB, tmp_path: Path
) -> None:
    fake.behave("compile", fail="QNN converter: op 'Relu' is not supported at 3 bits", times=1)
    t = _target(db)
    with pytest.raises(CompileError) as err:
        t.compile("tiny", tiny, tmp_path / "out")
    (sub,) = fake.submissions
    msg = err.value.message
    assert sub["job_id"] in msg and "not supported at 3 bits" in msg and f"/jobs/{sub['job_id']}/" in msg
    assert "failure type UNKNOWN" in msg and "\n" not in msg
    logs = Path(msg.split("logs: ")[1].split(")")[0])
    assert sorted(p.name for p in logs.iterdir()) == [f"{sub['job_id']}_hub_log.log"]  # compile jobs: hub log only
    row = next(j for j in db.aihub_jobs() if j["kind"] == "compile")
    assert row["status"] == "FAILED" and "3 bits" in row["failure_reason"] and row["finished_at"]
    # A FAILED job is never reused: the rerun pays for a new one, which succeeds.
    t.compile("tiny", tiny, tmp_path / "out2")
    assert fake.count("compile") == 2


def test_failed_profile_and_inference_jobs_raise_target_errors(fake: FakeAihub, tiny: Path, tmp_path: Path) -> None:
    t = _target()
    c = t.compile("tiny", tiny, tmp_path / "out")
    fake.behave("profile", fail="device lost", times=1)
    with pytest.raises(TargetError, match="profile job .* FAILED: device lost"):
        t.benchmark([c], {}, warmup=0, repeats=1, min_seconds=0, work_dir=tmp_path / "w")
    fake.behave("inference", fail="out of memory", times=1)
    with pytest.raises(TargetError, match="inference job .* FAILED: out of memory"):
        t.run_batch(c, _feeds(1))


def test_5xx_and_dropped_connections_then_success(fake: FakeAihub, tiny: Path, tmp_path: Path) -> None:
    fake.fault("POST", r"^/api/v1/jobs/$", 500, times=1)  # job creation: retried
    fake.fault("GET", r"^/api/v1/jobs/j\w+/$", 503, times=2)  # status polls
    fake.fault("GET", r"^/api/v1/devices/$", 0, times=1)  # a dropped connection
    t = _target()
    c = t.compile("tiny", tiny, tmp_path / "out")
    assert c.artifact.is_file()
    assert fake.count("compile") == 1  # the 500 created nothing; no duplicate job


def test_transient_failures_give_up_after_bounded_retries(
    fake: FakeAihub, tiny: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import qai_hub.util.session as session

    monkeypatch.setattr(session, "MAX_RETRIES", 1)
    fake.fault("GET", r"^/api/v1/devices/$", 500, times=1000)  # 429/503 wait out a budget instead
    t = _target(max_retries=2)
    with pytest.raises(TargetError, match="still failing after 3 attempts"):
        t.compile("tiny", tiny, tmp_path / "out")


def test_timeout_then_resume_waits_on_the_same_job(fake: FakeAihub, tiny: Path, db: ExperimentDB, tmp_path: Path) -> None:
    slow = fake.behave("compile", never_finish=True)
    t = _target(db, job_timeout_s=0.3)
    with pytest.raises(TargetError) as err:
        t.compile("tiny", tiny, tmp_path / "out")
    (sub,) = fake.submissions
    assert sub["job_id"] in err.value.message and "still OPTIMIZING_MODEL" in err.value.message
    assert "rerun to keep waiting on the same job" in err.value.message
    row = next(j for j in db.aihub_jobs() if j["kind"] == "compile")
    assert row["status"] == "OPTIMIZING_MODEL" and row["finished_at"] is None
    slow.never_finish, slow.delay_s = False, 0.0  # the service finishes it meanwhile
    c = _target(db).compile("tiny", tiny, tmp_path / "out2")
    assert fake.count("compile") == 1 and c.details["aihub"]["compile_job"] == sub["job_id"]


def test_unknown_device_lists_closest_matches(fake: FakeAihub) -> None:
    with pytest.raises(InputError) as err:
        _target(device="Samsung Galaxy S24 (Famly)").describe()
    msg = err.value.message
    assert "no device named 'Samsung Galaxy S24 (Famly)'" in msg and "closest names: 'Samsung Galaxy S24 (Family)'" in msg
    with pytest.raises(InputError, match="no AI Hub device has all of chipset:qualcomm-qcs8250"):
        _target(device=None, attributes=["chipset:qualcomm-qcs8250"]).describe()
    t = _target(device=None, attributes=["chipset:qualcomm-qcs6490"])
    assert t.describe()["aihub_device"] == RB3


def test_default_runtime_per_device(fake: FakeAihub) -> None:
    assert _target(device="Samsung Galaxy S24 (Family)").describe()["target_runtime"] == "qnn_context_binary"
    assert _target(device="Dragonwing IQ-9075 EVK").describe()["target_runtime"] == "qnn_context_binary"  # v73
    assert _target(device=RB3).describe()["target_runtime"] == "tflite"
    assert _target(target_runtime="onnx").describe()["target_runtime"] == "onnx"
    assert default_runtime(["framework:onnx"]) == "onnx"
    with pytest.raises(InputError, match="set target_runtime in the device file"):
        _target(compile_options="--target_runtime onnx")


def test_profile_with_missing_optional_fields(fake: FakeAihub, tiny: Path, tmp_path: Path) -> None:
    fake.behave("profile", minimal_profile=True)
    t = _target()
    c = t.compile("tiny", tiny, tmp_path / "out")
    bench = t.benchmark([c], {}, warmup=0, repeats=1, min_seconds=0, work_dir=tmp_path / "w")
    (timing,) = bench.timings
    est = json.loads((tmp_path / "w" / "tiny_aihub_profile.json").read_text())["execution_summary"]
    assert "all_inference_times" not in est
    assert timing.samples_ms == (est["estimated_inference_time"] / 1e3,)  # the estimate, once
    assert bench.peak_memory_mb is None and bench.load_peak_memory_mb is None  # no ranges: unknown, not the estimate
    assert bench.details["memory_per_graph_mb"]["tiny"]["inference_peak_range_mb"] is None
    # no inference time at all is an error naming the job
    from edgegate.targets.base import CompiledGraph

    with pytest.raises(TargetError, match="j1 .* no inference time"):
        profile_result("d", [CompiledGraph("g", tiny, (tiny,), 0, 0)],
                       [{"profile": {"execution_summary": {}}, "job_id": "j1", "url": "u"}])


def test_no_token_says_how_to_set_one(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("EDGEGATE_AIHUB_TOKEN", raising=False)
    monkeypatch.setenv("QAIHUB_CLIENT_INI", str(tmp_path / "nothing.ini"))
    with pytest.raises(InputError) as err:
        _target().describe()
    for hint in ("EDGEGATE_AIHUB_TOKEN", "qai-hub configure", "QAIHUB_CLIENT_INI", "nothing.ini"):
        assert hint in err.value.message


def test_client_ini_is_read_the_standard_way(fake: FakeAihub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("EDGEGATE_AIHUB_TOKEN")
    monkeypatch.setenv("QAIHUB_CLIENT_INI", str(fake.write_client_ini(tmp_path / "client.ini")))
    assert _target().describe()["aihub_device"] == RB3


def test_token_never_reaches_messages_or_logs(
    fake: FakeAihub, tiny: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "eg-wrong-token-0b9e4d2c71"
    monkeypatch.setenv("EDGEGATE_AIHUB_TOKEN", wrong)
    with pytest.raises(TargetError) as err:
        _target().describe()
    assert "authenticate" in err.value.message.lower() and wrong not in err.value.message
    assert fake.auth_failures >= 1
    monkeypatch.setenv("EDGEGATE_AIHUB_TOKEN", TOKEN)
    t = _target(max_retries=1)
    fake.fault("GET", r"^/api/v1/jobs/", 500, times=1000)
    with pytest.raises(TargetError) as err2:
        t.compile("tiny", tiny, tmp_path / "out")
    fake.faults.clear()
    fake.behave("profile", fail="device lost", failure_type="RUNTIME_CRASH")  # its logs are saved
    c = _target().compile("tiny", tiny, tmp_path / "out2")
    with pytest.raises(TargetError):
        t.benchmark([c], {}, warmup=0, repeats=1, min_seconds=0, work_dir=tmp_path / "w")
    out, errs = capfd.readouterr()
    for text in (err2.value.message, caplog.text, out, errs):
        assert TOKEN not in text and wrong not in text
    saved = [p for p in (tmp_path / "w" / "aihub-logs").rglob("*") if p.is_file()]
    assert saved and all(TOKEN.encode() not in p.read_bytes() for p in saved)


def test_jobs_command_lists_the_ledger(fake: FakeAihub, tiny: Path, db: ExperimentDB, tmp_path: Path) -> None:
    from edgegate.cli import cli

    fake.behave("compile", fail="unsupported op", times=1)
    t = _target(db)
    with pytest.raises(CompileError):
        t.compile("tiny", tiny, tmp_path / "out")
    t.compile("tiny", tiny, tmp_path / "out2")
    res = CliRunner().invoke(cli, ["jobs", "--db", db.url, "--run", str(t.ledger.run_id)])
    assert res.exit_code == 0, res.output
    assert res.output.count("compile ") == 2 and "FAILED" in res.output and "failure: unsupported op" in res.output
    assert "SUCCESS" in res.output and "/jobs/j" in res.output
    res = CliRunner().invoke(cli, ["jobs", "--db", db.url, "--run", "999"])
    assert res.exit_code == 0 and res.output.strip() == "no AI Hub jobs for run 999"
    data = json.loads(CliRunner().invoke(cli, ["jobs", "--db", db.url, "--format", "json"]).output)
    assert {d["kind"] for d in data} == {"compile", "upload"}


def test_one_failed_graph_stops_the_other_waits(fake: FakeAihub, tiny: Path, db: ExperimentDB, tmp_path: Path) -> None:
    import time

    from edgegate.artifacts import ArtifactCache
    from edgegate.run.stages import compile_graphs
    from edgegate.targets.base import Variant

    fake.behave("compile", match="edgegate a", fail="op not supported")
    fake.behave("compile", match="edgegate b", never_finish=True)
    t = _target(db, job_timeout_s=60)
    t0 = time.monotonic()
    with pytest.raises(CompileError, match="op not supported"):
        # two different models: the same model twice would be one job (same resume key)
        compile_graphs(t, {"a": tiny, "b": _tiny(tmp_path / "b.onnx", 1)}, ArtifactCache(tmp_path / "c"), Variant.FP32)
    assert time.monotonic() - t0 < 10  # not job_timeout_s: the wait on 'b' ended at its next poll
    assert {j["graph"]: j["status"] for j in db.aihub_jobs() if j["kind"] == "compile"} == {
        "a": "FAILED", "b": "OPTIMIZING_MODEL"}  # 'b' stays in the ledger for a rerun
