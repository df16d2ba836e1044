"""Nightly fleets: many pipelines on many devices, concurrently, with trends.

Modules, from the bottom up: ``model`` (the values: cells, tasks, results, statuses),
``spec`` (the fleet file), ``matrix`` (pipelines x devices), ``store`` (fleet history in the
ExperimentDB), ``executors`` (device locks, cell subprocesses, local / Dask), ``report``
(terminal, Markdown, HTML, JUnit, JSON), ``run`` (``run_fleet``: the orchestrator) and
``cell`` (``python -m edgegate.fleet.cell``: one attempt of one cell in its own process).
"""
