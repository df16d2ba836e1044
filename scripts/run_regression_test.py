#!/usr/bin/env python
"""Re-evaluate the models recorded for two stored runs on a PromptPack and compare them.

    python scripts/run_regression_test.py --baseline-run-id 1 --candidate-run-id 2 --dataset person_detect

Loads each run's models from the ExperimentDB (FP32 ONNX graphs for an fp32 run, compiled
graphs on the run's device for an int8 run), evaluates both on the named PromptPack
(`promptpacks/NAME` or a path) with the baseline run's adapter, stores the comparison in the
database and prints the JSON report. Exit code 1 when a metric regressed.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    from edgegate.compare import parse_threshold_option
    from edgegate.db import ExperimentDB
    from edgegate.errors import EdgeGateError
    from edgegate.regression import EvalConfig, TaskSpec, compare_models, model_from_run

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline-run-id", type=int, required=True)
    ap.add_argument("--candidate-run-id", type=int, required=True)
    ap.add_argument("--dataset", required=True, help="PromptPack name under promptpacks/, or a path")
    ap.add_argument("--split", default=None, help="split to evaluate (default: the pipeline's)")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--threshold", default=None)
    ap.add_argument("--db", default=None, help="database URL (default: EDGEGATE_DB or .edgegate/edgegate.db)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        db = ExperimentDB(args.db)
        base_model, adapter, spec = model_from_run(db, args.baseline_run_id)
        cand_model, _, _ = model_from_run(db, args.candidate_run_id)
        pack = Path(args.dataset)
        if not pack.exists():
            pack = ROOT / "promptpacks" / args.dataset
        from edgegate.packs.promptpack import load_promptpack

        loaded = load_promptpack(pack)
        result = compare_models(
            base_model, cand_model, adapter,
            TaskSpec(modality=loaded.modality.value, task=loaded.task.value, scorers=list(spec.evaluation.scorers)),
            EvalConfig(promptpack=loaded, split=args.split or spec.evaluation.split, limit=args.limit,
                       support_split=spec.evaluation.support_split),
            db=db,
            comparison_name=f"runs {args.baseline_run_id} vs {args.candidate_run_id} on {loaded.name}",
            threshold=parse_threshold_option(args.threshold) if args.threshold else 0.01,
        )
    except EdgeGateError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    logging.getLogger("edgegate.regression").info(
        "comparison %s stored: %s", result.get("comparison_id"),
        "; ".join(f"{k}: {m['delta']:+.4g}" for k, m in result["metrics"].items() if m.get("delta") is not None),
    )
    print(json.dumps(result, indent=1, default=str))
    return 1 if any(m["status"] == "regressed" for m in result["metrics"].values()) else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
