"""Qualcomm AI Hub: compile, profile and run graphs on hosted Snapdragon devices (qai_hub).

* compile: the graph goes up as a model (the INT8 candidate as AIMET's export, a ``.aimet``
  directory of ONNX + ``.encodings``, or as its QDQ ONNX; the FP32 baseline as its ONNX),
  then one compile job per graph for the device's target runtime; the target model is
  downloaded as the artifact (the pipeline caches it by graph digest and ``describe()``,
  which carries the device, runtime, options and client version).
* benchmark: one profile job per graph, all at once. Everything the service returns is
  source ``aihub-profile``: ``estimated_inference_time`` and ``all_inference_times``
  (microseconds) become the latency samples, ``estimated_inference_peak_memory`` and its
  range (bytes) the peak memory, first/warm load times the load time, and the per-layer
  ``compute_unit`` the NPU/GPU/CPU layer counts (``details["placement"]``).
* run_batch: one inference job per graph and batch of feeds (``edgegate.run.batching`` groups
  an adapter's calls), on a dataset uploaded once per content digest.

Jobs go through ``HubSession``: ledger, resume, retries, timeouts.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import shutil
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from edgegate.artifacts import digest_json, sha256_file
from edgegate.errors import InputError, TargetError
from edgegate.metrics import Source
from edgegate.targets.base import BenchmarkResult, CompiledGraph, GraphTiming, TargetBase

log = logging.getLogger(__name__)

RUNTIMES = ("qnn_context_binary", "precompiled_qnn_onnx", "tflite", "onnx")
_MIB = 1024 * 1024


def default_runtime(attributes: Sequence[str]) -> str:
    """A runtime the device can run both variants on.

    HTPs with FP16 (v69+) run the FP32 baseline in a QNN context binary too; older parts
    (RB5's v66 DSP, QCS6490's v68) have no float path on the NPU, so TFLite (NPU for INT8
    through the QNN delegate, GPU/CPU for FP32); ONNX Runtime where there is no TFLite.
    """
    attrs = set(attributes)
    if "framework:qnn" in attrs and "htp-supports-fp16:true" in attrs:
        return "qnn_context_binary"
    if "framework:tflite" in attrs:
        return "tflite"
    if "framework:onnx" in attrs:
        return "onnx"
    return "qnn_context_binary"


def _onnx_io(path: Path) -> tuple[list[str], list[str]]:
    import onnx

    g = onnx.load(str(path), load_external_data=False).graph
    inits = {i.name for i in g.initializer}
    return [i.name for i in g.input if i.name not in inits], [o.name for o in g.output]


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

    def __init__(self, device: Any) -> None:
        self.spec = device
        self.name = device.name
        if "--target_runtime" in device.compile_options:
            raise InputError(
                f"{device.source_label}: compile_options: set target_runtime in the device "
                "file instead of --target_runtime in compile_options"
            )
        self._hub: Any = None
        self._resolved: Any = None  # qai_hub.Device
        self._runtime: str | None = device.target_runtime
        self._init_lock = threading.Lock()
        self._db: Any = None
        self._run_id: int | None = None

    # -- session and device ------------------------------------------------------

    @property
    def hub(self) -> Any:
        """The HubSession, made on first use (credentials are needed from here on)."""
        with self._init_lock:
            if self._hub is None:
                from edgegate.targets.aihub_session import HubSession

                s = self.spec
                self._hub = HubSession(self.name, poll_interval_s=s.poll_interval_s,
                                       job_timeout_s=s.job_timeout_s, max_retries=s.max_retries)
                self._hub.ledger.db, self._hub.ledger.run_id = self._db, self._run_id
            return self._hub

    def attach_run(self, db: Any, run_id: int) -> None:
        """Record this run's jobs in the database's ledger (the pipeline calls this per variant)."""
        self._db, self._run_id = db, run_id
        if self._hub is not None:
            self._hub.ledger.db, self._hub.ledger.run_id = db, run_id
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
        """The AI Hub device, resolved with get_devices(); unknown names list the closest ones."""
        with self._init_lock:
            if self._resolved is not None:
                return self._resolved
        import qai_hub

        hub, s = self.hub, self.spec
        where = f"{s.source_label}"
        found = hub.call("list devices", lambda: hub.client.get_devices(name=s.device or "", attributes=list(s.attributes)))
        if not found:
            every = hub.call("list devices", lambda: hub.client.get_devices())
            if s.device:
                names = sorted({d.name for d in every})
                close = difflib.get_close_matches(s.device, names, n=5, cutoff=0.3)
                named = [d for d in every if d.name == s.device]
                if named:  # the name exists, the attributes do not match it
                    have = sorted(set(named[0].attributes))
                    raise InputError(
                        f"{where}: attributes: AI Hub device '{s.device}' does not have {', '.join(s.attributes)} "
                        f"(it has: {', '.join(have)})"
                    )
                shown = ", ".join(f"'{n}'" for n in close) if close else ", ".join(f"'{n}'" for n in names[:8])
                raise InputError(
                    f"{where}: device: AI Hub has no device named '{s.device}' "
                    f"({'closest' if close else 'some of its devices'}: {shown}); `qai-hub list-devices` lists them all"
                )
            attrs = sorted({a for d in every for a in d.attributes})
            hints = [m for a in s.attributes for m in difflib.get_close_matches(a, attrs, n=3, cutoff=0.5)]
            raise InputError(
                f"{where}: attributes: no AI Hub device has all of {', '.join(s.attributes)}"
                + (f" (closest attributes: {', '.join(sorted(set(hints)))})" if hints else "")
            )
        chosen = found[0]
        with self._init_lock:
            self._resolved = qai_hub.Device(name=chosen.name, os=chosen.os if not s.device else "",
                                            attributes=list(s.attributes))
            self._attributes = list(chosen.attributes)
            if self._runtime is None:
                self._runtime = default_runtime(chosen.attributes)
            return self._resolved

    @property
    def runtime(self) -> str:
        if self._runtime is None:
            self.device()
        assert self._runtime is not None
        return self._runtime

    def _compile_options(self) -> str:
        return f"--target_runtime {self.runtime} {self.spec.compile_options}".strip()

    def describe(self) -> dict[str, Any]:
        from edgegate.targets.aihub_session import client_version

        dev = self.device()
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
            "profile_options": s.profile_options,
            "inference_options": s.inference_options,
            "candidate_format": s.candidate_format,
            "timing_source": self.source.value,
            "description": s.description or "",
            "versions": versions,
            # what else determines the compiled artifact: the pipeline's compile cache key
            "compile_key": {"device": dev.name, "attributes": list(s.attributes), "options": self._compile_options(),
                            "candidate_format": s.candidate_format, **versions},
        }

    # -- compile -------------------------------------------------------------------

    def _source(self, graph: str, onnx_path: Path, tmp: Path) -> tuple[Path, str, str]:
        """What goes up for a graph: (path, digest, format). AIMET's export when asked for and
        the ONNX comes from EdgeGate's quantize cache entry (its manifest names the files)."""
        manifest = onnx_path.parent / "manifest.json"
        meta: dict[str, Any] = {}
        if manifest.is_file():
            meta = json.loads(manifest.read_text()).get("meta", {})
        if self.spec.candidate_format == "aimet" and meta.get("encodings") and meta.get("encodings_onnx"):
            d = tmp / f"{graph}.aimet"
            d.mkdir()
            src = onnx_path.parent / meta["encodings_onnx"]
            shutil.copyfile(src, d / f"{graph}.onnx")
            shutil.copyfile(onnx_path.parent / meta["encodings"], d / f"{graph}.encodings")
            data = src.with_suffix(".data")
            if data.is_file():
                shutil.copyfile(data, d / f"{graph}.data")
            digest = "sha256:" + digest_json({p.name: sha256_file(p) for p in sorted(d.iterdir())})
            return d, digest, "aimet"
        return onnx_path, "sha256:" + sha256_file(onnx_path), "onnx"

    def _upload(self, path: Path, digest: str, graph: str | None) -> Any:
        """The model on AI Hub, uploaded once per content digest (ledger kind 'upload')."""
        hub = self.hub

        def usable(row: dict[str, Any]) -> bool:
            try:
                hub.client.get_model(row["job_id"])
                return True
            except Exception:  # noqa: BLE001 - gone or not ours: upload again
                return False

        def submit() -> tuple[str, str | None]:
            m = hub.client.upload_model(str(path), name=path.name)
            return m.model_id, m.url

        job = hub.get_or_submit(kind="upload", graph=graph, device="*", model_digest=digest, options="",
                                key_parts={"what": "model"}, submit=submit, usable=usable, done_status="SUCCESS")
        return hub.call(f"get model {job.job_id}", lambda: hub.client.get_model(job.job_id))

    def compile(self, graph: str, onnx_path: Path, out_dir: Path) -> CompiledGraph:
        """One compile job for the device; the downloaded target model is the artifact."""
        out_dir.mkdir(parents=True, exist_ok=True)
        # compile_graphs runs compiles in worker threads and cancels them together
        hub = self._begin() if threading.current_thread() is threading.main_thread() else self.hub
        device = self.device()
        options = self._compile_options()
        inputs, outputs = _onnx_io(onnx_path)
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="edgegate-aihub-") as tmp:
            src, digest, fmt = self._source(graph, onnx_path, Path(tmp))

            def submit() -> tuple[str, str | None]:
                model = self._upload(src, digest, graph)
                job = hub.client.submit_compile_job(model, device=device, name=f"edgegate {graph}",
                                                    options=options, retry=False)
                return job.job_id, job.url

            lj = hub.get_or_submit(kind="compile", graph=graph, device=device.name, model_digest=digest,
                                   options=options, key_parts={}, submit=submit)
        job = hub.call(f"get compile job {lj.job_id}", lambda: hub.client.get_job(lj.job_id))
        hub.wait(job, kind="compile", graph=graph)
        target = job.get_target_model()
        if target is None:
            raise TargetError(f"{self.name}: AI Hub compile job {job.job_id} succeeded but has no target model ({job.url})")
        hub.ledger.update(job.job_id, "SUCCESS", result={"target_model_id": target.model_id})
        artifact = hub.download_model(target.model_id, out_dir)
        wall_ms = (time.perf_counter() - t0) * 1e3
        return CompiledGraph(
            graph, artifact, (artifact,), 0, 0, (), self._job_ms(job.job_id) or wall_ms,
            {
                "aihub": {
                    "compile_job": job.job_id, "url": job.url, "target_model_id": target.model_id,
                    "device": device.name, "target_runtime": self.runtime, "source_format": fmt,
                    "source_digest": digest, "options": options, "reused_job": lj.reused,
                    "client_version": hub.client_version,
                },
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

    def _target_model(self, compiled: CompiledGraph) -> Any:
        """The compiled model on AI Hub: by id when the service still has it, else uploaded."""
        hub = self.hub
        info = compiled.details.get("aihub", {})
        model_id = info.get("target_model_id")
        if model_id:
            try:
                return hub.client.get_model(model_id)
            except Exception as exc:  # noqa: BLE001
                log.info("AI Hub: model %s not available (%s); uploading the cached artifact", model_id, type(exc).__name__)
        return self._upload(compiled.artifact, "sha256:" + sha256_file(compiled.artifact), compiled.graph)

    # -- profile -------------------------------------------------------------------

    def _profile(self, compiled: CompiledGraph, work_dir: Path) -> dict[str, Any]:
        hub, device = self.hub, self.device()
        digest = "sha256:" + sha256_file(compiled.artifact)
        options = self.spec.profile_options

        def submit() -> tuple[str, str | None]:
            # submit_profile_job is, since qai-hub 0.56, this call with a deprecation notice.
            job = hub.client.submit_inference_job(self._target_model(compiled), device=device, inputs=None,
                                                  name=f"edgegate {compiled.graph} profile", options=options,
                                                  retry=False, profile=True)
            return job.job_id, job.url

        lj = hub.get_or_submit(kind="profile", graph=compiled.graph, device=device.name, model_digest=digest,
                               options=options, key_parts={}, submit=submit)
        job = hub.call(f"get profile job {lj.job_id}", lambda: hub.client.get_job(lj.job_id))
        hub.wait(job, kind="profile", graph=compiled.graph)
        profile = hub.call(f"download profile of job {job.job_id}", job.download_profile)
        if not profile:
            raise TargetError(f"{self.name}: AI Hub profile job {job.job_id} returned no profile ({job.url})")
        work_dir.mkdir(parents=True, exist_ok=True)
        (work_dir / f"{compiled.graph}_aihub_profile.json").write_text(json.dumps(profile, indent=1, default=list))
        return {"profile": profile, "job_id": job.job_id, "url": job.url, "reused_job": lj.reused}

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
        """Profile every graph on the device at once; AI Hub's profiler picks the iterations
        (``--max_profiler_iterations`` in profile_options), so warmup/repeats do not apply, and
        one profile job per graph is one process (`processes` does not apply either: the
        samples carry no process ids, and comparisons say their run-to-run variance is unknown)."""
        self._begin()
        with ThreadPoolExecutor(max(1, len(compiled)), thread_name_prefix="aihub-profile") as pool:
            try:
                results = list(pool.map(lambda c: self._profile(c, work_dir), compiled))
            except BaseException:
                self.cancel()  # Ctrl-C or a failed graph: the other waits end at their next poll
                raise
        return profile_result(self.device().name, compiled, results)

    # -- inference -------------------------------------------------------------------

    def _dataset(self, data: dict[str, list[np.ndarray]], digest: str) -> Any:
        hub = self.hub

        def usable(row: dict[str, Any]) -> bool:
            try:
                return not hub.client.get_dataset(row["job_id"]).is_expired()
            except Exception:  # noqa: BLE001 - gone: upload again
                return False

        def submit() -> tuple[str, str | None]:
            ds = hub.client.upload_dataset(data, name=f"edgegate-{digest[7:19]}")
            return ds.dataset_id, None

        lj = hub.get_or_submit(kind="upload", graph=None, device="*", model_digest=digest, options="",
                               key_parts={"what": "dataset"}, submit=submit, usable=usable, done_status="SUCCESS")
        return hub.call(f"get dataset {lj.job_id}", lambda: hub.client.get_dataset(lj.job_id))

    def run_batch(self, compiled: CompiledGraph, feeds_list: Sequence[Mapping[str, np.ndarray]]) -> list[list[np.ndarray]]:
        """One inference job on the device for a batch of feeds; outputs in the same order."""
        if not feeds_list:
            return []
        hub, device = self._begin(), self.device()
        names = list(compiled.details.get("inputs") or feeds_list[0].keys())
        data = {n: [np.ascontiguousarray(f[n]) for f in feeds_list] for n in names}
        data_digest = _digest_arrays(data)
        dataset = self._dataset(data, data_digest)
        digest = "sha256:" + sha256_file(compiled.artifact)
        options = self.spec.inference_options

        def submit() -> tuple[str, str | None]:
            job = hub.client.submit_inference_job(self._target_model(compiled), device=device, inputs=dataset,
                                                  name=f"edgegate {compiled.graph} x{len(feeds_list)}",
                                                  options=options, retry=False, profile=False)
            return job.job_id, job.url

        lj = hub.get_or_submit(kind="inference", graph=compiled.graph, device=device.name, model_digest=digest,
                               options=options, key_parts={"dataset": data_digest}, submit=submit)
        job = hub.call(f"get inference job {lj.job_id}", lambda: hub.client.get_job(lj.job_id))
        hub.wait(job, kind="inference", graph=compiled.graph)
        out = hub.call(f"download outputs of job {job.job_id}", job.download_output_data)
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


def profile_result(device: str, compiled: Sequence[CompiledGraph], results: Sequence[dict[str, Any]]) -> BenchmarkResult:
    """Map AI Hub profiles (as ``download_profile()`` returns them) onto a BenchmarkResult."""
    timings, placement, per_graph = [], {}, {}
    peaks: list[float | None] = []
    load_peaks: list[float | None] = []
    lows, highs = [], []
    for c, r in zip(compiled, results):
        es = r["profile"].get("execution_summary") or {}
        est = es.get("estimated_inference_time")
        samples_us = list(es.get("all_inference_times") or ([est] if est else []))
        if not samples_us:
            raise TargetError(f"AI Hub profile job {r['job_id']} (graph '{c.graph}') has no inference time ({r['url']})")
        first, warm = es.get("first_load_time"), es.get("warm_load_time")
        load_ms = (first or warm or 0) / 1e3
        timings.append(GraphTiming(c.graph, tuple(float(t) / 1e3 for t in samples_us), 0, float(load_ms)))
        units = Counter(str(layer.get("compute_unit", "")).upper() for layer in r["profile"].get("execution_detail") or [])
        placement[c.graph] = {"NPU": units.get("NPU", 0), "GPU": units.get("GPU", 0), "CPU": units.get("CPU", 0)}
        peak = es.get("estimated_inference_peak_memory")
        peaks.append(float(peak) if peak else None)
        lp = es.get("first_load_peak_memory")
        load_peaks.append(float(lp) if lp else None)
        rng = es.get("inference_memory_peak_range")
        if rng:
            lows.append(float(rng[0]))
            highs.append(float(rng[1]))
        per_graph[c.graph] = {
            "job_id": r["job_id"], "url": r["url"], "reused_job": r.get("reused_job", False),
            "estimated_inference_time_us": est, "samples": len(samples_us),
            "first_load_time_ms": first / 1e3 if first else None, "warm_load_time_ms": warm / 1e3 if warm else None,
            "estimated_inference_peak_memory_bytes": peak, "inference_memory_peak_range_bytes": list(rng) if rng else None,
        }
    details: dict[str, Any] = {"device": device, "placement": placement, "profiles": per_graph}
    if lows and len(lows) == len(compiled):
        details["peak_memory_range_mb"] = [sum(lows) / _MIB, sum(highs) / _MIB]
    all_peaks = all(p is not None for p in peaks)
    all_load = all(p is not None for p in load_peaks)
    return BenchmarkResult(
        source=Source.AIHUB_PROFILE,
        timings=tuple(timings),
        peak_memory_mb=sum(p for p in peaks if p) / _MIB if all_peaks else None,
        load_peak_memory_mb=sum(p for p in load_peaks if p) / _MIB if all_load else None,
        memory_method=(
            "AI Hub profile: estimated_inference_peak_memory (and first_load_peak_memory) per graph, "
            "each graph profiled on its own, summed over the graphs"
        ),
        details=details,
    )


def target_for_device(device: Any) -> AihubTarget:
    """Build the AI Hub target for a DeviceSpec of kind aihub (no network until first use)."""
    if device.kind != "aihub":
        raise TargetError(f"device '{device.name}': kind '{device.kind}' is not an AI Hub device")
    return AihubTarget(device)
