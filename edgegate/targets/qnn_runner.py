"""One QNN runner for every board: qnn-net-run command lines, runs, outputs, profiles, memory.

The runner only needs a Transport (push, pull, exec), so adb and ssh boards share every command
line and parser. A run is:

1. raw float32 inputs and an ``input_list.txt`` (``name:=path`` per input, a line per inference)
   pushed into a fresh directory under the run's scratch directory on the board. qnn-net-run
   splits that list on whitespace and knows no quoting, so its paths are relative to the run's
   directory (where qnn-net-run starts) and made of safe names: a work directory with spaces
   (or commas, which split ``--input_list``) never reaches the list. A tensor name cannot be
   renamed, so one the list cannot carry is refused (``input_list_name_problem``; the pipeline
   loader refuses it first);
2. ``qnn-net-run --backend ... --retrieve_context|--model ... --input_list ... --output_dir ...``
   (``--profiling_level basic``, ``--num_inferences`` / ``--duration`` when benchmarking) started
   by a small shell script, detached from the connection (a dropped connection does not kill it),
   which polls ``/proc/<pid>/status`` (VmHWM, VmRSS) every 50 ms, and on Android also
   ``dumpsys meminfo <pid>`` (TOTAL PSS), and writes the exit code when it ends;
3. the runner polls for that exit code (reconnecting when the connection drops) until the
   command timeout, then kills the process it started (by its pid);
4. ``Result_N/<output>.raw`` pulled and read as float32; the profiling log pulled and turned into
   text by qnn-profile-viewer (the host SDK's, else the board's), parsed by ``qnn_profile``;
5. the run's directory on the board removed.

Memory is the qnn-net-run process's CPU-side memory (resident set on the application
processor); what the DSP/HTP itself allocates is not in it.
"""

from __future__ import annotations

import logging
import shlex
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from edgegate.errors import InputError, TargetError
from edgegate.targets.qnn_prepare import HOST_TRIPLE, TensorInfo
from edgegate.targets.qnn_profile import QnnProfile, parse_profile_viewer
from edgegate.targets.transports import ConnectionLost, Transport, TransportError

log = logging.getLogger(__name__)

RUN_SCRIPT_NAME = "edgegate_run.sh"
RUN_SCRIPT = r"""# EdgeGate: run a command detached from the connection; record its peak memory and exit code.
# usage: sh edgegate_run.sh DIR ANDROID(0|1) COMMAND [ARG]...
dir=$1; android=$2; shift 2
cd "$dir" || exit 90
"$@" >netrun.stdout 2>netrun.stderr </dev/null &
pid=$!
echo "$pid" >netrun.pid
n=0
while [ -r "/proc/$pid/status" ]; do
  grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null && break
  m=$(grep -E '^(VmHWM|VmRSS):' "/proc/$pid/status" 2>/dev/null | tr -s ' \t\n' '   ')
  [ -n "$m" ] && echo "$m" >>mem.log
  if [ "$android" = 1 ] && [ $((n % 10)) -eq 0 ]; then
    dumpsys meminfo "$pid" 2>/dev/null | grep -m 1 'TOTAL' >>pss.log
  fi
  n=$((n + 1))
  sleep 0.05
done
wait "$pid"
echo "$?" >netrun.rc.tmp && mv netrun.rc.tmp netrun.rc
"""

MEMORY_METHOD = (
    "CPU-side memory of the qnn-net-run process on the board: peak VmHWM from /proc/<pid>/status "
    "polled every 50 ms (Android: also dumpsys meminfo TOTAL PSS); memory the DSP/HTP allocates "
    "for the graph is not included"
)


