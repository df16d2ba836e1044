"""Hostile files: load time and peak memory of each class of hostile input file.

Issue 15 asks that loading any EdgeGate file stay under a few seconds and a few hundred MB
whatever its content. Each file below is written to a temporary directory and loaded by
the loader EdgeGate uses for it, in a fresh Python process (so one file's memory does not
hide another's); the child reports the wall time of the load alone, its peak RSS (which
includes the ~100 MB of importing EdgeGate and pydantic, reported apart as the baseline)
and the outcome (the error line, or "loaded"). The parent caps each child at 120 s and
4 GB of address space, so a regression shows as a timeout or MemoryError, not a dead
machine.

    python bench/hostile_files.py [--only NAME ...]

Writes bench/results/hostile_files.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MINI_PACK = ROOT / "tests" / "fixtures" / "packs" / "person_detect_mini"
TIMEOUT_S = 120
ADDRESS_SPACE = 4 << 30

PIPELINE = """\
name: p
model:
  adapter: "edgegate.zoo.mtcnn:MTCNNAdapter"
  graphs:
    pnet:
      factory: "edgegate.zoo.mtcnn:pnet"
      inputs: [{name: image, shape: [1, 3, 120, 160]}]
      outputs: [prob, reg]
device: cpu
evaluation:
  promptpack: .
  scorers: [detection]
gates:
  - "accuracy >= 0.99 * baseline"
"""


def alias_bomb(levels: int) -> str:
    lines = ["xa0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        lines.append(f"xa{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def copy_pack(d: Path) -> Path:
    import shutil

    pack = d / "pack"
    shutil.copytree(MINI_PACK, pack)
    return pack


def set_pack_file(pack: Path, rel: str, data: bytes) -> None:
    import hashlib

    old = hashlib.sha256((pack / rel).read_bytes()).hexdigest()
    (pack / rel).write_bytes(data)
    manifest = pack / "manifest.yaml"
    manifest.write_text(manifest.read_text().replace(old, hashlib.sha256(data).hexdigest()))


# Each case: name -> (what the file is, writer(dir) -> (loader kind, path)).
def _pipeline(text: str) -> Callable[[Path], tuple[str, Path]]:
    def write(d: Path) -> tuple[str, Path]:
        (d / "p.yaml").write_text(text)
        return "pipeline", d / "p.yaml"
    return write


def _device(text: str) -> Callable[[Path], tuple[str, Path]]:
    def write(d: Path) -> tuple[str, Path]:
        (d / "dev.yaml").write_text("name: dev\nkind: cpu\n" + text)
        return "device", d / "dev.yaml"
    return write


def _fleet(text: str) -> Callable[[Path], tuple[str, Path]]:
    def write(d: Path) -> tuple[str, Path]:
        (d / "p.yaml").write_text(PIPELINE)
        (d / "fleet.yaml").write_text("name: f\npipelines: [p.yaml]\ndevices: [cpu]\n" + text)
        return "fleet", d / "fleet.yaml"
    return write


def _manifest_append(text: str) -> Callable[[Path], tuple[str, Path]]:
    def write(d: Path) -> tuple[str, Path]:
        pack = copy_pack(d)
        with (pack / "manifest.yaml").open("a") as f:
            f.write(text)
        return "pack", pack
    return write


def _big_manifest(files: int) -> Callable[[Path], tuple[str, Path]]:
    def write(d: Path) -> tuple[str, Path]:
        pack = copy_pack(d)
        text = (pack / "manifest.yaml").read_text()
        extra = "".join(f"  images/extra/img_{i:08d}.png: {'ab' * 32}\n" for i in range(files))
        (pack / "manifest.yaml").write_text(text.replace("\nfiles:\n", "\nfiles:\n" + extra, 1))
        return "pack", pack
    return write


def _jsonl_line(line: bytes) -> Callable[[Path], tuple[str, Path]]:
    def write(d: Path) -> tuple[str, Path]:
        pack = copy_pack(d)
        lines = (pack / "eval.jsonl").read_bytes().splitlines(keepends=True)
        lines[2] = line
        set_pack_file(pack, "eval.jsonl", b"".join(lines))
        return "pack", pack
    return write


def _jsonl_lines(n: int) -> Callable[[Path], tuple[str, Path]]:
    def write(d: Path) -> tuple[str, Path]:
        pack = copy_pack(d)
        first = (pack / "eval.jsonl").read_bytes().splitlines(keepends=True)[0]
        set_pack_file(pack, "eval.jsonl", first * n)
        return "pack", pack
    return write


def _json(text: str) -> Callable[[Path], tuple[str, Path]]:
    def write(d: Path) -> tuple[str, Path]:
        (d / "bundle.json").write_text(text)
        return "json", d / "bundle.json"
    return write


def _list_file(mib: int) -> Callable[[Path], tuple[str, Path]]:
    def write(d: Path) -> tuple[str, Path]:
        line = b"- 1\n"
        with open(d / "p.yaml", "wb") as f:
            f.write(b"name: p\nitems:\n")
            f.write(line * (mib * (1 << 20) // len(line)))
        return "pipeline", d / "p.yaml"
    return write


CASES: dict[str, tuple[str, Callable[[Path], tuple[str, Path]]]] = {
    "pipeline_alias_bomb_6": ("pipeline, billion laughs 6 levels (9**6 values)", _pipeline(alias_bomb(6) + PIPELINE)),
    "pipeline_alias_bomb_9": ("pipeline, billion laughs 9 levels (9**9 values)", _pipeline(alias_bomb(9) + PIPELINE)),
    "device_alias_bomb_9": ("device file, billion laughs 9 levels", _device(alias_bomb(9))),
    "fleet_alias_bomb_9": ("fleet file, billion laughs 9 levels", _fleet(alias_bomb(9))),
    "manifest_alias_bomb_9": ("PromptPack manifest, billion laughs 9 levels", _manifest_append(alias_bomb(9))),
    "yaml_deep_flow": ("pipeline, 500,000 nested [ (1 MB)", _pipeline("a: " + "[" * 500_000 + "]" * 10 + "\n")),
    "yaml_deep_block": ("pipeline, 1,000 nested block mappings", _pipeline("".join(" " * i + f"k{i}:\n" for i in range(1000)))),
    "yaml_list_56mb": ("pipeline, a 56 MB YAML list", _list_file(56)),
    "yaml_values_1mb": ("pipeline, 1 MB flow list of 500,000 values", _pipeline("a: [" + ",".join(["1"] * 500_000) + "]\n")),
    "yaml_values_at_bound": ("pipeline, 19,900 values (largest accepted)", _pipeline(PIPELINE + "x: [" + ",".join(["1"] * 19_900) + "]\n")),
    "manifest_29k_files": ("PromptPack manifest listing 29,000 more files (about the largest accepted)", _big_manifest(29_000)),
    "manifest_5mb": ("PromptPack manifest of 5 MiB", _big_manifest(49_000)),
    "gate_100kb": ("pipeline, a 100 KB gate expression", _pipeline(PIPELINE + '  - "accuracy >= ' + "1" * 100_000 + '"\n')),
    "gate_arabic_digits": ("pipeline, gate accuracy >= ٠.٩٨", _pipeline(PIPELINE + '  - "accuracy >= ٠.٩٨"\n')),
    "gate_infinite": ("pipeline, gate accuracy >= 1e999", _pipeline(PIPELINE + '  - "accuracy >= 1e999"\n')),
    "jsonl_deep_line": ("pack samples, a line of 1,000,000 nested [", _jsonl_line(b"[" * 1_000_000 + b"]" * 1_000_000 + b"\n")),
    "jsonl_huge_int": ("pack samples, a number of 100,000 digits", _jsonl_line(b'{"id": ' + b"1" * 100_000 + b"}\n")),
    "jsonl_too_many_lines": ("pack samples, 100,001 lines", _jsonl_lines(100_001)),
    "json_deep_bundle": ("evidence-like JSON, 1,000,000 nested [", _json("[" * 1_000_000 + "]" * 1_000_000)),
}

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[3])
kind, path = sys.argv[1], sys.argv[2]
from edgegate.config import load_device, load_pipeline
from edgegate.errors import EdgeGateError
from edgegate.fleet.spec import load_fleet
from edgegate.packs.promptpack import load_promptpack
from edgegate.safe_load import read_json
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
load = {"pipeline": load_pipeline, "device": load_device, "fleet": load_fleet,
        "pack": load_promptpack, "json": lambda p: read_json(__import__("pathlib").Path(p), p)}[kind]
t0 = time.perf_counter()
try:
    load(path)
    outcome = "loaded"
except EdgeGateError as exc:
    outcome = "error: " + str(exc).replace(path, "<file>")
except BaseException as exc:
    outcome = f"CRASH {type(exc).__name__}: {str(exc)[:200]}"
seconds = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": round(seconds, 3), "peak_rss_mb": round(peak, 1),
                  "import_rss_mb": round(base, 1), "outcome": outcome}))
"""


