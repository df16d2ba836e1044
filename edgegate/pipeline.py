"""Old import path, kept for users' scripts: the orchestrator lives in ``edgegate.run.pipeline``,
the values it returns in ``edgegate.results``."""

from __future__ import annotations

from edgegate.results import PipelineResult, VariantResult
from edgegate.run.pipeline import RunOptions, run_pipeline

__all__ = ["PipelineResult", "RunOptions", "VariantResult", "run_pipeline"]
