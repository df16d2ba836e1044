"""What a run leaves behind: the run report, evidence bundles, signing, stored-run views."""
