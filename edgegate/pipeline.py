"""Old import path, kept for users' scripts: the orchestrator lives in ``edgegate.run.pipeline``."""

from __future__ import annotations

from edgegate.run.pipeline import PipelineResult, RunOptions, VariantResult, run_pipeline

__all__ = ["PipelineResult", "RunOptions", "VariantResult", "run_pipeline"]
