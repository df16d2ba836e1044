"""Integration: the MTCNN mini pipeline on an AI Hub device, against the fake AI Hub.

One module-wide fake service and artifact cache: the first test quantizes (AIMET, slow);
the resume test reuses that quantization on a second device with the same AIMET config.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgegate.packs.adapters import predict_sample
from edgegate.db import ExperimentDB
from edgegate.metrics import Source
from edgegate.run.outputs import load_predictions as _load_predictions
from edgegate.run.pipeline import RunOptions, run_pipeline
from edgegate.run.runners import cpu_runner
from edgegate.packs.promptpack import load_promptpack
from edgegate.targets.aihub_session import HubSession

sys.path.insert(0, str(Path(__file__).parent))
from fakes.aihub_server import CATALOGUE_2025, FakeAihub  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PIPE = ROOT / "tests" / "fixtures" / "pipelines" / "person_detect_mini_aihub.yaml"
QCS8250 = ROOT / "tests" / "fixtures" / "devices" / "aihub-qcs8250-fast.yaml"
TOKEN = "eg-pipeline-token-2c8e61fa94"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory):
    mp = pytest.MonkeyPatch()
    tmp = tmp_path_factory.mktemp("aihub")
    with FakeAihub(TOKEN, devices=CATALOGUE_2025) as fake:  # the RB5-class Proxy devices of 2025
        for kind in ("compile", "profile", "inference"):
            fake.behave(kind, delay_s=0.15)
        mp.setenv("EDGEGATE_AIHUB_TOKEN", TOKEN)
        mp.setenv("EDGEGATE_AIHUB_API_URL", fake.url)
        mp.setattr(HubSession, "backoff_s", 0.01)
        yield fake, tmp
    mp.undo()


def _db_bytes(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


def test_pipeline_on_aihub_scores_real_outputs_and_keeps_the_token_out(
    service, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    from edgegate.report.signing import generate_keypair

    fake, tmp = service
    caplog.set_level(logging.INFO)
    key = generate_keypair(tmp / "keys").private_path
    opts = RunOptions(db_url=f"sqlite:///{tmp / 'happy.db'}", home=tmp / "home", evidence="always",
                      signing_key=key, evidence_dir=tmp / "evidence")
    result = run_pipeline(PIPE, opts)
    base, cand = result.baseline, result.candidate

    # Timings are the service's profile numbers; placement is its per-layer compute units.
    for v in (base, cand):
        assert v.metrics["inference_time_ms"].source is Source.AIHUB_PROFILE
        assert v.metrics["npu_fraction"].value == 1.0 and v.metrics["npu_nodes"].value > 0
        assert v.metrics["peak_memory_mb"].value > 0
    assert result.device["kind"] == "aihub" and result.device["aihub_device"] == "RB5 (Proxy)"

    # The baseline's predictions are what ONNX Runtime computes on the FP32 graphs: the
    # outputs really went up, ran, and came back through inference jobs.
    pack = load_promptpack(ROOT / "tests" / "fixtures" / "packs" / "person_detect_mini", verify=True)
    samples = pack.samples("eval")
    fp32 = {a["graph"]: Path(a["path"]) for a in base.artifacts if a["kind"] == "fp32_onnx"}
    from edgegate.run.context import load_context

    ctx = load_context(PIPE, home=tmp / "home")
    local = [predict_sample(ctx.adapter, s, cpu_runner(fp32)) for s in samples]
    pred_path = Path(next(a["path"] for a in base.artifacts if a["kind"] == "predictions"))
    remote = _load_predictions(pred_path, samples)
    assert remote is not None
    for a, b in zip(remote, local):
        for k in a:
            np.testing.assert_allclose(np.asarray(a[k], np.float64), np.asarray(b[k], np.float64), rtol=1e-4, atol=1e-4)
    assert 0.0 <= cand.metrics["map50"].value <= 1.0 and "baseline_agreement" in cand.metrics

    # Jobs: 3 compiles + 3 profiles per variant, each model once; inference batched by round.
    db = ExperimentDB(opts.db_url)
    for v in (base, cand):  # every all_inference_times sample kept (the fake returns 20 per graph)
        samples_by_graph = db.latency_samples(v.run_id)
        assert set(samples_by_graph) == {"pnet", "rnet", "onet"} and all(len(x) == 20 for x in samples_by_graph.values())
        jobs = db.aihub_jobs(v.run_id)
        kinds = [j["kind"] for j in jobs]
        assert kinds.count("compile") == 3 and kinds.count("profile") == 3
        calls = sum(v.calls_per_image.values()) * len(samples)
        assert 3 <= kinds.count("inference") < calls  # one job per graph per round, not per call
        assert all(j["status"] == "SUCCESS" for j in jobs)
    digests = [(s["kind"], s["model_digest"]) for s in fake.submissions if s["kind"] != "inference"]
    assert len(digests) == len(set(digests)) == 12
    # The candidate went up as AIMET's export (.aimet: ONNX + encodings).
    assert all(c.details["aihub"]["source_format"] == "aimet" for c in cand.compiled.values())

    # The token is nowhere EdgeGate writes.
    assert TOKEN.encode() not in _db_bytes(tmp / "happy.db")
    assert TOKEN not in result.report_path.read_text()
    for f in (tmp / "evidence").rglob("*"):
        if f.is_file():
            assert TOKEN.encode() not in f.read_bytes(), f
    for f in (tmp / "home" / "runs").rglob("*"):
        if f.is_file():
            assert TOKEN.encode() not in f.read_bytes(), f
    out, err = capfd.readouterr()
    assert TOKEN not in caplog.text and TOKEN not in out and TOKEN not in err


def test_resume_after_kill_waits_on_the_same_jobs(service) -> None:
    fake, tmp = service
    device = "QCS8250 (Proxy)"
    hold = fake.behave("profile", match="QCS8250", never_finish=True)
    db_url = f"sqlite:///{tmp / 'resume.db'}"
    env = {k: v for k, v in os.environ.items() if k not in ("EDGEGATE_AIHUB_TOKEN", "EDGEGATE_AIHUB_API_URL")}
    env.update(QAIHUB_CLIENT_INI=str(fake.write_client_ini(tmp / "client.ini")), EDGEGATE_HOME=str(tmp / "home"),
               PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "edgegate.cli", "run", str(PIPE), "--device", str(QCS8250), "--db", db_url,
           "--evidence", "never", "--quiet"]

    first = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while fake.count("profile", device) < 3:
            assert first.poll() is None, first.stdout.read().decode()[-2000:] if first.stdout else ""
            assert time.monotonic() < deadline, "the first run never reached its profile jobs"
            time.sleep(0.2)
        time.sleep(1.0)  # it is now polling the three profile jobs
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    db = ExperimentDB(db_url)
    waiting = [j for j in db.aihub_jobs() if j["kind"] == "profile"]
    assert len(waiting) == 3 and all(j["finished_at"] is None for j in waiting)

    hold.never_finish, hold.delay_s = False, 0.0  # the service finishes them meanwhile
    second = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=400)
    assert second.returncode in (0, 1), second.stdout[-2000:] + second.stderr[-2000:]
    assert "JSON report" in second.stdout

    subs = [(s["kind"], s["model_digest"]) for s in fake.submissions if s["device"] == device]
    for kind in ("compile", "profile"):
        mine = [d for k, d in subs if k == kind]
        assert len(mine) == 6 and len(set(mine)) == 6, (kind, mine)  # 3 FP32 + 3 INT8, none twice
    runs = db.list_runs()
    assert {r.status for r in runs if r.variant == "fp32"} >= {"aborted", "completed"}
    reused = [j for j in db.aihub_jobs() if j["kind"] == "profile" and j["reused"]]
    assert {j["job_id"] for j in reused} == {j["job_id"] for j in waiting}
