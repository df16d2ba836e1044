"""AI Hub jobs, submitted once and seen through: idempotent submits, the ledger, failure types,
transient resubmits and the logs of every FAILED job.

* Submits are idempotent. The client's own job-creating POST retries dropped connections and
  5xx up to 7 times (qai_hub.util.session.retry_call_with_backoff), and AI Hub has no
  idempotency key, so a lost answer can create duplicate jobs. EdgeGate builds the same
  ``Job{compile_job|inference_job}`` protobuf the client builds and POSTs it once, with the
  client's own session factory, URL and auth header (``create_session(internal_retries=False)``,
  ``api_utils.api_url``/``auth_header``/``response_as_protobuf``). Every job name carries a
  nonce; after an ambiguous failure (no answer, 500/502/504) the job is looked up by name
  (``get_job_summaries``, newest first, page by page) before it is submitted again. A 429 or
  503 was not processed: it is waited out (``Retry-After``) and sent again.
* A FAILED job's ``failure_type`` (on the outer Job message: ``public_rest_api.get_job``)
  decides: transient types are resubmitted up to the device's ``transient_resubmits``, and
  the resubmission is recorded; anything else is one error line. Either way the job's logs
  (``Job.download_job_logs``) are saved and named.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgegate.artifacts import digest_json, sha256_file
from edgegate.errors import CompileError, TargetError
from edgegate.targets.aihub_ledger import NOT_REUSABLE, Ledger, LedgerJob, resume_key
from edgegate.targets.aihub_session import (
    AmbiguousSubmit,
    HubSession,
    RateLimited,
    parse_retry_after,
)

log = logging.getLogger(__name__)

# Failures of the farm, not of the model: worth the same job again. CLOUD_THROTTLED (the farm
# rate-limited the job), RUNTIME_INTERNAL_SERVICE_BUSY (no device free), RUNTIME_TIMEOUT (the
# device run timed out: on a busy farm, usually the queue), CLOUD_API_ERROR and QDC_API_ERROR
# (AI Hub's own cloud / Qualcomm Device Cloud calls failed). Model, input and toolchain types
# (MODEL_*, INVALID_*, QNN_*, *_OOM, UNSUPPORTED) fail the same way every time.
TRANSIENT_FAILURES = frozenset({
    "CLOUD_THROTTLED", "RUNTIME_INTERNAL_SERVICE_BUSY", "RUNTIME_TIMEOUT", "CLOUD_API_ERROR", "QDC_API_ERROR",
})
LOOKUP_PAGE = 50
LOOKUP_PAGES = 6  # jobs submitted in the last minutes are on the first page; a busy org may need more
LOOKUP_MARGIN = dt.timedelta(minutes=10)  # clock skew between this host and AI Hub


class ResourceMissing(TargetError):
    """The job's model or dataset is gone on AI Hub (404 on submit): upload it again."""


@dataclass(frozen=True)
class JobSpec:
    """One job to run: what keys it in the ledger and how to build its protobuf."""

    kind: str  # compile | profile | inference
    graph: str | None
    device: str  # the device name asked for
    model_digest: str
    options: str
    key_parts: Mapping[str, Any]
    build: Callable[[str], Any]  # job name -> CompileJob / InferenceJob protobuf (uploads as needed)


@dataclass
class JobOutcome:
    job: Any  # the finished qai_hub Job, fetched after it finished (``.device`` is the one that ran)
    ledger: LedgerJob
    resubmitted: list[dict[str, Any]] = field(default_factory=list)


def job_protobuf(kind: str, *, name: str, model_id: str, device: Any, options: str,
                 dataset_id: str | None = None) -> Any:
    """The protobuf the client builds in submit_compile_job / submit_inference_job (qai-hub 0.56)."""
    from qai_hub import public_api_pb2 as api_pb

    dev = api_pb.Device(name=device.name, os=device.os, attributes=list(device.attributes))
    model = api_pb.Model(model_id=model_id)
    if kind == "compile":
        return api_pb.CompileJob(model=model, name=name, devices=api_pb.DeviceList(devices=[dev], total_query_count=1),
                                 options=options.strip())
    job = api_pb.InferenceJob(model=model, name=name, device=dev, options=options.strip(),
                              is_profiling_on=kind == "profile")
    if dataset_id:
        job.dataset.CopyFrom(api_pb.Dataset(dataset_id=dataset_id))
    return job