@dataclass(frozen=True)
class BoardLayout:
    """Where the QNN runtime is on the board, and the environment qnn-net-run needs."""

    sdk: str  # the QNN SDK (or the pushed subset of it) on the board
    triple: str  # QNN platform directory: aarch64-android, aarch64-oe-linux-gcc9.3, ...
    backend: str  # "dsp" | "htp"
    hexagon: str  # "v66", "v73": the board's Hexagon version (stub/skel libraries)
    extra_env: Mapping[str, str] = field(default_factory=dict)

    @property
    def android(self) -> bool:
        return self.triple.endswith("android")

    @property
    def lib_dir(self) -> str:
        return f"{self.sdk}/lib/{self.triple}"

    @property
    def skel_dir(self) -> str:
        return f"{self.sdk}/lib/hexagon-{self.hexagon}/unsigned"

    @property
    def netrun(self) -> str:
        return f"{self.sdk}/bin/{self.triple}/qnn-net-run"

    @property
    def viewer(self) -> str:
        return f"{self.sdk}/bin/{self.triple}/qnn-profile-viewer"

    @property
    def backend_lib(self) -> str:
        return f"{self.lib_dir}/{'libQnnDsp.so' if self.backend == 'dsp' else 'libQnnHtp.so'}"

    def env(self) -> dict[str, str]:
        # ADSP_LIBRARY_PATH is ';'-separated: the SDK's skel first, then the system's DSP dirs.
        system = ("/vendor/lib/rfsa/adsp;/vendor/dsp/cdsp;/system/lib/rfsa/adsp;/dsp" if self.android
                  else "/usr/lib/rfsa/adsp;/dsp")
        env = {"LD_LIBRARY_PATH": self.lib_dir, "ADSP_LIBRARY_PATH": f"{self.skel_dir};{system}"}
        env.update(self.extra_env)
        return env

    def runtime_files(self) -> list[str]:
        """Paths, relative to an SDK root, of what qnn-net-run needs for this backend."""
        files = [f"bin/{self.triple}/qnn-net-run", f"lib/{self.triple}/libQnnSystem.so"]
        v = self.hexagon[1:]
        if self.backend == "dsp":
            files += [f"lib/{self.triple}/libQnnDsp.so", f"lib/{self.triple}/libQnnDspV{v}Stub.so",
                      f"lib/hexagon-{self.hexagon}/unsigned/libQnnDspV{v}Skel.so"]
        else:
            files += [f"lib/{self.triple}/libQnnHtp.so", f"lib/{self.triple}/libQnnHtpPrepare.so"]
            if self.triple != HOST_TRIPLE:  # an x86_64 "board" runs the HTP emulator, no DSP side
                files += [f"lib/{self.triple}/libQnnHtpV{v}Stub.so",
                          f"lib/hexagon-{self.hexagon}/unsigned/libQnnHtpV{v}Skel.so"]
        return files


def netrun_argv(
    layout: BoardLayout,
    *,
    model_flag: str,
    model: str,
    input_list: str,
    output_dir: str,
    profile: bool = False,
    num_inferences: int | None = None,
    duration_s: int | None = None,
    perf_profile: str | None = None,
) -> list[str]:
    """The qnn-net-run command line (an argv list; the transport quotes it)."""
    argv = [layout.netrun, "--backend", layout.backend_lib, model_flag, model,
            "--input_list", input_list, "--output_dir", output_dir]
    if profile:
        argv += ["--profiling_level", "basic"]
    if duration_s is not None:
        argv += ["--duration", str(duration_s)]
    elif num_inferences is not None:
        argv += ["--num_inferences", str(num_inferences)]
    if perf_profile:
        argv += ["--perf_profile", perf_profile]
    return argv


@dataclass(frozen=True)
class MemoryPeak:
    vmhwm_kb: int | None
    vmrss_kb: int | None
    pss_kb: int | None
    polls: int

    @property
    def peak_mb(self) -> float | None:
        return None if self.vmhwm_kb is None else self.vmhwm_kb / 1024


