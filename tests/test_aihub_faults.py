"""AI Hub as it really fails (issue 13, items 5-6): rate-limit storms with Retry-After,
ambiguous submits, transient and permanent job failures with their logs, expired uploads,
and a device the 2026 catalogue no longer lists. Time is simulated: nothing sleeps for real."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from edgegate.db import ExperimentDB
from edgegate.errors import InputError, TargetError

sys.path.insert(0, str(Path(__file__).parent))
from fakes.aihub_server import FakeAihub  # noqa: E402
from fakes.aihub_testing import RB3, FakeClock, aihub_target, feeds, serve, tiny_onnx  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "eg-faults-token-9b27e0aa31"
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


@pytest.fixture
def no_client_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The client's own urllib3 retries honour Retry-After by sleeping for real: hand every
    retry to EdgeGate's layer, whose clock is simulated."""
    import qai_hub.util.session as session

    monkeypatch.setattr(session, "MAX_RETRIES", 0)


# ----------------------------------------------------------------------------- rate limits


@pytest.mark.parametrize("status", [429, 503])
def test_a_two_minute_storm_is_survived(fake: FakeAihub, tiny: Path, tmp_path: Path, no_client_retries: None,
                                        status: int) -> None:
    clock = FakeClock()
    t = aihub_target(clock=clock, job_timeout_s=3600)
    start = clock.now()
    storm = fake.storm(120, status=status, retry_after_s=30, clock=clock.now)
    c = t.compile("tiny", tiny, tmp_path / "c")
    bench = t.benchmark([c], {}, work_dir=tmp_path / "w", **BENCH)
    assert bench.timings[0].samples_ms and storm.hits >= 3
    assert clock.now() - start >= 120 and sum(clock.slept) < 600  # waited it out, within the budget
    assert fake.count("compile") == 1 and fake.count("profile") == 1


def test_job_creation_waits_exactly_what_retry_after_says(
    fake: FakeAihub, tiny: Path, tmp_path: Path, no_client_retries: None
) -> None:
    clock = FakeClock()
    t = aihub_target(clock=clock, job_timeout_s=3600)
    t.describe()
    # EdgeGate's own submit reads the Retry-After header; the client's model upload raises
    # RateLimitedError with Django REST framework's "Expected available in N seconds."
    fake.storm(60, retry_after_s=33, clock=clock.now, pattern=r"^/api/v1/models/$")
    fake.storm(120, retry_after_s=45, clock=clock.now, pattern=r"^/api/v1/jobs/$")  # AI Hub throttles submits
    t.compile("tiny", tiny, tmp_path / "c")
    assert clock.slept == [33.0, 33.0, 45.0, 45.0] and fake.count("compile") == 1


def test_a_storm_longer_than_the_budget_fails_naming_the_field(
    fake: FakeAihub, tiny: Path, tmp_path: Path, no_client_retries: None
) -> None:
    clock = FakeClock()
    t = aihub_target(clock=clock, rate_limit_budget_s=60)
    fake.storm(700, retry_after_s=25, clock=clock.now)
    with pytest.raises(TargetError) as err:
        t.compile("tiny", tiny, tmp_path / "c")
    assert "still rate-limited" in err.value.message and "rate_limit_budget_s: 60 in the device file" in err.value.message
    assert sum(clock.slept) == 60


# ----------------------------------------------------------------------------- submits


@pytest.mark.parametrize("kind", ["compile", "profile"])
def test_a_dropped_response_does_not_create_a_duplicate_job(fake: FakeAihub, tiny: Path, tmp_path: Path, kind: str) -> None:
    t = aihub_target()
    if kind == "profile":
        c = t.compile("tiny", tiny, tmp_path / "c")
    fake.fault("POST", r"^/api/v1/jobs/$", 0, after=True)  # the job is created, the answer is lost
    if kind == "compile":
        c = t.compile("tiny", tiny, tmp_path / "c")
    else:
        t.benchmark([c], {}, work_dir=tmp_path / "w", **BENCH)
    assert fake.count(kind) == 1
    assert ("GET", "/api/v1/job_summaries/") in fake.requests  # looked up by name, found
    (sub,) = [s for s in fake.submissions if s["kind"] == kind]
    assert sub["name"].startswith(f"edgegate tiny {kind} ") and len(sub["name"].split()[-1]) == 10  # the nonce


# ----------------------------------------------------------------------------- failed jobs


