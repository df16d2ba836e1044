"""Nightly fleets: fleet files, the device x pipeline matrix, cells, executors, history, reports."""