def upload_source(graph: str, onnx_path: Path, tmp: Path, candidate_format: str) -> tuple[Path, str, str]:
    """What goes up for a graph: (path, digest, format). AIMET's export (a ``.aimet`` directory:
    ONNX + encodings) when asked for and the ONNX comes from EdgeGate's quantize cache entry
    (its manifest names the files); else the ONNX itself."""
    manifest = onnx_path.parent / "manifest.json"
    meta: dict[str, Any] = {}
    if manifest.is_file():
        meta = json.loads(manifest.read_text()).get("meta", {})
    if candidate_format == "aimet" and meta.get("encodings") and meta.get("encodings_onnx"):
        d = tmp / f"{graph}.aimet"
        d.mkdir()
        src = onnx_path.parent / meta["encodings_onnx"]
        shutil.copyfile(src, d / f"{graph}.onnx")
        shutil.copyfile(onnx_path.parent / meta["encodings"], d / f"{graph}.encodings")
        data = src.with_suffix(".data")
        if data.is_file():
            shutil.copyfile(data, d / f"{graph}.data")
        return d, "sha256:" + digest_json({p.name: sha256_file(p) for p in sorted(d.iterdir())}), "aimet"
    return onnx_path, "sha256:" + sha256_file(onnx_path), "onnx"


def post_job(config: Any, inner: Any) -> str:
    """Create a job with exactly one POST; the new job's id."""
    import requests
    from qai_hub import api_utils
    from qai_hub import public_api_pb2 as api_pb
    from qai_hub.util.session import create_session

    compile_job = isinstance(inner, api_pb.CompileJob)
    body = api_pb.Job(compile_job=inner) if compile_job else api_pb.Job(inference_job=inner)
    project = config.default_project
    url = api_utils.api_url(config, "projects", project, "jobs") if project else api_utils.api_url(config, "jobs")
    try:
        response = create_session(internal_retries=False, client_mode=config.client_mode).post(
            url, data=body.SerializeToString(), headers=api_utils.auth_header(config),
            params={"seed_target_model": "true"} if compile_job else None,
        )
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
            requests.exceptions.ChunkedEncodingError) as exc:
        raise AmbiguousSubmit(f"no answer to the submit ({type(exc).__name__})") from None
    status = response.status_code
    if status in (429, 503):
        raise RateLimited(status, parse_retry_after(response.headers.get("Retry-After")))
    if status >= 500:
        raise AmbiguousSubmit(f"HTTP {status} to the submit")
    if status >= 400:
        try:
            detail = str(json.loads(response.text).get("detail") or response.text)
        except (ValueError, AttributeError):
            detail = response.text[:300]
        if status == 401:
            raise TargetError("AI Hub: failed to authenticate: the API token is bad or expired")
        if status == 404:
            raise ResourceMissing(f"AI Hub: submit: {detail}")
        raise TargetError(f"AI Hub rejected the job (HTTP {status}): {detail}")
    created = api_utils.response_as_protobuf(response, api_pb.CreateUpdateResponse)
    if not created.id:
        raise TargetError(f"AI Hub created no job: {created.status}")
    return str(created.id)


