"""PromptPacks: samples, loading and verification, creation from users' data, scorers, adapters."""