def test_a_transient_failure_is_resubmitted_once_and_the_run_passes(
    fake: FakeAihub, tiny: Path, db: ExperimentDB, tmp_path: Path
) -> None:
    fake.behave("profile", fail="no device free", failure_type="RUNTIME_INTERNAL_SERVICE_BUSY", times=1)
    t = aihub_target(db)
    c = t.compile("tiny", tiny, tmp_path / "c")
    bench = t.benchmark([c], {}, work_dir=tmp_path / "w", **BENCH)
    assert fake.count("profile") == 2
    (again,) = bench.details["resubmitted"]
    assert again["failure_type"] == "RUNTIME_INTERNAL_SERVICE_BUSY" and again["graph"] == "tiny"
    assert bench.details["profiles"]["tiny"]["resubmitted"] == [again]
    assert sorted(Path(p).name for p in again["logs"]) == [f"{again['job_id']}_device_log.log", f"{again['job_id']}_hub_log.log"]
    assert all((tmp_path / "w" / "aihub-logs" / again["job_id"] / Path(p).name).is_file() for p in again["logs"])
    failed = [j for j in db.aihub_jobs() if j["status"] == "FAILED"]
    assert [j["job_id"] for j in failed] == [again["job_id"]]
    assert "[failure type RUNTIME_INTERNAL_SERVICE_BUSY]" in failed[0]["failure_reason"]
    # twice transient, with one resubmit allowed: one line, after the resubmit
    fake.behave("profile", fail="throttled", failure_type="CLOUD_THROTTLED", times=2)
    with pytest.raises(TargetError, match=r"FAILED: throttled \(failure type CLOUD_THROTTLED; resubmitted 1 time"):
        t.benchmark([c], {}, work_dir=tmp_path / "w2", **BENCH)
    assert TOKEN.encode() not in b"".join(p.read_bytes() for p in tmp_path.glob("eg.db*"))


def test_a_permanent_failure_is_one_line_naming_its_saved_logs(fake: FakeAihub, tiny: Path, tmp_path: Path) -> None:
    fake.behave("inference", fail="model invalid for this runtime", failure_type="MODEL_INVALID")
    t = aihub_target()
    c = t.compile("tiny", tiny, tmp_path / "c")
    t.benchmark([c], {}, work_dir=tmp_path / "w", **BENCH)  # names the run's work dir
    with pytest.raises(TargetError) as err:
        t.run_batch(c, feeds(2))
    msg = err.value.message
    (sub,) = [s for s in fake.submissions if s["kind"] == "inference"]  # not resubmitted
    logs = tmp_path / "w" / "aihub-logs" / sub["job_id"]
    assert f"FAILED: model invalid for this runtime (failure type MODEL_INVALID; logs: {logs})" in msg
    assert "\n" not in msg and len(list(logs.iterdir())) == 2


# ----------------------------------------------------------------------------- expired uploads


def test_expired_datasets_and_vanished_models_are_uploaded_again(
    fake: FakeAihub, tiny: Path, db: ExperimentDB, tmp_path: Path
) -> None:
    t = aihub_target(db)
    c = t.compile("tiny", tiny, tmp_path / "c")
    first = t.run_batch(c, feeds(2))
    (dataset,) = [j["job_id"] for j in db.aihub_jobs() if j["kind"] == "upload" and j["job_id"].startswith("d")]
    fake.expire_dataset(dataset)
    fake.delete_model(c.details["aihub"]["target_model_id"])
    again = aihub_target(db).run_batch(c, feeds(2))
    assert [o[0].tolist() for o in again] == [o[0].tolist() for o in first]
    posts = [p for m, p in fake.requests if m == "POST"]
    assert posts.count("/api/v1/datasets/") == 2  # the expired one went up again
    assert posts.count("/api/v1/models/") == 2  # the source model, then the cached target model
    assert [j["status"] for j in db.aihub_jobs() if j["job_id"] == dataset] == ["EXPIRED"]


# ----------------------------------------------------------------------------- catalogue


def test_rb5_is_gone_and_fails_fast_with_the_board_path(fake: FakeAihub) -> None:
    from edgegate.config import load_device
    from edgegate.targets.aihub import AihubTarget

    t = AihubTarget(load_device("rb5-aihub", devices_dir=ROOT / "devices"))
    with pytest.raises(InputError) as err:
        t.describe()
    msg = err.value.message
    assert "rb5-aihub.yaml: device: AI Hub no longer lists 'RB5 (Proxy)' (chipset:qualcomm-qcs8250-proxy)" in msg
    assert f"closest by chipset: '{RB3}' (qualcomm-qcs6490, hexagon v68)" in msg
    assert "use the board path: rb5-adb or rb5-ssh (kind ssh/adb)" in msg
    assert not [p for m, p in fake.requests if m == "POST"]  # nothing uploaded, nothing submitted


def test_devices_lists_local_files_and_the_live_catalogue(fake: FakeAihub) -> None:
    from edgegate.targets.aihub_catalogue import aihub_catalogue, local_device_files

    local = local_device_files(devices_dir=ROOT / "devices")
    by_name = {f.name: f for f in local}
    assert by_name["rb5-ssh"].kind == "ssh" and by_name["qcs6490-aihub"].aihub_device == RB3
    cat = aihub_catalogue(local)
    listed = {d.name: d for d in cat.devices}
    assert "RB5 (Proxy)" not in listed and cat.unmatched == ("rb5-aihub",)
    assert listed[RB3].local == ("qcs6490-aihub",) and listed[RB3].hexagon == "v68"
    assert listed["Dragonwing IQ-9075 EVK"].local == ("iq9075-aihub",)
    assert listed["Samsung Galaxy S24 (Family)"].local == ("s24-aihub",) and listed["QCS8550 (Proxy)"].local == ()
