"""A fake Qualcomm AI Hub for tests: the REST + protobuf API that the real ``qai_hub`` client
speaks (``api/v1/...``, bodies from the wheel's ``public_api_pb2``), written from the
client's code in qai-hub 0.56.0 (public_rest_api.py, api_utils.py, client.py).

TEST FIXTURE ONLY: never shipped in the package. What it does for real and what it makes up:

* Uploads and downloads go to URLs it serves itself (``/blobs/KEY``): model parts by PUT
  (answering an ETag, as S3 does), datasets by multipart POST, downloads by GET.
* Jobs move CREATED -> running -> DONE/FAILED on a clock, per a scripted behaviour table
  (delay, FAILED with a reason, never finishing) and HTTP faults (N x 5xx, dropped
  connections) per method and path.
* Compile "compiles" the uploaded ONNX (or ``.aimet`` directory, whose encodings it applies
  as Quantize/DequantizeLinear pairs) into a runnable ONNX and serves it, behind a marker
  header, as the target model.
* Inference jobs compute their outputs FOR REAL: ONNX Runtime CPU runs the submitted model
  on the uploaded dataset, so scores computed from them are real numbers.
* Profile jobs return a ProfileDetail whose times and memory are SYNTHETIC (a function of
  the node count), and whose per-layer compute units say NPU for every node (CPU for op
  types a behaviour lists). Never read them as a measurement.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import re
import threading
import time
import zipfile
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import default as email_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import numpy as np

FAKE_TARGET_MARKER = b"EDGEGATE-FAKE-AIHUB-TARGET-MODEL\n"  # so nobody mistakes it for a context binary


def _pb():
    from qai_hub import public_api_pb2

    return public_api_pb2


@dataclass
class Device:
    name: str
    os: str
    attributes: list[str]


DEFAULT_DEVICES = [
    Device("RB5 (Proxy)", "12", ["chipset:qualcomm-qcs8250-proxy", "hexagon:v66", "framework:tflite",
                                 "framework:qnn", "framework:onnx", "format:iot", "os:android", "vendor:qualcomm"]),
    Device("QCS8250 (Proxy)", "12", ["chipset:qualcomm-qcs8250-proxy", "hexagon:v66", "framework:tflite",
                                     "framework:qnn", "framework:onnx", "format:iot", "os:android"]),
    Device("QCS6490 (Proxy)", "12", ["chipset:qualcomm-qcs6490-proxy", "hexagon:v68", "framework:tflite",
                                     "framework:qnn", "framework:onnx", "format:iot", "os:android"]),
    Device("Samsung Galaxy S24 (Family)", "14", ["chipset:qualcomm-snapdragon-8gen3", "hexagon:v75",
                                                 "htp-supports-fp16:true", "framework:tflite", "framework:qnn",
                                                 "framework:onnx", "format:phone", "os:android", "vendor:samsung"]),
]


@dataclass
class Behaviour:
    """How matching jobs behave. ``kind``: compile | profile | inference; ``match``: a substring
    of the job name (EdgeGate names jobs 'edgegate GRAPH ...') or of the device name."""

    kind: str
    delay_s: float = 0.1
    fail: str | None = None
    never_finish: bool = False
    match: str | None = None
    times: int | None = None  # only the first N matching jobs
    minimal_profile: bool = False  # a ProfileDetail without the optional fields
    cpu_op_types: tuple[str, ...] = ()

    def matches(self, kind: str, name: str, device: str) -> bool:
        if kind != self.kind or (self.times is not None and self.times <= 0):
            return False
        return self.match is None or self.match in name or self.match in device


@dataclass
class Fault:
    method: str
    pattern: str  # regex on the path
    status: int  # 0: drop the connection without an answer
    times: int


@dataclass
class _Job:
    id: str
    kind: str  # compile | profile | inference
    name: str
    device: Device
    model_id: str
    options: str
    created: float
    behaviour: Behaviour
    dataset_id: str | None = None
    state: int = 1
    failure: str | None = None
    target_model_id: str | None = None
    output_dataset_id: str | None = None
    profile: Any = None
    finished_at: float | None = None
    created_wall: float = field(default_factory=time.time)


def _array_digest(files: dict[str, bytes]) -> str:
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return h.hexdigest()


def apply_encodings(model_bytes: bytes, encodings: dict[str, Any]) -> bytes:
    """AIMET 1.0.0 encodings onto a plain ONNX: weights fake-quantized, 8-bit activations
    wrapped in QuantizeLinear/DequantizeLinear (uint8, zero point = -offset)."""
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.load_from_string(model_bytes)
    g = m.graph
    inits = {i.name: i for i in g.initializer}
    for e in encodings.get("param_encodings", []):
        init = inits.get(e["name"])
        if init is None:
            continue
        w = numpy_helper.to_array(init).astype(np.float64)
        scale, offset = np.asarray(e["scale"], np.float64), np.asarray(e["offset"], np.float64)
        if scale.size > 1 and w.ndim and w.shape[0] == scale.size:
            shape = (-1,) + (1,) * (w.ndim - 1)
            scale, offset = scale.reshape(shape), offset.reshape(shape)
        q = np.clip(np.round(w / scale) - offset, 0, 2 ** int(e["bw"]) - 1)
        init.CopyFrom(numpy_helper.from_array(((q + offset) * scale).astype(np.float32), init.name))
    graph_inputs = {i.name for i in g.input}
    for n, e in enumerate(encodings.get("activation_encodings", [])):
        if int(e["bw"]) != 8:
            continue
        name = e["name"]
        s_name, z_name = f"_fq{n}_scale", f"_fq{n}_zp"
        g.initializer.extend([
            numpy_helper.from_array(np.asarray(e["scale"][0], np.float32), s_name),
            numpy_helper.from_array(np.asarray(-int(e["offset"][0]), np.uint8), z_name),
        ])
        if name in graph_inputs:
            src, dst = name, f"{name}_fq{n}"
            for node in g.node:
                node.input[:] = [dst if i == src else i for i in node.input]
        else:
            producers = [node for node in g.node if name in node.output]
            if not producers:
                continue
            src, dst = f"{name}_raw{n}", name
            producers[0].output[:] = [src if o == name else o for o in producers[0].output]
        g.node.extend([
            helper.make_node("QuantizeLinear", [src, s_name, z_name], [f"{dst}_q{n}"]),
            helper.make_node("DequantizeLinear", [f"{dst}_q{n}", s_name, z_name], [dst]),
        ])
    from onnx import utils  # noqa: F401 - keeps the import local to the fixture

    sorted_nodes = _toposort(g)
    del g.node[:]
    g.node.extend(sorted_nodes)
    return m.SerializeToString()


def _toposort(g: Any) -> list[Any]:
    ready = {i.name for i in g.input} | {i.name for i in g.initializer} | {""}
    left, out = list(g.node), []
    while left:
        progressed = False
        for node in list(left):
            if all(i in ready for i in node.input):
                out.append(node)
                ready.update(node.output)
                left.remove(node)
                progressed = True
        if not progressed:
            raise ValueError("graph has a cycle or a missing input")
    return out


class FakeAihub:
    """The fake service. Use as a context manager; ``url`` is its api_url."""

    def __init__(self, token: str, devices: list[Device] | None = None) -> None:
        self.token = token
        self.devices = list(devices or DEFAULT_DEVICES)
        self.behaviours: list[Behaviour] = []
        self.faults: list[Fault] = []
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

    def fault(self, method: str, pattern: str, status: int, times: int = 1) -> None:
        with self._lock:
            self.faults.append(Fault(method, pattern, status, times))

    def count(self, kind: str, device: str | None = None) -> int:
        return sum(1 for s in self.submissions if s["kind"] == kind and (device is None or s["device"] == device))

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
                tm = self._models[job.target_model_id]
                tm.update(blob=key, runnable=runnable)
            elif job.kind == "inference":
                job.output_dataset_id = self._infer(job)
            else:
                job.profile = self._profile(job)
            job.state = pb.JobState.JOB_STATE_DONE
        except Exception as exc:  # noqa: BLE001 - a failed job, as the service reports it
            job.state, job.failure = pb.JobState.JOB_STATE_FAILED, str(exc)
        job.finished_at = time.time()

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
        """SYNTHETIC numbers, a function of the node count; compute units from the op types."""
        import onnx

        pb = _pb()
        g = onnx.load_from_string(self._runnable(job.model_id)).graph
        nodes = [n for n in g.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")]
        est = 200 + 7 * len(nodes)  # microseconds, made up
        d = pb.ProfileDetail(major_version=1, execution_time=est, after_execution_peak_memory=1_000_000 + 40_000 * len(nodes),
                             cold_load_time=9_000 + 50 * len(nodes), warm_load_time=3_000 + 20 * len(nodes),
                             after_cold_load_peak_memory=2_000_000 + 10_000 * len(nodes))
        for n in nodes:
            unit = "CPU" if n.op_type in job.behaviour.cpu_op_types else "NPU"
            d.layer_details.append(pb.LayerDetail(name=n.name, layer_type_name=n.op_type,
                                                  compute_unit=pb.ComputeUnit.Value(f"COMPUTE_UNIT_{unit}")))
        if not job.behaviour.minimal_profile:
            d.minor_version = 2
            d.all_execution_times.extend(est + (k % 5) * 3 for k in range(20))
            d.execution_memory.peak.lower = d.after_execution_peak_memory - 100_000
            d.execution_memory.peak.upper = d.after_execution_peak_memory + 100_000
            d.execution_memory.increase.lower, d.execution_memory.increase.upper = 10_000, 20_000
            d.cold_load_memory.peak.lower, d.cold_load_memory.peak.upper = 1, 2
        else:
            d.after_execution_peak_memory = 0  # not measured
        return d

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

    def _job_pb(self, job: _Job) -> Any:
        pb = _pb()
        with self._lock:
            self._job_state(job)
        dev = pb.Device(name=job.device.name, os=job.device.os, attributes=job.device.attributes)
        src = self._models[job.model_id]
        model = pb.Model(model_id=job.model_id, name=src["name"], model_type=src["model_type"])
        model.creation_time.FromSeconds(int(src["created"]))
        common: dict[str, Any] = {"name": job.name, "options": job.options, "job_state": job.state, "device": dev, "model": model}
        if job.failure is not None:
            common["failure_reason"] = job.failure
        if job.kind == "compile":
            tm = self._models[job.target_model_id]
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
        return pb.Job(**{f"{'compile' if job.kind == 'compile' else 'inference'}_job": inner}, hub_version="fake")


_RUNTIME_TYPES = {
    "qnn_context_binary": ("MODEL_TYPE_QNN_CONTEXT_BINARY", ".bin"),
    "precompiled_qnn_onnx": ("MODEL_TYPE_ONNX", ".onnx"),
    "tflite": ("MODEL_TYPE_TFLITE", ".tflite"),
    "onnx": ("MODEL_TYPE_ONNX", ".onnx"),
}


class _Handler(BaseHTTPRequestHandler):
    service: FakeAihub

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

    def _send(self, status: int, body: bytes = b"", ctype: str = "application/x-protobuf",
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _pb_reply(self, msg: Any) -> None:
        self._send(200, msg.SerializeToString())

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
                    if f.status == 0:
                        self.close_connection = True
                        self.connection.shutdown(2)
                        return
                    self._send(f.status, b"", "text/plain")
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
            return self._send(404, json.dumps({"detail": f"not found: {exc}"}).encode(), "application/json")

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
        base = f"http://127.0.0.1:{self.server.server_address[1]}"
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
        if head == "models":
            if len(parts) == 1 and method == "POST":
                m = pb.Model()
                m.ParseFromString(body)
                mid = svc._id("m")
                with svc._lock:
                    svc._models[mid] = {"name": m.name, "model_type": m.model_type, "is_directory": m.is_directory,
                                        "blob": svc._id("blob"), "created": time.time()}
                return self._pb_reply(pb.CreateUpdateResponse(id=mid))
            mid = parts[1]
            model = svc._models[mid]
            if len(parts) == 2 and method == "GET":
                reply = pb.Model(model_id=mid, name=model["name"], model_type=model["model_type"],
                                 is_directory=model["is_directory"])
                reply.creation_time.FromSeconds(int(model["created"]))
                if model.get("producer"):
                    reply.producer_id = model["producer"]
                return self._pb_reply(reply)
            if parts[2] == "multipart_upload" and method == "GET":
                return self._pb_reply(pb.FileUploadResponse(multipart_url=pb.FileMultipartUploadURL(
                    urls=[f"{base}/blobs/{model['blob']}"], upload_id=svc._id("u"), max_part_size=1 << 40)))
            if parts[2] == "multipart_upload" and method == "POST":
                return self._pb_reply(pb.CreateUpdateResponse(id=mid))
            if parts[2] == "download" and method == "GET":
                if model["blob"] not in svc._blobs:
                    return self._send(404, b'{"detail": "model not ready"}', "application/json")
                ext = model.get("ext", ".onnx")
                return self._pb_reply(pb.FileDownloadResponse(url=pb.FileDownloadURL(
                    url=f"{base}/blobs/{model['blob']}", filename=f"{model['name']}{ext}")))
        if head == "datasets":
            if len(parts) == 1 and method == "POST":
                d = pb.Dataset()
                d.ParseFromString(body)
                with svc._lock:
                    did = svc._new_dataset(d.name, None)
                reply = pb.CreateUpdateResponse(id=did)
                reply.creation_time.FromSeconds(int(time.time()))
                reply.expiration_time.FromSeconds(int(time.time()) + 30 * 86400)
                return self._pb_reply(reply)
            did = parts[1]
            ds = svc._datasets[did]
            if len(parts) == 2 and method == "GET":
                reply = pb.Dataset(dataset_id=did, name=ds["name"], permanent=False)
                reply.creation_time.FromSeconds(int(ds["created"]))
                reply.expiration_time.FromSeconds(int(ds["created"]) + 30 * 86400)
                return self._pb_reply(reply)
            if len(parts) == 2 and method == "PATCH":
                return self._pb_reply(pb.CreateUpdateResponse(id=did))
            if parts[2] == "upload_url" and method == "GET":
                return self._pb_reply(pb.FileUploadResponse(url=pb.FileUploadURL(
                    url=f"{base}/blobs/{ds['blob']}", file_field_name="file")))
            if parts[2] == "download_data" and method == "GET":
                return self._pb_reply(pb.FileDownloadResponse(url=pb.FileDownloadURL(
                    url=f"{base}/blobs/{ds['blob']}", filename=f"{ds['name']}.h5")))
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
        return self._send(404, json.dumps({"detail": f"no route {method} {'/'.join(parts)}"}).encode(), "application/json")

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
            return self._send(400, b'{"detail": "unsupported job type"}', "application/json")
        device = svc._device(dev_pb)
        if device is None:
            return self._send(400, json.dumps({"detail": f"device {dev_pb.name} is not available"}).encode(),
                              "application/json")
        model_id = inner.model.model_id
        if model_id not in svc._models:
            return self._send(404, json.dumps({"detail": f"model {model_id} not found"}).encode(), "application/json")
        with svc._lock:
            jid = svc._id("j")
            job = _Job(jid, kind, inner.name, device, model_id, inner.options, time.monotonic(),
                       svc._behaviour(kind, inner.name, device.name),
                       dataset_id=inner.dataset.dataset_id if kind == "inference" else None)
            if kind == "compile":
                m = re.search(r"--target_runtime\s+(\S+)", inner.options)
                mtype, ext = _RUNTIME_TYPES[m.group(1) if m else "tflite"]
                tid = svc._id("m")
                svc._models[tid] = {"name": inner.name.replace(" ", "_"), "model_type": pb.ModelType.Value(mtype),
                                    "is_directory": False, "blob": svc._id("blob"), "created": time.time(),
                                    "producer": jid, "ext": ext}
                job.target_model_id = tid
            svc._jobs[jid] = job
            svc.submissions.append({
                "kind": kind, "job_id": jid, "device": device.name, "name": inner.name, "options": inner.options,
                "model_digest": _array_digest(svc._model_files(model_id)),
            })
        reply = pb.CreateUpdateResponse(id=jid)
        reply.creation_time.FromSeconds(int(time.time()))
        return self._pb_reply(reply)
