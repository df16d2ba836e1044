"""One pipeline run: context, stages, runners, the orchestrator and its helpers."""
