"""EdgeGate: on-NPU regression runs for Qualcomm edge devices."""

from __future__ import annotations

__version__ = "0.1.0"
