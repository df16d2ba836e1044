"""Installed versions of the packages that shape a result (for cache keys, reports, evidence)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Iterable


def package_versions(packages: Iterable[str]) -> dict[str, str]:
    """{distribution name: installed version} for each of `packages` that is installed."""
    out: dict[str, str] = {}
    for pkg in packages:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out
