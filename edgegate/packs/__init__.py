"""PromptPacks: samples, loading and verification, scorers, adapters."""
