"""Qualcomm AI Hub: compile, profile and run graphs on hosted Snapdragon devices (qai_hub).

* Toolchain: every compile, profile and inference job runs the device file's pinned QAIRT
  (``--qairt_version``; AihubDevice.qairt_version, default "2.45"; ``latest``/``default``
  resolve through ``get_frameworks()``), and context binaries get deterministic graph names
  (``--qnn_options context_enable_graphs=<graph>``, as ai-hub-models does). What actually ran
  is recorded: ``details["toolchain"]`` on each CompiledGraph (the compiled model's
  QAIRT_SDK_VERSION metadata, the device the compile job recorded) and on the
  BenchmarkResult (the profiles' tool_versions and devices; aihub_toolchain.merge_toolchains).
* compile: the graph goes up as a model (the INT8 candidate as AIMET's export, a ``.aimet``
  directory of ONNX + ``.encodings``, or as its QDQ ONNX; the FP32 baseline as its ONNX),
  then one compile job per graph; the downloaded target model is the artifact (cached by
  graph digest and ``describe()["compile_key"]``: device, options, QAIRT, client version).
  A compile job is reused only when model, device, options and a pinned QAIRT all match.
* benchmark: one profile job per graph, all at once, new for every call (a rerun, a rebench
  and a confirmation rerun measure again; a restarted crashed run waits on its own jobs).
  Memory, latency and placement as aihub_profile.py describes; without allow_cpu_fallback
  a quantized graph with CPU/GPU layers fails the run.
* run_batch: one inference job per graph and batch of feeds (``edgegate.run.batching`` groups
  an adapter's calls), on a dataset uploaded once per content digest (again when expired).

Jobs go through ``aihub_jobs.JobRunner`` (ledger, idempotent submits, failure types, logs)
and ``aihub_session.HubSession`` (credentials, retries, rate limits, waiting).
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, cast

import numpy as np

from edgegate.artifacts import sha256_file
from edgegate.errors import InputError, TargetError
from edgegate.metrics import Source
from edgegate.targets.aihub_catalogue import default_runtime, unlisted_device_error
from edgegate.targets.aihub_jobs import JobRunner, JobSpec, job_protobuf, upload_source
from edgegate.targets.aihub_ledger import Ledger, Scope, scope_for_run
from edgegate.targets.aihub_profile import placement_gate, profile_result
from edgegate.targets.aihub_toolchain import (
    QAIRT_TAGS,
    asked_qairt,
    compile_options,
    qairt_of_metadata,
    qairt_of_tool_versions,
    resolve_qairt,
    toolchain_of,
    with_qairt,
)
from edgegate.targets.base import BenchmarkResult, CompiledGraph, TargetBase

__all__ = ["AihubTarget", "default_runtime", "profile_result", "target_for_device"]

log = logging.getLogger(__name__)

RUNTIMES = ("qnn_context_binary", "precompiled_qnn_onnx", "tflite", "onnx")


def _onnx_io(path: Path) -> tuple[list[str], list[str], bool]:
    """Inputs, outputs, and whether the graph is quantized (QDQ nodes)."""
    import onnx

    g = onnx.load(str(path), load_external_data=False).graph
    inits = {i.name for i in g.initializer}
    qdq = any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in g.node)
    return [i.name for i in g.input if i.name not in inits], [o.name for o in g.output], qdq


def _digest_arrays(arrays: Mapping[str, Sequence[np.ndarray]]) -> str:
    h = hashlib.sha256()
    for name, items in arrays.items():
        h.update(name.encode() + b"\0")
        for a in items:
            h.update(str((a.dtype.str, a.shape)).encode())
            h.update(np.ascontiguousarray(a).tobytes())
    return "sha256:" + h.hexdigest()


class _AihubSession:
    def __init__(self, target: AihubTarget, compiled: CompiledGraph) -> None:
        self.target, self.compiled = target, compiled

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        return self.target.run_batch(self.compiled, [dict(feeds)])[0]


class AihubTarget(TargetBase):
    """A device on Qualcomm AI Hub (source ``aihub-profile``); runs FP32 and INT8 graphs."""

    source = Source.AIHUB_PROFILE
    runs_fp32 = True
    max_parallel_compiles = 8  # the hosted farm runs jobs in parallel: compile every graph at once
    batches_calls = True  # one inference job per graph and batch of feeds

    def __init__(self, device: Any, *, clock: Callable[[], float] | None = None,
                 sleep: Callable[[float], None] | None = None) -> None:
        self.spec = device
        self.name = device.name
        self.allow_cpu_fallback = bool(device.allow_cpu_fallback)
        if "--target_runtime" in device.compile_options:
            raise InputError(
                f"{device.source_label}: compile_options: set target_runtime in the device "
                "file instead of --target_runtime in compile_options"
            )
        self._clock, self._sleep = clock, sleep
        self._hub: Any = None
        self._jobs: JobRunner | None = None
        self._resolved: Any = None  # qai_hub.Device
        self._runtime: str | None = device.target_runtime
        self._qairt: tuple[str, str | None] | None = None  # (asked, resolved full version)
        self._init_lock = threading.Lock()
        self.ledger = Ledger()
        # Not attached to a database run: this object's measurements are its own.
        self._scope = Scope(f"process {uuid.uuid4().hex[:12]}")
        self._bench_calls = 0
        self._work_dir: Path | None = None

    # -- session and device ------------------------------------------------------

    @property
    def hub(self) -> Any:
        """The HubSession, made on first use (credentials are needed from here on)."""
        with self._init_lock:
            if self._hub is None:
                from edgegate.targets.aihub_session import HubSession

                s = self.spec
                self._hub = HubSession(self.name, poll_interval_s=s.poll_interval_s, job_timeout_s=s.job_timeout_s,
                                       max_retries=s.max_retries, rate_limit_budget_s=s.rate_limit_budget_s,
                                       clock=self._clock, sleep=self._sleep)
                self._jobs = JobRunner(self._hub, self.ledger, transient_resubmits=s.transient_resubmits)
            return self._hub

    @property
    def jobs(self) -> JobRunner:
        """The job runner (ledger, submits, waits), made with the session."""
        self.hub  # noqa: B018 - makes both on first use
        return cast(JobRunner, self._jobs)

    def attach_run(self, db: Any, run_id: int) -> None:
        """Record this run's jobs in the database's ledger (the pipeline calls this per variant).
        The run's invocation scopes its profile and inference jobs, or, when the run restarts
        a crashed one, the crashed run's (aihub_ledger.scope_for_run)."""
        self.ledger.db, self.ledger.run_id = db, run_id
        self._scope = scope_for_run(db, run_id, max_age_s=self.spec.job_timeout_s)
        self._bench_calls, self._work_dir = 0, None
        if self._hub is not None:
            self._hub.stopping.clear()

    def cancel(self) -> None:
        """Stop waiting (threads leave at their next poll); submitted jobs stay in the ledger.
        The next operation started from the caller's thread (benchmark, run_batch, a compile
        on the main thread, the next run) waits again."""
        if self._hub is not None:
            self._hub.stopping.set()

    def _begin(self) -> Any:
        """The session, no longer stopping: an operation started from the caller's thread."""
        hub = self.hub
        hub.stopping.clear()
        return hub

    def device(self) -> Any:
        """The AI Hub device, resolved with get_devices(); a device AI Hub does not list fails
        here, before anything is uploaded (aihub_catalogue.unlisted_device_error)."""
        with self._init_lock:
            if self._resolved is not None:
                return self._resolved
        import qai_hub

        hub, s = self.hub, self.spec
        found = hub.call("list devices", lambda: hub.client.get_devices(name=s.device or "", attributes=list(s.attributes)))
        if not found:
            every = hub.call("list devices", lambda: hub.client.get_devices())
            named = [d for d in every if s.device and d.name == s.device]
            if named:  # the name exists, the attributes do not match it
                raise InputError(
                    f"{s.source_label}: attributes: AI Hub device '{s.device}' does not have {', '.join(s.attributes)} "
                    f"(it has: {', '.join(sorted(set(named[0].attributes)))})"
                )
            raise unlisted_device_error(s, every)
        chosen = found[0]  # as the client's own submit does: the device the server selects, in full
        with self._init_lock:
            self._resolved = qai_hub.Device(name=chosen.name, os=chosen.os, attributes=list(chosen.attributes))
            if self._runtime is None:
                self._runtime = default_runtime(chosen.attributes)
            return self._resolved

    @property
    def runtime(self) -> str:
        if self._runtime is None:
            self.device()
        assert self._runtime is not None
        return self._runtime

    # -- toolchain ---------------------------------------------------------------

    def qairt(self) -> tuple[str, str | None]:
        """(the QAIRT version asked for, the full version AI Hub resolves it to)."""
        with self._init_lock:
            if self._qairt is not None:
                return self._qairt
        hub, asked = self.hub, asked_qairt(self.spec)
        frameworks = hub.call("list QAIRT versions", hub.client.get_frameworks)
        resolved = resolve_qairt(asked, frameworks, self.spec.source_label)
        with self._init_lock:
            self._qairt = (asked, resolved)
        return self._qairt

    @property
    def qairt_pinned(self) -> bool:
        return self.qairt()[0] not in QAIRT_TAGS

    def _with_qairt(self, options: str) -> str:
        return with_qairt(options, self.qairt()[0])

    def _compile_options(self, graph: str | None = None) -> str:
        return compile_options(self.runtime, self.spec.compile_options, self.qairt()[0], graph)

    def describe(self) -> dict[str, Any]:
        from edgegate.targets.aihub_session import client_version

        dev = self.device()
        asked, resolved = self.qairt()
        s = self.spec
        versions = {"qai-hub": client_version()}
        return {
            "kind": "aihub",
            "name": self.name,
            "runtime": f"Qualcomm AI Hub, {self.runtime}",
            "chipset": s.chipset,
            "arch": s.arch,
            "aihub_device": dev.name,
            "aihub_attributes": list(s.attributes),
            "target_runtime": self.runtime,
            "compile_options": self._compile_options(),
            "profile_options": self._with_qairt(s.profile_options),
            "inference_options": self._with_qairt(s.inference_options),
            "candidate_format": s.candidate_format,
            "timing_source": self.source.value,
            "description": s.description or "",
            "versions": versions,
            "qairt_version": asked,
            "qairt_resolved": resolved,
            "allow_cpu_fallback": self.allow_cpu_fallback,
            # what else determines the compiled artifact: the pipeline's compile cache key
            # and the service: a cached compile names its model by an id only that deployment knows
            "compile_key": {"device": dev.name, "attributes": list(s.attributes), "options": self._compile_options(),
                            "candidate_format": s.candidate_format, "qairt_version": asked,
                            "qairt_resolved": resolved, "service": self.hub.config.api_url, **versions},
        }

    def _logs_dir(self, fallback: Path | None = None) -> Path:
        """Where FAILED jobs' logs go: the run's work dir once benchmark() has named it."""
        if self._work_dir is not None:
            return self._work_dir / "aihub-logs"
        return (fallback or Path(tempfile.gettempdir()) / "edgegate") / "aihub-logs"

    def _target_model(self, compiled: CompiledGraph) -> Any:
        """The compiled model on AI Hub: by id when the service still has it, else uploaded."""
        info = compiled.details.get("aihub", {})
        model_id = info.get("target_model_id")
        if model_id:
            try:
                return self.hub.client.get_model(model_id)
            except Exception as exc:  # noqa: BLE001
                log.info("AI Hub: model %s not available (%s); uploading the cached artifact", model_id, type(exc).__name__)
        return self.jobs.upload_model(compiled.artifact, "sha256:" + sha256_file(compiled.artifact), compiled.graph)

    # -- compile -------------------------------------------------------------------

    def compile(self, graph: str, onnx_path: Path, out_dir: Path) -> CompiledGraph:
        """One compile job for the device; the downloaded target model is the artifact."""
        from qai_hub import ModelMetadataKey

        out_dir.mkdir(parents=True, exist_ok=True)
        # compile_graphs runs compiles in worker threads and cancels them together
        hub = self._begin() if threading.current_thread() is threading.main_thread() else self.hub
        device = self.device()
        asked, resolved = self.qairt()
        options = self._compile_options(graph)
        inputs, outputs, qdq = _onnx_io(onnx_path)
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="edgegate-aihub-") as tmp:
            src, digest, fmt = upload_source(graph, onnx_path, Path(tmp), self.spec.candidate_format)
            # Reusable across runs only with a pinned QAIRT: under latest/default only a
            # restarted run waits on its own job.
            key = {"qairt": resolved, **({} if self.qairt_pinned else {"scope": self._scope.key})}
            spec = JobSpec("compile", graph, device.name, digest, options, key,
                           build=lambda name: job_protobuf("compile", name=name, model_id=self.jobs.upload_model(src, digest, graph).model_id,
                                                           device=device, options=options))
            outcome = self.jobs.run(spec, logs_dir=self._logs_dir(out_dir.parent))
        job = outcome.job
        target = job.get_target_model()
        if target is None:
            raise TargetError(f"{self.name}: AI Hub compile job {job.job_id} succeeded but has no target model ({job.url})")
        metadata = hub.call(f"metadata of model {target.model_id}", lambda: target.metadata)
        qairt = qairt_of_metadata(metadata)
        self.ledger.update(job.job_id, "SUCCESS", result={"target_model_id": target.model_id})
        artifact = hub.download_model(target.model_id, out_dir)
        wall_ms = (time.perf_counter() - t0) * 1e3
        return CompiledGraph(
            graph, artifact, (artifact,), 0, 0, (), self._job_ms(job.job_id) or wall_ms,
            {
                "aihub": {
                    "compile_job": job.job_id, "url": job.url, "target_model_id": target.model_id,
                    "device": device.name, "target_runtime": self.runtime, "source_format": fmt,
                    "source_digest": digest, "options": options, "reused_job": outcome.ledger.reused,
                    "client_version": hub.client_version, "quantized": fmt == "aimet" or qdq,
                    "qairt_version": asked, "graph_names": metadata.get(ModelMetadataKey.QNN_MODEL_GRAPH_NAMES),
                    "metadata": {k.name: v for k, v in metadata.items()},
                    "resubmitted": outcome.resubmitted,
                },
                "toolchain": toolchain_of(job.device, qairt, hub.client_version),
                "inputs": inputs,
                "outputs": outputs,
            },
        )

    def _job_ms(self, job_id: str) -> float | None:
        """The service's own start-to-completion time of a job, when it reports both."""
        from qai_hub import public_rest_api

        try:
            pb = public_rest_api.get_job(self.hub.config, job_id)
        except Exception:  # noqa: BLE001 - a nicety: fall back to wall time
            return None
        inner = getattr(pb, pb.WhichOneof("job") or "compile_job")
        start, end = inner.start_time, inner.completion_time
        if start.seconds and end.seconds and end.ToNanoseconds() >= start.ToNanoseconds():
            return (end.ToNanoseconds() - start.ToNanoseconds()) / 1e6
        return None

    # -- profile -------------------------------------------------------------------

    def _profile(self, compiled: CompiledGraph, work_dir: Path, call: int) -> dict[str, Any]:
        from qai_hub import public_rest_api

        hub, device = self.hub, self.device()
        digest = "sha256:" + sha256_file(compiled.artifact)
        options = self._with_qairt(self.spec.profile_options)
        key = {"scope": self._scope.key, "benchmark": call}
        spec = JobSpec("profile", compiled.graph, device.name, digest, options, key,
                       build=lambda name: job_protobuf("profile", name=name, model_id=self._target_model(compiled).model_id,
                                                       device=device, options=options))
        outcome = self.jobs.run(spec, logs_dir=self._logs_dir())
        job = outcome.job
        profile = hub.call(f"download profile of job {job.job_id}", job.download_profile)
        if not profile:
            raise TargetError(f"{self.name}: AI Hub profile job {job.job_id} returned no profile ({job.url})")
        # ProfileDetail.tool_versions is not in the client's dict: read the job's results.
        tools = hub.call(f"tool versions of job {job.job_id}",
                         lambda: list(public_rest_api.get_job_results(hub.config, job.job_id).inference_job_result.detail.tool_versions))
        tool_versions = [{"name": t.name, "version": t.version} for t in tools]
        work_dir.mkdir(parents=True, exist_ok=True)
        (work_dir / f"{compiled.graph}_aihub_profile.json").write_text(
            json.dumps({**profile, "tool_versions": tool_versions}, indent=1, default=list))
        return {"profile": profile, "job_id": job.job_id, "url": job.url, "reused_job": outcome.ledger.reused,
                "toolchain": toolchain_of(job.device, qairt_of_tool_versions(tools), hub.client_version),
                "tool_versions": tool_versions, "resubmitted": outcome.resubmitted}

    def benchmark(
        self,
        compiled: Sequence[CompiledGraph],
        feeds: Mapping[str, Mapping[str, np.ndarray]],
        *,
        warmup: int,
        repeats: int,
        min_seconds: float,
        work_dir: Path,
        processes: int = 1,
    ) -> BenchmarkResult:
        """Profile every graph on the device at once, in new profile jobs (every call measures
        afresh); AI Hub's profiler picks the iterations (``--max_profiler_iterations`` in
        profile_options), so warmup/repeats do not apply, and one profile job per graph is one
        process (`processes` does not apply either: the samples carry no process ids, and
        comparisons say their run-to-run variance is unknown)."""
        self._begin()
        with self._init_lock:
            self._bench_calls += 1
            call = self._bench_calls
            if self._work_dir is None:
                self._work_dir = work_dir
        with ThreadPoolExecutor(max(1, len(compiled)), thread_name_prefix="aihub-profile") as pool:
            try:
                results = list(pool.map(lambda c: self._profile(c, work_dir, call), compiled))
            except BaseException:
                self.cancel()  # Ctrl-C or a failed graph: the other waits end at their next poll
                raise
        if not self.allow_cpu_fallback:
            placement_gate(self.name, self.spec.source_label, compiled, results)
        return profile_result(self.device().name, compiled, results)

    # -- inference -------------------------------------------------------------------

    def run_batch(self, compiled: CompiledGraph, feeds_list: Sequence[Mapping[str, np.ndarray]]) -> list[list[np.ndarray]]:
        """One inference job on the device for a batch of feeds; outputs in the same order."""
        if not feeds_list:
            return []
        hub, device = self._begin(), self.device()
        names = list(compiled.details.get("inputs") or feeds_list[0].keys())
        data = {n: [np.ascontiguousarray(f[n]) for f in feeds_list] for n in names}
        data_digest = _digest_arrays(data)
        digest = "sha256:" + sha256_file(compiled.artifact)
        options = self._with_qairt(self.spec.inference_options)
        spec = JobSpec(
            "inference", compiled.graph, device.name, digest, options,
            {"dataset": data_digest, "scope": self._scope.key},
            build=lambda name: job_protobuf("inference", name=name, model_id=self._target_model(compiled).model_id,
                                            device=device, options=options,
                                            dataset_id=self.jobs.upload_dataset(data, data_digest).dataset_id),
        )
        for attempt in range(2):
            outcome = self.jobs.run(spec, logs_dir=self._logs_dir())
            job = outcome.job
            try:
                out = hub.call(f"download outputs of job {job.job_id}", job.download_output_data)
                break
            except TargetError:
                if attempt or not outcome.ledger.reused:
                    raise
                # a resumed job whose output dataset expired: run it again
                self.ledger.update(job.job_id, "EXPIRED")
        if not out:
            raise TargetError(f"{self.name}: AI Hub inference job {job.job_id} returned no outputs ({job.url})")
        wanted = list(compiled.details.get("outputs") or [])
        keys = wanted if wanted and all(k in out for k in wanted) else list(out)
        if any(len(out[k]) != len(feeds_list) for k in keys):
            raise TargetError(
                f"{self.name}: AI Hub inference job {job.job_id} returned {len(out[keys[0]])} outputs for "
                f"{len(feeds_list)} inputs ({job.url})"
            )
        return [[np.asarray(out[k][i]) for k in keys] for i in range(len(feeds_list))]

    def open(self, compiled: CompiledGraph) -> _AihubSession:
        """A per-call session (one job per call): the pipeline batches calls with run_batch."""
        return _AihubSession(self, compiled)


def target_for_device(device: Any) -> AihubTarget:
    """Build the AI Hub target for a DeviceSpec of kind aihub (no network until first use)."""
    if device.kind != "aihub":
        raise TargetError(f"device '{device.name}': kind '{device.kind}' is not an AI Hub device")
    return AihubTarget(device)