def _limit_child() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def run_case(name: str, write: Callable[[Path], tuple[str, Path]]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        kind, path = write(Path(tmp))
        size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size
        try:
            proc = subprocess.run(
                [sys.executable, "-c", CHILD, kind, str(path), str(ROOT)], capture_output=True, text=True, check=False,
                timeout=TIMEOUT_S, preexec_fn=_limit_child, cwd=tmp,
            )
        except subprocess.TimeoutExpired:
            return {"seconds": None, "peak_rss_mb": None, "outcome": f"TIMEOUT after {TIMEOUT_S} s", "bytes": size}
        if proc.returncode != 0 or not proc.stdout.strip():
            tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
            return {"seconds": None, "peak_rss_mb": None, "outcome": f"CRASH exit {proc.returncode}: {tail}", "bytes": size}
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        result["bytes"] = size
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="*", choices=sorted(CASES), help="run only these cases")
    args = parser.parse_args()
    names = args.only or list(CASES)
    results = {}
    print(f"{'case':26} {'bytes':>10} {'load s':>8} {'peak MB':>8}  outcome")
    for name in names:
        what, write = CASES[name]
        r = run_case(name, write)
        r["what"] = what
        results[name] = r
        secs = "-" if r["seconds"] is None else f"{r['seconds']:.3f}"
        peak = "-" if r["peak_rss_mb"] is None else f"{r['peak_rss_mb']:.0f}"
        print(f"{name:26} {r['bytes']:>10,} {secs:>8} {peak:>8}  {r['outcome'][:110]}", flush=True)
    # a timeout or crash has no figures: it counts as infinitely bad
    worst_s = max(float("inf") if r["seconds"] is None else r["seconds"] for r in results.values())
    worst_mb = max(float("inf") if r["peak_rss_mb"] is None else r["peak_rss_mb"] for r in results.values())
    print(f"worst: {worst_s:.3f} s, {worst_mb:.0f} MB peak RSS (including ~{results[names[0]].get('import_rss_mb', 0):.0f} MB of imports)")
    out = ROOT / "bench" / "results" / "hostile_files.json"
    if args.only is None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({
            "machine": platform.machine(), "python": platform.python_version(),
            "timeout_s": TIMEOUT_S, "address_space_cap_gb": ADDRESS_SPACE >> 30,
            "worst_seconds": worst_s, "worst_peak_rss_mb": worst_mb, "cases": results,
        }, indent=1, ensure_ascii=False) + "\n")
        print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