class JobRunner:
    """Submits, resumes and waits on a target's jobs; records them in its ledger."""

    def __init__(self, hub: HubSession, ledger: Ledger, *, transient_resubmits: int) -> None:
        self.hub, self.ledger = hub, ledger
        self.transient_resubmits = transient_resubmits
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def _lock(self, key: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(key, threading.Lock())

    # -- ledger ----------------------------------------------------------------

    def get_or_submit(
        self,
        *,
        kind: str,
        graph: str | None,
        device: str,
        model_digest: str,
        options: str,
        key_parts: Mapping[str, Any],
        submit: Callable[[], tuple[str, str | None]],
        usable: Callable[[dict[str, Any]], bool] | None = None,
        done_status: str | None = None,
    ) -> LedgerJob:
        """Reuse the ledger's job for this key unless it FAILED or expired; else submit and
        record at once. ``usable`` can reject a found row (an expired dataset); ``done_status``
        is the status of what ``submit`` returns when it is finished already (uploads)."""
        hub = self.hub
        key = resume_key(kind, {"model": model_digest, "device": device, "options": options, **key_parts},
                         hub.client_version)
        result = {"scope": str(key_parts["scope"])} if "scope" in key_parts else None
        row = {"graph": graph, "kind": kind, "device": device, "options_digest": "sha256:" + digest_json(options),
               "resume_key": key, "model_digest": model_digest, "client_version": hub.client_version}
        with self._lock(key):
            found = self.ledger.find(key, exclude=NOT_REUSABLE)
            if found is not None and (usable is None or usable(found)):
                self.ledger.add(**row, job_id=found["job_id"], status=found["status"], url=found.get("url"),
                                reused=True, result=found.get("result") or None)
                log.info("AI Hub: %s %s: reusing %s (%s)", kind, graph or "", found["job_id"], found["status"])
                return LedgerJob(found["job_id"], True, found["status"], dict(found.get("result") or {}))
            if found is not None:
                self.ledger.update(found["job_id"], "EXPIRED")
            job_id, url = submit()
            status = done_status or "SUBMITTED"
            self.ledger.add(**row, job_id=job_id, status=status, url=url, result=result)
            return LedgerJob(job_id, False, status, dict(result or {}))

    # -- submit ----------------------------------------------------------------

    def submit(self, spec: JobSpec) -> tuple[str, str | None]:
        """One new job (idempotent: named with a nonce, looked up by name after an ambiguous
        failure); its id and URL."""
        hub = self.hub
        name = f"edgegate {spec.graph or ''} {spec.kind} {uuid.uuid4().hex[:10]}".replace("  ", " ")
        since = dt.datetime.now() - LOOKUP_MARGIN  # the client's summary dates are local naive times
        for attempt in range(2):
            inner = spec.build(name)
            try:
                job_id = hub.call(f"submit {spec.kind} ({spec.graph or 'data'})", lambda inner=inner: post_job(hub.config, inner),
                                  recover=lambda: self.find_by_name(name, spec.kind, since))
                break
            except ResourceMissing:
                if attempt:
                    raise
                log.info("AI Hub: %s (%s): model or dataset gone; uploading again", spec.kind, spec.graph)
        job = hub.call(f"get {spec.kind} job {job_id}", lambda: hub.client.get_job(job_id))
        return job.job_id, job.url

    def find_by_name(self, name: str, kind: str, since: dt.datetime) -> str | None:
        """The id of the job named ``name`` (submitted after ``since``), if AI Hub has one."""
        from qai_hub.client import JobType

        job_type = JobType.COMPILE if kind == "compile" else JobType.INFERENCE
        for page in range(LOOKUP_PAGES):
            batch = self.hub.call("look up a submitted job by name", lambda page=page: self.hub.client.get_job_summaries(
                offset=page * LOOKUP_PAGE, limit=LOOKUP_PAGE, type=job_type))
            for s in batch:
                if s.name == name:
                    log.info("AI Hub: the submit of %s landed after all: %s", name, s.job_id)
                    return str(s.job_id)
            if len(batch) < LOOKUP_PAGE or any(s.date < since for s in batch):
                return None
        return None

    # -- uploads -------------------------------------------------------------------

    def upload_model(self, path: Path, digest: str, graph: str | None) -> Any:
        """The model on AI Hub, uploaded once per content digest (ledger kind 'upload': not a
        measurement, so any run may reuse it), again when AI Hub no longer has it."""
        hub = self.hub

        def usable(row: dict[str, Any]) -> bool:
            try:
                hub.client.get_model(row["job_id"])
                return True
            except Exception:  # noqa: BLE001 - gone or not ours: upload again
                return False

        def submit() -> tuple[str, str | None]:
            m = hub.call(f"upload {path.name}", lambda: hub.client.upload_model(str(path), name=path.name))
            return m.model_id, m.url

        job = self.get_or_submit(kind="upload", graph=graph, device="*", model_digest=digest, options="",
                                 key_parts={"what": "model"}, submit=submit, usable=usable, done_status="SUCCESS")
        return hub.call(f"get model {job.job_id}", lambda: hub.client.get_model(job.job_id))

    def upload_dataset(self, data: Mapping[str, Any], digest: str) -> Any:
        """The dataset on AI Hub, uploaded once per content digest, again once expired (30 days)."""
        hub = self.hub

        def usable(row: dict[str, Any]) -> bool:
            try:
                return not hub.client.get_dataset(row["job_id"]).is_expired()
            except Exception:  # noqa: BLE001 - gone: upload again
                return False

        def submit() -> tuple[str, str | None]:
            ds = hub.call("upload dataset", lambda: hub.client.upload_dataset(dict(data), name=f"edgegate-{digest[7:19]}"))
            return ds.dataset_id, None

        lj = self.get_or_submit(kind="upload", graph=None, device="*", model_digest=digest, options="",
                                key_parts={"what": "dataset"}, submit=submit, usable=usable, done_status="SUCCESS")
        return hub.call(f"get dataset {lj.job_id}", lambda: hub.client.get_dataset(lj.job_id))

    # -- run ---------------------------------------------------------------------

    def run(self, spec: JobSpec, *, logs_dir: Path) -> JobOutcome:
        """Reuse or submit the job, wait for it, resubmit transient failures; FAILED raises
        one line naming the job, its failure type, its saved logs and its URL."""
        hub = self.hub
        resubmitted: list[dict[str, Any]] = []
        while True:
            lj = self.get_or_submit(kind=spec.kind, graph=spec.graph, device=spec.device,
                                    model_digest=spec.model_digest, options=spec.options,
                                    key_parts=spec.key_parts, submit=lambda: self.submit(spec))
            job_id = lj.job_id
            job = hub.call(f"get {spec.kind} job {job_id}", lambda: hub.client.get_job(job_id))  # noqa: B023 - called at once
            status = hub.wait(job, kind=spec.kind, on_status=lambda st: self._record(job_id, st))  # noqa: B023
            if status.success:
                final = hub.call(f"get {spec.kind} job {job_id}", lambda: hub.client.get_job(job_id))  # noqa: B023
                return JobOutcome(final, lj, resubmitted)
            failure_type = self.failure_type(job.job_id)
            reason = hub.redact(status.message or "no reason given")
            logs = self.save_logs(job, logs_dir / job.job_id)
            self.ledger.update(job.job_id, "FAILED", failure_reason=f"{reason} [failure type {failure_type}]", finished=True)
            where = f"AI Hub {spec.kind} job {job.job_id}" + (f" (graph '{spec.graph}')" if spec.graph else "")
            if failure_type in TRANSIENT_FAILURES and len(resubmitted) < self.transient_resubmits:
                resubmitted.append({"kind": spec.kind, "graph": spec.graph, "job_id": job.job_id,
                                    "failure_type": failure_type, "reason": reason, "logs": [str(p) for p in logs]})
                log.warning("%s: %s FAILED (%s, transient): %s; submitting it again", hub.name, where, failure_type, reason)
                continue
            err = CompileError if spec.kind == "compile" else TargetError
            again = f"; resubmitted {len(resubmitted)} time(s) before" if resubmitted else ""
            saved = f"logs: {logs_dir / job.job_id}" if logs else "no logs available"
            raise err(f"{hub.name}: {where} FAILED: {reason} (failure type {failure_type}{again}; {saved}) ({job.url})")

    def _record(self, job_id: str, status: Any) -> None:
        if status.success:
            self.ledger.update(job_id, "SUCCESS", finished=True)
        elif not status.finished:
            self.ledger.update(job_id, status.code)

    def failure_type(self, job_id: str) -> str:
        """The JobFailureType name of a FAILED job (the client does not expose it: read the
        outer Job message)."""
        from qai_hub import public_api_pb2 as api_pb
        from qai_hub import public_rest_api

        value = self.hub.call(f"failure type of job {job_id}", lambda: public_rest_api.get_job(self.hub.config, job_id).failure_type)
        try:
            return api_pb.JobFailureType.Name(value).removeprefix("JOB_FAILURE_TYPE_")
        except ValueError:
            return f"UNKNOWN_{value}"

    def save_logs(self, job: Any, out_dir: Path) -> list[Path]:
        """The job's device and hub logs, saved into out_dir (best effort: a failed download is
        logged, never the reason a run fails)."""
        try:
            paths = self.hub.call(f"logs of job {job.job_id}", lambda: job.download_job_logs(str(out_dir)))
        except TargetError as exc:
            log.warning("AI Hub: could not save the logs of job %s: %s", job.job_id, exc.message)
            return []
        return [Path(p) for p in paths]