def parse_memory(mem_log: str, pss_log: str = "") -> MemoryPeak:
    """Peaks of 'VmHWM: N kB VmRSS: N kB' lines and of dumpsys 'TOTAL' lines (PSS first)."""
    hwm = rss = pss = None
    polls = 0
    for line in mem_log.splitlines():
        words = line.replace(":", " ").split()
        polls += 1
        for key, value in zip(words, words[1:]):
            if key == "VmHWM" and value.isdigit():
                hwm = max(hwm or 0, int(value))
            elif key == "VmRSS" and value.isdigit():
                rss = max(rss or 0, int(value))
    for line in pss_log.splitlines():
        # "TOTAL PSS:  12345  TOTAL RSS: ..." (Android 10+) or "TOTAL  12345 ..." (older)
        words = line.replace(":", " ").split()
        numbers = [w for w in words[1:] if w.isdigit()]
        if words and words[0] == "TOTAL" and numbers:
            pss = max(pss or 0, int(numbers[0]))
    return MemoryPeak(hwm, rss, pss, polls)


@dataclass
class NetRun:
    """One qnn-net-run process: its outputs, profile and memory, and where its files are here."""

    tag: str
    local_dir: Path
    outputs: list[list[np.ndarray]]  # one list per input-list line, in output order
    profile: QnnProfile | None
    memory: MemoryPeak
    wall_s: float


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


def input_list_name_problem(name: str) -> str | None:
    """Why qnn-net-run's input list cannot carry tensor ``name`` (``name:=path`` tokens split on
    whitespace, ``:=`` parts a token, a line starting with ``#`` names outputs), or None."""
    if not name or any(c.isspace() for c in name):
        return f"tensor name {name!r} is empty or has whitespace, which qnn-net-run's input list cannot carry"
    if ":=" in name:
        return f"tensor name {name!r} has ':=', which qnn-net-run's input list uses to part name and file"
    if name.startswith("#"):
        return f"tensor name {name!r} starts with '#', which qnn-net-run's input list reads as an output list"
    return None


