"""TEST FIXTURE, never shipped: stand-ins for the QNN SDK's qnn-net-run and qnn-profile-viewer.

There is no QNN SDK (and no Snapdragon board) on the test machine, so ``install_fake_sdk`` lays
out a directory shaped like a QNN SDK on the "board" (which is this machine):
``bin/<triple>/qnn-net-run`` and ``bin/<triple>/qnn-profile-viewer`` (shell wrappers that run this
file) and placeholder ``lib/<triple>/libQnn*.so`` files.

The qnn-net-run stand-in takes qnn-net-run's real flags (--backend, --retrieve_context / --model,
--input_list with ``name:=path`` lines, --output_dir, --profiling_level, --num_inferences,
--duration, --perf_profile, --version) and really computes: a context binary made by the QNN HTP
emulator runs through onnxruntime-qnn (its EP-context ONNX is found beside the binary), a
``.onnx`` model on ONNX Runtime's CPU. It writes ``Result_N/<output>.raw`` (float32) as
qnn-net-run does, and a profiling log holding the times it measured (per-inference wall time as
NetRun, the emulator's own "Accelerator (execute) time" / "QNN (execute) time"). That log is JSON,
not QNN's binary format; the qnn-profile-viewer stand-in prints it in the viewer's text format,
which is what EdgeGate parses.

Faults for tests come from ``standin.json`` in the fake SDK root: ``{"sleep_s": 5}`` sleeps
before running, ``{"fail": "message"}`` exits 1 with that message on stderr.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VERSION = "v2.40.0.251030"  # the QNN version inside onnxruntime-qnn 2.7.0


def install_fake_sdk(root: Path, triple: str = "x86_64-linux-clang", python: str | None = None) -> Path:
    """Lay out a fake QNN SDK at ``root`` whose tools are the stand-ins in this file."""
    py = python or sys.executable
    bindir, libdir = root / "bin" / triple, root / "lib" / triple
    bindir.mkdir(parents=True, exist_ok=True)
    libdir.mkdir(parents=True, exist_ok=True)
    for tool in ("qnn-net-run", "qnn-profile-viewer"):
        wrapper = bindir / tool
        wrapper.write_text(
            "#!/bin/sh\n# EdgeGate test stand-in (tests/fakes/qnn_net_run_standin.py), not the QNN SDK\n"
            # lib/<triple> holds placeholders named like QNN's libraries: onnxruntime-qnn must not
            # load those, so the library path the runner set is kept aside, not used.
            'EDGEGATE_STANDIN_LD_LIBRARY_PATH="$LD_LIBRARY_PATH"; export EDGEGATE_STANDIN_LD_LIBRARY_PATH\n'
            "unset LD_LIBRARY_PATH\n"
            f"EDGEGATE_STANDIN_SDK={shlex.quote(str(root))} PYTHONPATH={shlex.quote(str(ROOT))} "
            f"exec {shlex.quote(py)} {shlex.quote(str(Path(__file__).resolve()))} {tool} \"$@\"\n"
        )
        wrapper.chmod(0o755)
    for lib in ("libQnnHtp.so", "libQnnHtpPrepare.so", "libQnnSystem.so"):
        (libdir / lib).write_text("placeholder: EdgeGate test stand-in SDK\n")
    return root


def _config() -> dict:
    path = Path(os.environ.get("EDGEGATE_STANDIN_SDK", "/nonexistent")) / "standin.json"
    return json.loads(path.read_text()) if path.is_file() else {}


# ------------------------------------------------------------------------------ qnn-net-run


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qnn-net-run", add_help=True)
    p.add_argument("--backend")
    p.add_argument("--model")
    p.add_argument("--retrieve_context")
    p.add_argument("--input_list")
    p.add_argument("--output_dir", default="./output")
    p.add_argument("--profiling_level", choices=["basic", "detailed", "client", "backend"])
    p.add_argument("--num_inferences", type=int)
    p.add_argument("--duration", type=float)
    p.add_argument("--perf_profile")
    p.add_argument("--log_level")
    p.add_argument("--version", action="store_true")
    return p


def _context_onnx(binary: Path) -> Path:
    """The EP-context ONNX beside a context binary that references it (the emulator writes both)."""
    import onnx

    for cand in sorted(binary.parent.glob("*.onnx")):
        for node in onnx.load(str(cand), load_external_data=False).graph.node:
            if node.op_type == "EPContext" and any(
                a.name == "ep_cache_context" and a.s.decode() == binary.name for a in node.attribute
            ):
                return cand
    raise SystemExit(f"ERROR: stand-in: no EP-context ONNX beside {binary} references it")


def _read_input_list(path: Path, names: list[str]) -> list[dict[str, Path]]:
    lines = []
    for raw in path.read_text().splitlines():
        if not raw.strip() or raw.startswith("#"):
            continue
        entry: dict[str, Path] = {}
        for i, token in enumerate(raw.split()):
            name, sep, file = token.partition(":=")
            entry[name if sep else names[i]] = Path(file if sep else token)
        lines.append(entry)
    return lines


def net_run(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.version:
        print(f"QNN SDK {VERSION} (EdgeGate test stand-in)")
        return 0
    cfg = _config()
    if cfg.get("sleep_s"):
        time.sleep(float(cfg["sleep_s"]))
    if cfg.get("fail"):
        print(f"ERROR: {cfg['fail']}", file=sys.stderr)
        return 1
    if not args.backend or not args.input_list or not (args.model or args.retrieve_context):
        print("ERROR: --backend, --input_list and --model or --retrieve_context are required", file=sys.stderr)
        return 1
    backend = Path(args.backend)
    if backend.name not in ("libQnnHtp.so", "libQnnCpu.so") or not backend.is_file():
        print(f"ERROR: Unable to load backend {args.backend} (the stand-in runs HTP contexts and .onnx)", file=sys.stderr)
        return 1

    import numpy as np

    from edgegate.targets.ort_runtime import open_session

    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="standin-"))
    csv_path = tmp / "qnn.csv"
    t0 = time.perf_counter()
    if args.retrieve_context:
        opts = {"backend_type": "htp"}
        if args.profiling_level:
            opts.update(profiling_level="basic", profiling_file_path=str(csv_path))
        sess = open_session(str(_context_onnx(Path(args.retrieve_context))), "qnn", opts)
    else:
        sess = open_session(args.model, "cpu", {})
    init_us = (time.perf_counter() - t0) * 1e6
    in_meta = {i.name: i.shape for i in sess.get_inputs()}
    out_names = [o.name for o in sess.get_outputs()]
    lines = _read_input_list(Path(args.input_list), list(in_meta))
    feeds = [{n: np.fromfile(p, dtype=np.float32).reshape(in_meta[n]) for n, p in line.items()} for line in lines]

    execute_us: list[float] = []
    count = args.num_inferences or len(feeds)
    started = time.perf_counter()
    i = 0
    while (i < count) if not args.duration else (time.perf_counter() - started < args.duration):
        t = time.perf_counter()
        outs = sess.run(None, feeds[i % len(feeds)])
        execute_us.append((time.perf_counter() - t) * 1e6)
        if i < len(feeds):
            result = out_dir / f"Result_{i}"
            result.mkdir(exist_ok=True)
            for name, value in zip(out_names, outs):
                np.asarray(value, dtype=np.float32).tofile(result / f"{name}.raw")
        i += 1
    total_s = time.perf_counter() - started
    t = time.perf_counter()
    del sess  # onnxruntime-qnn writes its profiling CSV now
    deinit_us = (time.perf_counter() - t) * 1e6
    if args.profiling_level:
        backend_rows: dict[str, list[float]] = {}
        if csv_path.is_file():
            with csv_path.open() as fh:
                for row in csv.DictReader(fh):
                    backend_rows.setdefault(row["Event Identifier"], []).append(float(row["Time"]))
        log = {
            "format": "edgegate-standin-profile", "version": VERSION, "backend": backend.name,
            "graph": Path(args.retrieve_context or args.model).stem, "init_us": init_us,
            "deinit_us": deinit_us, "execute_us": execute_us, "total_s": total_s, "backend_rows": backend_rows,
            "created": time.strftime("%a %b %d %H:%M:%S %Y"),
        }
        (out_dir / "qnn-profiling-data_0.log").write_text(json.dumps(log))
    return 0


# ------------------------------------------------------------------------------ viewer


def _stat_block(title: str, graph: str, values: dict[str, list[float]], pick) -> list[str]:
    lines = [f"Execute Stats ({title}):", "-" * 24, "Total Inference Time:", "-" * 21, f"Graph 0 ({graph}):"]
    lines.append(f"    NetRun: {round(pick(values['NetRun']))} us")
    for label, unit in (("Number of HVX threads used", "count"), ("Accelerator (execute) time", "us"),
                        ("QNN (execute) time", "us")):
        if values.get(label):
            lines.append(f"    Backend ({label}): {round(pick(values[label]))} {unit}")
    return lines + [""]


def profile_viewer(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="qnn-profile-viewer")
    p.add_argument("--input_log", required=True)
    p.add_argument("--output")
    args = p.parse_args(argv)
    log = json.loads(Path(args.input_log).read_text())
    rows = log["backend_rows"]
    ex = log["execute_us"]
    values = {"NetRun": ex}
    for label in ("Number of HVX threads used", "Accelerator (execute) time", "QNN (execute) time"):
        if rows.get(label):
            values[label] = rows[label]
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    out = [
        f"Input Log File Location: {args.input_log}",
        f"Log File Created: {log['created']}",
        "Time Scale: 1e-06",
        f"Epoch Timestamp: {int(time.time() * 1e6)} Steady Clock Timestamp: {int(time.monotonic() * 1e6)}",
        "Generated using:",
        f"qnn-profile-viewer {log['version']}",
        f"qnn-net-run        {log['version']}",
        f"Backend            {log['version']}",
        "",
        "Qnn Init/Prepare/Finalize/De-Init/Execute/Lib-Load Statistics:",
        "-" * 60,
        "Init Stats:",
        "-" * 11,
        f"    NetRun: {round(log['init_us'])} us",
    ]
    for label in ("Accelerator (load binary) time", "QNN (load binary) time"):
        if rows.get(label):
            out.append(f"    Backend ({label}): {round(rows[label][0])} us")
    out += ["", "De-Init Stats:", "-" * 14, f"    NetRun: {round(log['deinit_us'])} us", ""]
    out += _stat_block("Average", log["graph"], values, mean)
    out += _stat_block("Min", log["graph"], values, min)
    out += _stat_block("Max", log["graph"], values, max)
    ips = len(ex) / log["total_s"] if log["total_s"] > 0 else 0.0
    out += ["Execute Stats (Overall):", "-" * 24, f"    NetRun IPS (includes IO and misc. time): {ips:.4f} inf/sec", ""]
    text = "\n".join(out)
    if args.output:
        Path(args.output).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    tool, rest = sys.argv[1], sys.argv[2:]
    sys.exit(net_run(rest) if tool == "qnn-net-run" else profile_viewer(rest))
