"""A fake Qualcomm AI Hub for tests: the REST + protobuf API that the real ``qai_hub`` client
speaks (``api/v1/...``, bodies from the wheel's ``public_api_pb2``), written from the
client's code in qai-hub 0.56.0 (public_rest_api.py, api_utils.py, client.py).

TEST FIXTURE ONLY: never shipped in the package. What it does for real and what it makes up:

* Catalogue: 2026's by default (tests/fakes/aihub_data.py: no RB5 / QCS8250 / QCS6490 Proxy;
  QCS6490 is the RB3 Gen 2 Vision Kit); ``devices=CATALOGUE_2025`` gives the old one.
  "(Family)" devices run each job on one member, and the job records that member.
* QAIRT: GET /frameworks/ lists releases with "default"/"latest" tags; ``--qairt_version``
  in a job's options picks one (unknown: 400). Compiled models carry the release in their
  metadata (QAIRT_SDK_VERSION), profiles in ``tool_versions``. Tests change releases and
  tags through ``fake.qairt``.
* Uploads and downloads go to URLs it serves itself (``/blobs/KEY``). Datasets expire
  (``expire_dataset``); models can vanish (``delete_model``).
* Jobs move CREATED -> running -> DONE/FAILED on a clock, per a scripted behaviour table
  (delay, FAILED with a reason and a Job.failure_type, never finishing). Finished jobs
  advertise ``available_artifacts`` (device and hub logs) served by the artifact_list endpoint.
* HTTP faults per method and path: N x status, dropped connections before the request is
  handled, or AFTER it was handled (the response is lost: an ambiguous submit). ``storm``
  answers 429/503 with Retry-After (and Django REST framework's throttle body) for a while
  on an injectable clock.
* Compile "compiles" the uploaded ONNX (or ``.aimet`` directory, whose encodings it applies
  as Quantize/DequantizeLinear pairs) into a runnable ONNX served, behind a marker header,
  as the target model. Context binaries name their graph from ``--qnn_options
  context_enable_graphs=NAME``, else a random name (as QNN does).
* Inference jobs compute their outputs FOR REAL: ONNX Runtime CPU runs the submitted model
  on the uploaded dataset, so scores computed from them are real numbers.
* Profile jobs return a ProfileDetail whose times and memory are SYNTHETIC (aihub_data.py);
  compute units are NPU unless a behaviour lists op types for CPU / GPU / UNSPECIFIED.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import re
import threading
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import default as email_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlparse

import numpy as np

from fakes.aihub_data import (  # noqa: F401 - re-exported for tests and benches
    CATALOGUE_2025,
    CATALOGUE_2026,
    Device,
    Qairt,
    apply_encodings,
    pb as _pb,
    qairt_releases,
    resolve_qairt,
    synthetic_profile,
    target_metadata,
)

FAKE_TARGET_MARKER = b"EDGEGATE-FAKE-AIHUB-TARGET-MODEL\n"  # so nobody mistakes it for a context binary
DEFAULT_DEVICES = CATALOGUE_2026
DAY = 86400.0


@dataclass
class Behaviour:
    """How matching jobs behave. ``kind``: compile | profile | inference; ``match``: a substring
    of the job name (EdgeGate names jobs 'edgegate GRAPH ...') or of the device name."""

    kind: str
    delay_s: float = 0.1
    fail: str | None = None
    failure_type: str = "UNKNOWN"  # a JobFailureType name, set on the outer Job when failing
    never_finish: bool = False
    match: str | None = None
    times: int | None = None  # only the first N matching jobs
    minimal_profile: bool = False  # a ProfileDetail without the optional fields
    cpu_op_types: tuple[str, ...] = ()
    gpu_op_types: tuple[str, ...] = ()
    unspecified_op_types: tuple[str, ...] = ()

    def matches(self, kind: str, name: str, device: str) -> bool:
        if kind != self.kind or (self.times is not None and self.times <= 0):
            return False
        return self.match is None or self.match in name or self.match in device


@dataclass
class Fault:
    method: str
    pattern: str  # regex on the path
    status: int  # 0: drop the connection without an answer (unused with after=True)
    times: int
    after: bool = False  # handle the request first, then drop the connection (the answer is lost)


@dataclass
class Storm:
    status: int  # 429 or 503
    until: float  # on the storm's clock
    retry_after_s: int
    clock: Callable[[], float]
    pattern: str
    hits: int = 0


@dataclass
class _Job:
    id: str
    kind: str  # compile | profile | inference
    name: str
    device: Device  # the device that runs it (a member, for a family)
    model_id: str
    options: str
    created: float
    behaviour: Behaviour
    qairt: Qairt
    dataset_id: str | None = None
    state: int = 1
    failure: str | None = None
    failure_type: int = 0
    target_model_id: str | None = None
    output_dataset_id: str | None = None
    profile: Any = None
    finished_at: float | None = None
    logs: dict[int, str] = field(default_factory=dict)  # JobArtifactType -> blob key
    created_wall: float = field(default_factory=time.time)


def _array_digest(files: dict[str, bytes]) -> str:
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return h.hexdigest()


def _option(options: str, flag: str) -> str | None:
    m = re.search(rf"{flag}\s+(\S+)", options)
    return m.group(1) if m else None


class FakeAihub:
    """The fake service. Use as a context manager; ``url`` is its api_url."""

    def __init__(self, token: str, devices: list[Device] | None = None) -> None:
        self.token = token
        # copies: a family's round robin is this service's own
        self.devices = [Device(d.name, d.os, list(d.attributes), list(d.members)) for d in devices or DEFAULT_DEVICES]
        self.qairt: list[Qairt] = qairt_releases()
        self.behaviours: list[Behaviour] = []
        self.faults: list[Fault] = []
        self.storms: list[Storm] = []
        self.submissions: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str]] = []
        self.auth_failures = 0
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._blobs: dict[str, bytes] = {}
        self._models: dict[str, dict[str, Any]] = {}
        self._datasets: dict[str, dict[str, Any]] = {}
        self._jobs: dict[str, _Job] = {}
        self._sessions: dict[str, Any] = {}
        self._server: ThreadingHTTPServer | None = None

    # -- test-facing ---------------------------------------------------------------

    def behave(self, kind: str, **kw: Any) -> Behaviour:
        """Add a behaviour rule; later rules win over earlier ones."""
        b = Behaviour(kind, **kw)
        with self._lock:
            self.behaviours.append(b)
        return b

    def fault(self, method: str, pattern: str, status: int, times: int = 1, after: bool = False) -> None:
        with self._lock:
            self.faults.append(Fault(method, pattern, status, times, after))

    def storm(self, seconds: float, *, status: int = 429, retry_after_s: int = 30,
              clock: Callable[[], float] = time.monotonic, pattern: str = r"^/api/v1/") -> Storm:
        """Answer every matching API request with ``status`` and Retry-After for ``seconds``
        of ``clock`` (a test's simulated clock, so nobody sleeps for real)."""
        s = Storm(status, clock() + seconds, retry_after_s, clock, pattern)
        with self._lock:
            self.storms.append(s)
        return s

    def count(self, kind: str, device: str | None = None) -> int:
        return sum(1 for s in self.submissions if s["kind"] == kind and (device is None or s["device"] == device))

    def expire_dataset(self, dataset_id: str) -> None:
        with self._lock:
            self._datasets[dataset_id]["created"] = time.time() - 31 * DAY

    def delete_model(self, model_id: str) -> None:
        with self._lock:
            self._models.pop(model_id, None)

    def job(self, job_id: str) -> _Job:
        return self._jobs[job_id]

    def write_client_ini(self, path: Path, token: str | None = None) -> Path:
        path.write_text(
            f"[api]\napi_token = {token or self.token}\napi_url = {self.url}\nweb_url = {self.url}\nverbose = True\n"
        )
        return path

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeAihub:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> None:
        fake = self

        class Handler(_Handler):
            service = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="fake-aihub", daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # -- state ---------------------------------------------------------------------

    def _id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):05d}fake"

    def _behaviour(self, kind: str, name: str, device: str) -> Behaviour:
        with self._lock:
            for b in reversed(self.behaviours):
                if b.matches(kind, name, device):
                    if b.times is not None:
                        b.times -= 1
                    return b
        return Behaviour(kind)

    def _device(self, pb_dev: Any) -> Device | None:
        for d in self.devices:
            if (not pb_dev.name or pb_dev.name == d.name) and set(pb_dev.attributes) <= set(d.attributes):
                return d
        return None

    def _model_files(self, model_id: str) -> dict[str, bytes]:
        m = self._models[model_id]
        blob = self._blobs.get(m["blob"], b"")
        if m["is_directory"]:
            with zipfile.ZipFile(io.BytesIO(blob)) as z:
                return {Path(n).name: z.read(n) for n in z.namelist() if not n.endswith("/")}
        return {m["name"]: blob}

    def _runnable(self, model_id: str) -> bytes:
        """The ONNX this fake runs for a model (source or target)."""
        m = self._models[model_id]
        if "runnable" in m:
            return m["runnable"]
        files = self._model_files(model_id)
        onnx_files = [n for n in files if n.endswith(".onnx")]
        if len(onnx_files) == 1:
            data = files[onnx_files[0]]
            enc = [n for n in files if n.endswith(".encodings")]
            if enc:
                data = apply_encodings(data, json.loads(files[enc[0]]))
            return data
        (only,) = files.values()
        if only.startswith(FAKE_TARGET_MARKER):
            return only[len(FAKE_TARGET_MARKER):]
        raise ValueError("model is neither ONNX nor a target model this service made")

    def _session(self, model_id: str) -> Any:
        import onnxruntime as ort

        with self._lock:
            if model_id not in self._sessions:
                so = ort.SessionOptions()
                so.intra_op_num_threads = 1
                so.log_severity_level = 3
                self._sessions[model_id] = ort.InferenceSession(
                    self._runnable(model_id), sess_options=so, providers=["CPUExecutionProvider"]
                )
            return self._sessions[model_id]

    def _finish(self, job: _Job) -> None:
        """Compute a job's results the first time it is seen past its delay."""
        pb = _pb()
        try:
            if job.behaviour.fail:
                raise RuntimeError(job.behaviour.fail)
            if job.kind == "compile":
                runnable = self._runnable(job.model_id)
                key = self._id("blob")
                self._blobs[key] = FAKE_TARGET_MARKER + runnable
                self._models[job.target_model_id].update(blob=key, runnable=runnable)
            elif job.kind == "inference":
                job.output_dataset_id = self._infer(job)
            else:
                job.profile = self._profile(job)
            job.state = pb.JobState.JOB_STATE_DONE
        except Exception as exc:  # noqa: BLE001 - a failed job, as the service reports it
            job.state, job.failure = pb.JobState.JOB_STATE_FAILED, str(exc)
            job.failure_type = pb.JobFailureType.Value(f"JOB_FAILURE_TYPE_{job.behaviour.failure_type}")
        job.finished_at = time.time()
        kinds = [pb.JobArtifactType.JOB_ARTIFACT_TYPE_HUB_LOG]
        if job.kind != "compile":
            kinds.insert(0, pb.JobArtifactType.JOB_ARTIFACT_TYPE_DEVICE_LOG)
        for t in kinds:
            key = self._id("blob")
            self._blobs[key] = (f"{pb.JobArtifactType.Name(t)} of {job.kind} job {job.id} on {job.device.name}\n"
                                f"state: {pb.JobState.Name(job.state)}\n{job.failure or ''}\n").encode()
            job.logs[t] = key

    def _infer(self, job: _Job) -> str:
        import h5py
        from qai_hub.util.dataset_entries_converters import dataset_entries_to_h5, h5_to_dataset_entries

        ds = self._datasets[job.dataset_id]
        with h5py.File(io.BytesIO(self._blobs[ds["blob"]]), "r") as h5:
            entries = h5_to_dataset_entries(h5)
        sess = self._session(job.model_id)
        names = [i.name for i in sess.get_inputs()]
        if list(entries) != names:
            raise ValueError(f"dataset schema {list(entries)} does not match the model inputs {names}")
        n = len(next(iter(entries.values())))
        outs: dict[str, list[np.ndarray]] = {o.name: [] for o in sess.get_outputs()}
        for i in range(n):
            res = sess.run(None, {k: v[i] for k, v in entries.items()})
            for name, r in zip(outs, res):
                outs[name].append(r)
        buf = io.BytesIO()
        with h5py.File(buf, "w") as h5:
            dataset_entries_to_h5(outs, h5)
        return self._new_dataset("outputs", buf.getvalue())

    def _profile(self, job: _Job) -> Any:
        import onnx

        g = onnx.load_from_string(self._runnable(job.model_id)).graph
        nodes = [n for n in g.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")]
        b = job.behaviour
        units = {**{t: "UNSPECIFIED" for t in b.unspecified_op_types}, **{t: "GPU" for t in b.gpu_op_types},
                 **{t: "CPU" for t in b.cpu_op_types}}
        return synthetic_profile(nodes, job.qairt, units, b.minimal_profile)

    def _new_dataset(self, name: str, data: bytes | None) -> str:
        did = self._id("d")
        key = self._id("blob")
        if data is not None:
            self._blobs[key] = data
        self._datasets[did] = {"name": name, "blob": key, "created": time.time()}
        return did

    def _job_state(self, job: _Job) -> None:
        pb = _pb()
        if job.finished_at is not None or job.behaviour.never_finish:
            if job.behaviour.never_finish:
                job.state = pb.JobState.JOB_STATE_PROVISIONING_DEVICE if job.kind != "compile" else pb.JobState.JOB_STATE_OPTIMIZING_MODEL
            return
        elapsed = time.monotonic() - job.created
        if elapsed >= job.behaviour.delay_s:
            self._finish(job)
        elif elapsed >= job.behaviour.delay_s * 0.3:
            job.state = {
                "compile": pb.JobState.JOB_STATE_OPTIMIZING_MODEL,
                "profile": pb.JobState.JOB_STATE_MEASURING_PERFORMANCE,
                "inference": pb.JobState.JOB_STATE_RUNNING_INFERENCE,
            }[job.kind]

    def _model_pb(self, model_id: str) -> Any:
        pb = _pb()
        m = self._models[model_id]
        reply = pb.Model(model_id=model_id, name=m["name"], model_type=m["model_type"], is_directory=m["is_directory"])
        reply.creation_time.FromSeconds(int(m["created"]))
        if m.get("producer"):
            reply.producer_id = m["producer"]
        for k, v in (m.get("metadata") or {}).items():
            reply.metadata.entries[k] = v
        return reply

    def _job_pb(self, job: _Job) -> Any:
        pb = _pb()
        with self._lock:
            self._job_state(job)
        dev = pb.Device(name=job.device.name, os=job.device.os, attributes=job.device.attributes)
        model = pb.Model(model_id=job.model_id)
        common: dict[str, Any] = {"name": job.name, "options": job.options, "job_state": job.state, "device": dev, "model": model}
        if job.failure is not None:
            common["failure_reason"] = job.failure
        if job.kind == "compile":
            tm = self._models.get(job.target_model_id) or {"name": "", "model_type": 0}
            inner = pb.CompileJob(compile_job_id=job.id, devices=pb.DeviceList(devices=[dev]), **common)
            inner.target_model.CopyFrom(pb.Model(model_id=job.target_model_id, name=tm["name"],
                                                 model_type=tm["model_type"], producer_id=job.id))
        else:
            inner = pb.InferenceJob(inference_job_id=job.id, is_profiling_on=job.kind == "profile", **common)
            if job.dataset_id:
                inner.dataset.CopyFrom(pb.Dataset(dataset_id=job.dataset_id))
            if job.finished_at is not None and job.state == pb.JobState.JOB_STATE_DONE:
                inner.tensor_type_list.CopyFrom(pb.NamedTensorTypeList())
        inner.creation_time.FromNanoseconds(int(job.created_wall * 1e9))
        if job.finished_at is not None:
            inner.start_time.FromNanoseconds(int(job.created_wall * 1e9))
            inner.completion_time.FromNanoseconds(int(job.finished_at * 1e9))
        return pb.Job(**{f"{'compile' if job.kind == 'compile' else 'inference'}_job": inner}, hub_version="fake",
                      failure_type=job.failure_type, available_artifacts=list(job.logs))

    def _summary_pb(self, job: _Job) -> Any:
        pb = _pb()
        self._job_state(job)
        common = {"job_id": job.id, "name": job.name, "job_state": job.state, "device_name": job.device.name}
        if job.kind == "compile":
            inner = pb.CompileJobSummary(**common)
            inner.creation_time.FromSeconds(int(job.created_wall))
            return pb.JobSummary(compile_job_summary=inner)
        inner = pb.InferenceJobSummary(is_profiling_on=job.kind == "profile", **common)
        inner.creation_time.FromSeconds(int(job.created_wall))
        return pb.JobSummary(inference_job_summary=inner)


_RUNTIME_TYPES = {
    "qnn_context_binary": ("MODEL_TYPE_QNN_CONTEXT_BINARY", ".bin"),
    "precompiled_qnn_onnx": ("MODEL_TYPE_ONNX", ".onnx"),
    "tflite": ("MODEL_TYPE_TFLITE", ".tflite"),
    "onnx": ("MODEL_TYPE_ONNX", ".onnx"),
}


class _Handler(BaseHTTPRequestHandler):
    service: FakeAihub
    drop_response = False

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    # -- plumbing ------------------------------------------------------------------

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _drop(self) -> None:
        self.close_connection = True
        self.connection.shutdown(2)

    def _send(self, status: int, body: bytes = b"", ctype: str = "application/x-protobuf",
              headers: dict[str, str] | None = None) -> None:
        if self.drop_response:  # the request was handled; its answer never arrives
            return self._drop()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _pb_reply(self, msg: Any) -> None:
        self._send(200, msg.SerializeToString())

    def _detail(self, status: int, detail: str) -> None:
        self._send(status, json.dumps({"detail": detail}).encode(), "application/json")

    def _storm(self, path: str) -> bool:
        svc = self.service
        for s in svc.storms:
            if s.clock() < s.until and re.search(s.pattern, path):
                s.hits += 1
                body = (json.dumps({"detail": f"Request was throttled. Expected available in {s.retry_after_s} seconds."})
                        if s.status == 429 else "Service Unavailable")
                self._send(s.status, body.encode(), "application/json" if s.status == 429 else "text/plain",
                           {"Retry-After": str(s.retry_after_s)})
                return True
        return False

    def _handle(self, method: str) -> None:
        svc = self.service
        url = urlparse(self.path)
        path, query = url.path, parse_qs(url.query)
        body = self._body()
        with svc._lock:
            svc.requests.append((method, path))
            for f in svc.faults:
                if f.times > 0 and f.method == method and re.search(f.pattern, path):
                    f.times -= 1
                    if f.after:
                        self.drop_response = True
                        break
                    if f.status == 0:
                        return self._drop()
                    return self._send(f.status, b"", "text/plain")
            if self._storm(path):
                return
        try:
            if path.startswith("/blobs/"):
                return self._blob(method, path[len("/blobs/"):], body)
            if not path.startswith("/api/v1/"):
                return self._send(404, b"not found", "text/plain")
            if self.headers.get("Authorization") != f"token {svc.token}":
                svc.auth_failures += 1
                return self._send(401, b'{"detail": "Invalid token."}', "application/json")
            parts = [p for p in path[len("/api/v1/"):].split("/") if p]
            return self._route(method, parts, query, body)
        except KeyError as exc:
            return self._detail(404, f"not found: {exc}")

    def do_GET(self) -> None:  # noqa: N802
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._handle("PUT")

    def do_PATCH(self) -> None:  # noqa: N802
        self._handle("PATCH")

    # -- blobs ---------------------------------------------------------------------

    def _blob(self, method: str, key: str, body: bytes) -> None:
        svc = self.service
        if method == "GET":
            if key not in svc._blobs:
                return self._send(404, b"<Error><Code>NoSuchKey</Code><Message>not ready</Message></Error>", "text/xml")
            return self._send(200, svc._blobs[key], "application/octet-stream")
        if method == "PUT":
            svc._blobs[key] = body
            return self._send(200, b"", "text/plain", {"ETag": f'"{hashlib.md5(body).hexdigest()}"'})
        if method == "POST":  # a multipart form, as for a presigned S3 POST
            msg = BytesParser(policy=email_policy).parsebytes(
                b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + body
            )
            for part in msg.iter_parts():
                if part.get_param("name", header="content-disposition") == "file":
                    svc._blobs[key] = part.get_payload(decode=True)
            return self._send(204, b"", "text/plain")
        return self._send(405, b"", "text/plain")

    # -- API -----------------------------------------------------------------------

    def _route(self, method: str, parts: list[str], query: dict[str, list[str]], body: bytes) -> None:
        pb, svc = _pb(), self.service
        head = parts[0]
        if head == "users":
            return self._pb_reply(pb.User(id=1, email="tester@example.com"))
        if head == "devices" and method == "GET":
            name = (query.get("name") or [""])[0]
            attrs = set(query.get("attributes") or [])
            found = [d for d in svc.devices if (not name or d.name == name) and attrs <= set(d.attributes)]
            if (query.get("select") or ["False"])[0] == "True":
                found = found[:1]
            return self._pb_reply(pb.DeviceList(
                devices=[pb.Device(name=d.name, os=d.os, attributes=d.attributes) for d in found],
                total_query_count=len(found)))
        if head == "frameworks" and method == "GET":
            return self._pb_reply(pb.FrameworkList(frameworks=[
                pb.Framework(name="QAIRT", api_version=r.api_version, api_tags=r.tags, full_version=r.full_version)
                for r in svc.qairt], total_query_count=len(svc.qairt)))
        if head == "job_summaries" and method == "GET":
            return self._job_summaries(query)
        if head == "models":
            return self._models_route(method, parts, body)
        if head == "datasets":
            return self._datasets_route(method, parts, body)
        if head == "jobs":
            if len(parts) == 1 and method == "POST":
                return self._create_job(body)
            job = svc._jobs[parts[1]]
            if len(parts) == 2 and method == "GET":
                return self._pb_reply(svc._job_pb(job))
            if parts[2] == "result" and method == "GET":
                svc._job_pb(job)  # advances the state
                if job.kind == "compile":
                    return self._pb_reply(pb.JobResult(compile_job_result=pb.CompileJobResult(compile_job_id=job.id)))
                res = pb.InferenceJobResult(inference_job_id=job.id, output_dataset_id=job.output_dataset_id or "")
                if job.profile is not None:
                    res.detail.CopyFrom(job.profile)
                return self._pb_reply(pb.JobResult(inference_job_result=res))
            if parts[2:4] == ["device_runs", "latest"] and parts[4] == "artifact_list" and method == "GET":
                key = job.logs.get(int(parts[5]))
                if key is None:
                    return self._detail(404, f"no artifact of type {parts[5]} for job {job.id}")
                name = pb.JobArtifactType.Name(int(parts[5]))[len("JOB_ARTIFACT_TYPE_"):].lower()
                return self._pb_reply(pb.NamedArtifactDownloadURLList(artifacts=[pb.NamedArtifactDownloadURL(
                    url=f"{self._base()}/blobs/{key}", filename=f"{job.id}_{name}.log")]))
        return self._detail(404, f"no route {method} {'/'.join(parts)}")

    def _base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def _job_summaries(self, query: dict[str, list[str]]) -> None:
        pb, svc = _pb(), self.service
        offset = int((query.get("offset") or ["0"])[0])
        limit = int((query.get("limit") or ["50"])[0])
        kind = (query.get("type") or [""])[0]
        with svc._lock:
            jobs = sorted(svc._jobs.values(), key=lambda j: j.created_wall, reverse=True)  # newest first
            if kind:
                jobs = [j for j in jobs if (j.kind == "compile") == (kind == "compile")]
            page = [svc._summary_pb(j) for j in jobs[offset:offset + limit]]
        return self._pb_reply(pb.JobSummaryList(job_summaries=page, total_query_count=len(jobs)))

    def _models_route(self, method: str, parts: list[str], body: bytes) -> None:
        pb, svc = _pb(), self.service
        if len(parts) == 1 and method == "POST":
            m = pb.Model()
            m.ParseFromString(body)
            mid = svc._id("m")
            with svc._lock:
                svc._models[mid] = {"name": m.name, "model_type": m.model_type, "is_directory": m.is_directory,
                                    "blob": svc._id("blob"), "created": time.time()}
            return self._pb_reply(pb.CreateUpdateResponse(id=mid))
        mid = parts[1]
        if mid not in svc._models:
            return self._detail(404, f"Model ID '{mid}' could not be found.")
        model = svc._models[mid]
        if len(parts) == 2 and method == "GET":
            return self._pb_reply(svc._model_pb(mid))
        if parts[2] == "multipart_upload" and method == "GET":
            return self._pb_reply(pb.FileUploadResponse(multipart_url=pb.FileMultipartUploadURL(
                urls=[f"{self._base()}/blobs/{model['blob']}"], upload_id=svc._id("u"), max_part_size=1 << 40)))
        if parts[2] == "multipart_upload" and method == "POST":
            return self._pb_reply(pb.CreateUpdateResponse(id=mid))
        if parts[2] == "download" and method == "GET":
            if model["blob"] not in svc._blobs:
                return self._detail(404, "model not ready")
            ext = model.get("ext", ".onnx")
            return self._pb_reply(pb.FileDownloadResponse(url=pb.FileDownloadURL(
                url=f"{self._base()}/blobs/{model['blob']}", filename=f"{model['name']}{ext}")))
        return self._detail(404, f"no route {method} {'/'.join(parts)}")

    def _datasets_route(self, method: str, parts: list[str], body: bytes) -> None:
        pb, svc = _pb(), self.service
        if len(parts) == 1 and method == "POST":
            d = pb.Dataset()
            d.ParseFromString(body)
            with svc._lock:
                did = svc._new_dataset(d.name, None)
            reply = pb.CreateUpdateResponse(id=did)
            reply.creation_time.FromSeconds(int(time.time()))
            reply.expiration_time.FromSeconds(int(time.time() + 30 * DAY))
            return self._pb_reply(reply)
        did = parts[1]
        ds = svc._datasets[did]
        if len(parts) == 2 and method == "GET":
            reply = pb.Dataset(dataset_id=did, name=ds["name"], permanent=False)
            reply.creation_time.FromSeconds(int(ds["created"]))
            reply.expiration_time.FromSeconds(int(ds["created"] + 30 * DAY))
            return self._pb_reply(reply)
        if len(parts) == 2 and method == "PATCH":
            return self._pb_reply(pb.CreateUpdateResponse(id=did))
        if parts[2] == "upload_url" and method == "GET":
            return self._pb_reply(pb.FileUploadResponse(url=pb.FileUploadURL(
                url=f"{self._base()}/blobs/{ds['blob']}", file_field_name="file")))
        if parts[2] == "download_data" and method == "GET":
            if time.time() > ds["created"] + 30 * DAY:
                return self._detail(404, f"Dataset {did} is expired.")
            return self._pb_reply(pb.FileDownloadResponse(url=pb.FileDownloadURL(
                url=f"{self._base()}/blobs/{ds['blob']}", filename=f"{ds['name']}.h5")))
        return self._detail(404, f"no route {method} {'/'.join(parts)}")

    def _create_job(self, body: bytes) -> None:
        pb, svc = _pb(), self.service
        req = pb.Job()
        req.ParseFromString(body)
        which = req.WhichOneof("job")
        if which == "compile_job":
            inner, kind = req.compile_job, "compile"
            dev_pb = inner.devices.devices[0] if inner.devices.devices else inner.device
        elif which == "inference_job":
            inner = req.inference_job
            kind = "profile" if inner.is_profiling_on and not inner.dataset.dataset_id else "inference"
            dev_pb = inner.device
        else:
            return self._detail(400, "unsupported job type")
        device = svc._device(dev_pb)
        if device is None:
            return self._detail(400, f"device {dev_pb.name} is not available")
        model_id = inner.model.model_id
        if model_id not in svc._models:
            return self._detail(404, f"Model ID '{model_id}' could not be found.")
        dataset_id = inner.dataset.dataset_id if kind == "inference" else None
        if dataset_id and (dataset_id not in svc._datasets or time.time() > svc._datasets[dataset_id]["created"] + 30 * DAY):
            return self._detail(404, f"Dataset {dataset_id} is expired or does not exist.")
        asked = _option(inner.options, "--qairt_version")
        qairt = resolve_qairt(svc.qairt, asked)
        if qairt is None:
            offered = ", ".join(r.api_version for r in svc.qairt)
            return self._detail(400, f"QAIRT version {asked} is not available (available: {offered})")
        with svc._lock:
            jid = svc._id("j")
            ran = device.member()
            job = _Job(jid, kind, inner.name, ran, model_id, inner.options, time.monotonic(),
                       svc._behaviour(kind, inner.name, device.name), qairt, dataset_id=dataset_id)
            if kind == "compile":
                runtime = _option(inner.options, "--target_runtime") or "tflite"
                mtype, ext = _RUNTIME_TYPES[runtime]
                graphs = re.search(r"context_enable_graphs=([A-Za-z0-9_]+)", inner.options)
                graph = graphs.group(1) if graphs else f"graph_{uuid.uuid4().hex[:8]}"  # QNN's own: random
                tid = svc._id("m")
                svc._models[tid] = {"name": inner.name.replace(" ", "_"), "model_type": pb.ModelType.Value(mtype),
                                    "is_directory": False, "blob": svc._id("blob"), "created": time.time(),
                                    "producer": jid, "ext": ext,
                                    "metadata": target_metadata(runtime, qairt, device, graph)}
                job.target_model_id = tid
            svc._jobs[jid] = job
            svc.submissions.append({
                "kind": kind, "job_id": jid, "device": device.name, "ran_on": ran.name, "name": inner.name,
                "options": inner.options, "model_digest": _array_digest(svc._model_files(model_id)),
            })
        reply = pb.CreateUpdateResponse(id=jid)
        reply.creation_time.FromSeconds(int(time.time()))
        return self._pb_reply(reply)