class QnnRunner:
    """qnn-net-run on one board, in one scratch directory that ``cleanup()`` removes."""

    def __init__(
        self,
        transport: Transport,
        layout: BoardLayout,
        *,
        scratch: str,
        command_timeout: float,
        host_sdk: Path | None = None,
        keep_remote: bool = False,
        perf_profile: str | None = None,
    ) -> None:
        self.transport = transport
        self.layout = layout
        self.scratch = scratch
        self.command_timeout = command_timeout
        self.host_sdk = host_sdk
        self.keep_remote = keep_remote
        self.perf_profile = perf_profile
        self.version: str | None = None
        self._staged: dict[str, str] = {}
        self._viewer: str | None = None  # "host" | "board" once known
        self._runs = 0

    # ------------------------------------------------------------------ set-up / tear-down

    def start(self, *, push_runtime: bool) -> None:
        """Create the scratch directory, push the run script (and the runtime), check qnn-net-run."""
        t = self.transport
        t.mkdir(self.scratch)
        with tempfile.TemporaryDirectory(prefix="edgegate-") as tmp:
            script = Path(tmp) / RUN_SCRIPT_NAME
            script.write_text(RUN_SCRIPT)
            t.push(script, f"{self.scratch}/{RUN_SCRIPT_NAME}")
        if push_runtime:
            self._push_runtime()
        res = t.exec(["test", "-x", self.layout.netrun])
        if res.rc != 0:
            raise TargetError(
                f"{t.description}: qnn-net-run not found at {self.layout.netrun}: install the QNN SDK "
                "there (qnn_sdk_device, target_triple), or set push_runtime: true with QNN_SDK_ROOT set"
            )
        res = t.exec([self.layout.netrun, "--version"], timeout=60, retry=True)
        lines = (res.stdout.strip() or res.stderr.strip()).splitlines()
        self.version = lines[-1].strip() if lines else None

    def _push_runtime(self) -> None:
        if self.host_sdk is None:
            raise InputError("push_runtime: true needs the QNN SDK on this host: set QNN_SDK_ROOT or qnn_sdk_host")
        rels = self.layout.runtime_files()
        missing = [r for r in rels if not (self.host_sdk / r).is_file()]
        if missing:
            raise InputError(f"push_runtime: not in the host QNN SDK {self.host_sdk}: {', '.join(missing)}")
        sdk = f"{self.scratch}/sdk"
        for d in sorted({str(Path(r).parent) for r in rels}):
            self.transport.mkdir(f"{sdk}/{d}")
        for r in rels:
            self.transport.push(self.host_sdk / r, f"{sdk}/{r}")
        self.layout = BoardLayout(sdk, self.layout.triple, self.layout.backend, self.layout.hexagon,
                                  self.layout.extra_env)

    def stage(self, key: str, files: Sequence[Path]) -> str:
        """Push a compiled graph's files once; the remote path of the first (the artifact)."""
        if key not in self._staged:
            remote = f"{self.scratch}/models/{_safe(key)}"
            self.transport.mkdir(remote)
            for f in files:
                self.transport.push(f, f"{remote}/{f.name}")
            self._staged[key] = f"{remote}/{files[0].name}"
        return self._staged[key]

    def cleanup(self) -> str | None:
        """Remove the scratch directory; the problem as text when the board is unreachable."""
        self._staged.clear()
        if self.keep_remote:
            return None
        try:
            self.transport.rm(self.scratch)
        except TransportError as exc:
            return f"remote scratch {self.scratch} was not removed: {exc.message}"
        return None

    # ------------------------------------------------------------------ one qnn-net-run

    def run(
        self,
        *,
        tag: str,
        model: str,
        model_flag: str,
        inputs: Sequence[TensorInfo],
        outputs: Sequence[TensorInfo],
        feeds: Sequence[Mapping[str, np.ndarray]],
        local_dir: Path,
        num_inferences: int | None = None,
        duration_s: int | None = None,
        profile: bool = False,
        want_outputs: bool = True,
    ) -> NetRun:
        self._runs += 1
        remote = f"{self.scratch}/runs/{self._runs:04d}-{_safe(tag)}"
        local_dir.mkdir(parents=True, exist_ok=True)
        t = self.transport
        t0 = time.monotonic()
        reachable = True
        try:
            self._push_inputs(remote, inputs, feeds, local_dir)
            # Paths relative to the run's directory, where qnn-net-run starts: a model staged by
            # ``stage`` is two levels up. None of them holds the work directory's name.
            argv = netrun_argv(
                self.layout, model_flag=model_flag, model=self._relative(model), input_list="input_list.txt",
                output_dir="output", profile=profile, num_inferences=num_inferences,
                duration_s=duration_s, perf_profile=self.perf_profile,
            )
            (local_dir / "command.txt").write_text(shlex.join(argv) + "\n")
            rc = self._launch_and_wait(remote, argv, tag)
            files, memory = self._listing(remote, local_dir)
            if rc != 0:
                raise TargetError(f"{t.description}: qnn-net-run failed (exit {rc}) on {tag}: {self._stderr_tail(remote)}")
            outs = self._pull_outputs(files, f"{remote}/output", outputs, len(feeds), local_dir) if want_outputs else []
            prof = self._profile(files, local_dir) if profile else None
        except ConnectionLost:
            reachable = False  # nothing to clean up through a connection that is gone
            raise
        finally:
            if reachable and not self.keep_remote:
                try:
                    t.rm(remote)
                except TransportError as exc:
                    log.warning("%s", exc.message)
        return NetRun(tag, local_dir, outs, prof, memory, time.monotonic() - t0)

    def _relative(self, model: str) -> str:
        """A staged model's path from a run's directory (``runs/NNNN-tag``); others as given."""
        prefix = f"{self.scratch}/models/"
        return "../../models/" + model[len(prefix):] if model.startswith(prefix) else model

    def _push_inputs(self, remote: str, inputs: Sequence[TensorInfo], feeds: Sequence[Mapping[str, np.ndarray]],
                     local_dir: Path) -> None:
        for info in inputs:
            problem = input_list_name_problem(info.name)
            if problem is not None:
                raise InputError(f"{self.transport.description}: {problem}; rename the graph's input")
        staged = local_dir / "inputs"
        staged.mkdir(exist_ok=True)
        lines = []
        for i, feed in enumerate(feeds):
            parts = []
            for info in inputs:
                if info.name not in feed:
                    raise TargetError(f"input '{info.name}' missing from the feeds (got {', '.join(feed)})")
                a = np.ascontiguousarray(feed[info.name], dtype=np.float32)
                if a.size != int(np.prod(info.shape)):
                    raise TargetError(f"input '{info.name}' has shape {list(a.shape)}, the graph takes {list(info.shape)}")
                name = f"{i}_{_safe(info.name)}.raw"
                a.tofile(staged / name)
                parts.append(f"{info.name}:=inputs/{name}")
            lines.append(" ".join(parts))
        (local_dir / "input_list.txt").write_text("\n".join(lines) + "\n")
        self.transport.mkdir(f"{remote}/inputs")
        for f in sorted(staged.iterdir()):
            self.transport.push(f, f"{remote}/inputs/{f.name}")
        self.transport.push(local_dir / "input_list.txt", f"{remote}/input_list.txt")

    def _launch_and_wait(self, remote: str, argv: list[str], tag: str) -> int:
        t = self.transport
        env = [f"{k}={v}" for k, v in self.layout.env().items()]
        launch = ["nohup", "sh", f"{self.scratch}/{RUN_SCRIPT_NAME}", remote, "1" if self.layout.android else "0",
                  "env", *env, *argv]
        # Background it with every stream redirected, so the exec returns at once.
        t.exec(f"{shlex.join(launch)} </dev/null >{shlex.quote(remote + '/launch.log')} 2>&1 &", timeout=60)
        deadline = time.monotonic() + self.command_timeout
        start_by = time.monotonic() + 60.0
        pid = None
        while True:
            # Wait on the board (bounded), so the exit is seen at once without a round trip per poll.
            wait_s = max(0.0, min(10.0, deadline - time.monotonic()))
            probe = (f"cd {shlex.quote(remote)} && i=0; while [ ! -f netrun.rc ] && [ $i -lt {int(wait_s / 0.05)} ]; "
                     "do sleep 0.05; i=$((i+1)); done; "
                     "for f in netrun.pid netrun.rc; do [ -f $f ] && echo $f=$(cat $f); done; true")
            res = t.exec(probe, timeout=wait_s + 60)
            state = dict(line.split("=", 1) for line in res.stdout.split() if "=" in line)
            pid = state.get("netrun.pid", pid)
            if state.get("netrun.rc", "").strip().lstrip("-").isdigit():
                return int(state["netrun.rc"])
            now = time.monotonic()
            if pid is None and now > start_by:
                launch_log = t.exec(["cat", f"{remote}/launch.log"], timeout=60).stdout.strip()
                raise TargetError(f"{t.description}: qnn-net-run did not start for {tag}: {launch_log or 'no output'}")
            if now >= deadline:
                if pid is not None and pid.strip().isdigit():
                    t.exec(["kill", "-9", pid.strip()], timeout=60)  # the process this run started
                raise TargetError(
                    f"{t.description}: qnn-net-run on {tag} did not finish within {self.command_timeout:g} s "
                    f"(command_timeout_s); stopped it (pid {pid})"
                )

    def _stderr_tail(self, remote: str) -> str:
        res = self.transport.exec(f"tail -c 2000 {shlex.quote(remote)}/netrun.stderr {shlex.quote(remote)}/netrun.stdout 2>/dev/null; true")
        lines = [ln for ln in res.stdout.splitlines() if ln.strip() and not ln.startswith("==>")]
        return " | ".join(lines[-3:]) or "no output"

    def _listing(self, remote: str, local_dir: Path) -> tuple[list[str], MemoryPeak]:
        """The run's output files and its memory logs, in one round trip."""
        q = shlex.quote(remote)
        res = self.transport.exec(f"cd {q} && find {q}/output -type f 2>/dev/null; echo '#mem'; "
                                  "cat mem.log 2>/dev/null; echo '#pss'; cat pss.log 2>/dev/null; true")
        listing, _, rest = res.stdout.partition("#mem")
        mem, _, pss = rest.partition("#pss")
        (local_dir / "mem.log").write_text(mem.lstrip("\n"))
        if pss.strip():
            (local_dir / "pss.log").write_text(pss.lstrip("\n"))
        files = sorted(ln.strip() for ln in listing.splitlines() if ln.strip())
        return files, parse_memory(mem, pss)

    def _pull_outputs(self, files: list[str], output_dir: str, outputs: Sequence[TensorInfo], n: int,
                      local_dir: Path) -> list[list[np.ndarray]]:
        result = []
        for i in range(n):
            prefix = f"{output_dir}/Result_{i}/"
            present = {f[len(prefix):]: f for f in files if f.startswith(prefix) and f.endswith(".raw")}
            arrays = []
            for info in outputs:
                remote = next((present[c] for c in _raw_names(info.name) if c in present), None)
                if remote is None:
                    raise TargetError(
                        f"{self.transport.description}: qnn-net-run wrote no output '{info.name}' in Result_{i} "
                        f"(found: {', '.join(sorted(present)) or 'nothing'})"
                    )
                local = local_dir / f"Result_{i}" / Path(remote).name
                self.transport.pull(remote, local)
                data = np.fromfile(local, dtype=np.float32)
                if data.size != int(np.prod(info.shape)):
                    raise TargetError(f"output '{info.name}' has {data.size} float32 values, expected shape {list(info.shape)}")
                arrays.append(data.reshape(info.shape))
            result.append(arrays)
        return result

    def _profile(self, files: list[str], local_dir: Path) -> QnnProfile:
        logs = [f for f in files if Path(f).name.startswith("qnn-profiling-data") and f.endswith(".log")]
        if not logs:
            raise TargetError(f"{self.transport.description}: qnn-net-run wrote no profiling log (qnn-profiling-data*.log)")
        local_log = local_dir / Path(logs[0]).name
        self.transport.pull(logs[0], local_log)
        text = self._view(logs[0], local_log)
        (local_dir / "profile.txt").write_text(text)
        return parse_profile_viewer(text)

    def _view(self, remote_log: str, local_log: Path) -> str:
        """qnn-profile-viewer's text: the host SDK's viewer when there is one, else the board's."""
        host = self.host_sdk / "bin" / HOST_TRIPLE / "qnn-profile-viewer" if self.host_sdk else None
        if self._viewer is None:
            if host is not None and host.is_file():
                self._viewer = "host"
            elif self.transport.exec(["test", "-x", self.layout.viewer]).rc == 0:
                self._viewer = "board"
            else:
                raise TargetError(
                    f"qnn-profile-viewer not found: not on this host ({host or 'QNN_SDK_ROOT not set'}) "
                    f"nor on the board ({self.layout.viewer})"
                )
        if self._viewer == "host":
            lib = str(self.host_sdk / "lib" / HOST_TRIPLE)  # type: ignore[operator]
            proc = subprocess.run([str(host), "--input_log", str(local_log)], capture_output=True, text=True,
                                  timeout=120, env={"LD_LIBRARY_PATH": lib, "PATH": "/usr/bin:/bin"})
            rc, out, err = proc.returncode, proc.stdout, proc.stderr
        else:
            env = [f"LD_LIBRARY_PATH={self.layout.lib_dir}"]
            res = self.transport.exec(["env", *env, self.layout.viewer, "--input_log", remote_log], timeout=120)
            rc, out, err = res.rc, res.stdout, res.stderr
        if rc != 0:
            tail = (err.strip() or out.strip()).splitlines()[-1:] or ["no output"]
            raise TargetError(f"qnn-profile-viewer ({self._viewer}) failed (exit {rc}): {tail[0]}")
        return out


def _raw_names(name: str) -> list[str]:
    """File names qnn-net-run may give output ``name``: as is, or sanitised as QNN's converters do."""
    clean = "".join(c if c.isalnum() or c == "_" else "_" for c in name)
    return [f"{name}.raw", f"{clean}.raw", f"_{clean}.raw"]
