"""One attempt of one fleet cell, in its own process: ``python -m edgegate.fleet.cell``.

The same run as ``edgegate run PIPELINE --device DEVICE``; instead of a table it writes a
small JSON result (run ids, gate results, verdict, or the error) to ``--result``, which the
fleet reads back. Separate processes keep one cell's crash, hang or leak from the others.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Any

from edgegate.artifacts import atomic_write


def _write(path: Path, payload: dict[str, Any]) -> None:
    """The result file, whole or absent: the fleet reads a missing one as a crashed cell."""
    atomic_write(path, json.dumps(payload, indent=1, default=str))


def _gates(result: Any) -> list[dict[str, Any]]:
    return [
        {"expr": g.gate.expr, "metric": g.gate.metric, "status": g.status.value, "value": g.value,
         "limit": g.limit, "reason": g.reason}
        for g in result.gates
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgegate.fleet.cell", description=__doc__)
    parser.add_argument("--pipeline", required=True)
    parser.add_argument("--device", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--home", required=True)
    parser.add_argument("--result", required=True, type=Path)
    parser.add_argument("--report", type=Path, default=None)
    parser.add_argument("--evidence", default="on-pass", choices=["on-pass", "always", "never"])
    parser.add_argument("--evidence-dir", type=Path, default=None)
    parser.add_argument("--strict", action="store_true")
    args = parser.parse_args(argv)
    # The fleet's timeout sends SIGTERM: unwind so the run rows get their final status.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    from edgegate.errors import EdgeGateError
    from edgegate.run.pipeline import RunOptions, run_pipeline
    from edgegate.progress import Progress

    try:
        result = run_pipeline(args.pipeline, RunOptions(
            device=args.device, db_url=args.db, home=Path(args.home), report_path=args.report, strict=args.strict,
            progress=Progress(force_plain=True), evidence=args.evidence, evidence_dir=args.evidence_dir,
        ))
    except EdgeGateError as exc:
        _write(args.result, {"status": "error", "error": exc.message, "exit_code": exc.exit_code})
        print(f"error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # a cell reports every failure; the fleet goes on
        _write(args.result, {"status": "error", "error": f"{type(exc).__name__}: {exc}", "exit_code": 3})
        raise
    _write(args.result, {
        "status": "completed", "passed": result.passed, "pipeline": result.pipeline,
        "baseline_run_id": result.baseline.run_id, "candidate_run_id": result.candidate.run_id,
        "gates": _gates(result), "report_path": str(result.report_path) if result.report_path else None,
        "evidence_path": str(result.evidence_path) if result.evidence_path else None,
        "notes": list(result.notes),
    })
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
