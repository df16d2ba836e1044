"""What ran a run's graphs (its toolchain), and when two toolchains differ in a way that moves numbers.

Every variant row records one toolchain in its run details (``details["toolchain"]``), a flat
``{key: str | None}`` made from what the target reported:

* AI Hub: ``qairt``, ``device`` (the device that actually ran: a "(Family)" name resolves to
  one phone), ``device_os``, ``chipset``, ``client`` — per compiled graph and per benchmark.
* Boards (ssh/adb): ``qnn_sdk`` (``qnn-net-run --version``) and ``device`` (the board as
  reached) from the benchmark; ``prepared_with`` from the compile side.
* Host targets report none; theirs is the ONNX Runtime packages they run on
  (``onnxruntime``; the QNN HTP emulator also ``onnxruntime-qnn``), from ``describe()``.

Keys that change numbers (``DRIFT_KEYS``): the compiler / runtime version (``qairt``,
``qnn_sdk``, ``onnxruntime-qnn``) and the device that ran. Two runs whose recorded values of
one of them differ are not compared as if nothing changed (``check_toolchains``: refused
like PromptPack drift unless allowed). A key only one side has is a different kind of
target, not drift. Runs stored before toolchains were recorded have none: they are compared
as before, with a note.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from edgegate.errors import InputError

Toolchain = dict[str, str | None]

DRIFT_KEYS = ("qairt", "qnn_sdk", "device", "onnxruntime-qnn")
# The ONNX Runtime packages a host target runs on, by describe()["kind"]; another kind
# without a toolchain of its own records every package version it describes.
HOST_RUNTIMES = {"cpu": ("onnxruntime",), "qnn-emulator": ("onnxruntime", "onnxruntime-qnn")}


def join_values(values: Iterable[Any]) -> str | None:
    """Several graphs' values of one key as one: the distinct ones, sorted, joined with ', '
    (two phones of one family, say); None when no graph reported one."""
    distinct = sorted({str(v) for v in values if v})
    return ", ".join(distinct) if distinct else None


def graph_toolchain(details: Mapping[str, Any]) -> Toolchain:
    """What compiled one graph, from its CompiledGraph details: AI Hub's ``toolchain``, or a
    board's ``prepared_with``; {} for host targets."""
    if isinstance(details.get("toolchain"), Mapping):
        return dict(details["toolchain"])
    if details.get("prepared_with"):
        return {"prepared_with": str(details["prepared_with"])}
    return {}


def host_toolchain(describe: Mapping[str, Any]) -> Toolchain:
    """A host target's toolchain: the versions of the runtime packages it runs on."""
    versions: Mapping[str, Any] = describe.get("versions") or {}
    wanted = HOST_RUNTIMES.get(str(describe.get("kind")), tuple(versions))
    return {k: str(versions[k]) for k in wanted if k in versions}


def run_toolchain(
    compiled: Sequence[Mapping[str, Any]], benchmark: Mapping[str, Any] | None, describe: Mapping[str, Any]
) -> Toolchain:
    """One variant's toolchain: its graphs' (merged with ``join_values``) overlaid by the
    benchmark's, whose values win where it has one (the benchmark ran on the device that
    actually ran, with the runtime that actually ran); a target that reports neither is a
    host target (``host_toolchain``)."""
    keys = dict.fromkeys(k for t in compiled for k in t)
    out: Toolchain = {k: join_values(t.get(k) for t in compiled) for k in keys}
    for k, v in (benchmark or {}).items():
        if v is not None or k not in out:
            out[k] = None if v is None else str(v)
    return out if out else host_toolchain(describe)


def recorded_toolchain(details: Mapping[str, Any] | None) -> Toolchain | None:
    """The toolchain a stored run recorded; None for runs stored before toolchains were."""
    tc = (details or {}).get("toolchain")
    return dict(tc) if isinstance(tc, Mapping) else None


def toolchain_drift(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> dict[str, tuple[str, str]]:
    """{key: (a's, b's)} for every DRIFT_KEYS key both record with different values."""
    if a is None or b is None:
        return {}
    return {k: (str(a[k]), str(b[k])) for k in DRIFT_KEYS if a.get(k) and b.get(k) and str(a[k]) != str(b[k])}


def drift_text(drift: Mapping[str, Sequence[str]]) -> str:
    """e.g. "qairt '2.44.0' vs '2.45.0', device 'Samsung Galaxy S24' vs 'Samsung Galaxy S23'"."""
    return ", ".join(f"{k} '{v[0]}' vs '{v[1]}'" for k, v in drift.items())


@dataclass(frozen=True)
class ToolchainCheck:
    """Two stored runs' toolchains, side by side, as a comparison reports them."""

    baseline: Toolchain | None
    candidate: Toolchain | None
    drift: dict[str, tuple[str, str]]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"toolchain": {"baseline": self.baseline, "candidate": self.candidate},
                "toolchain_drift": {k: list(v) for k, v in self.drift.items()}}


def check_toolchains(
    baseline_id: int, baseline_details: Mapping[str, Any] | None,
    candidate_id: int, candidate_details: Mapping[str, Any] | None,
    *, allow_drift: bool,
) -> ToolchainCheck:
    """Refuse (InputError, one line) two runs whose toolchains differ in a key that moves
    numbers, unless ``allow_drift``; then, and for runs that recorded none, say so in notes."""
    tb, tc = recorded_toolchain(baseline_details), recorded_toolchain(candidate_details)
    drift = toolchain_drift(tb, tc)
    if drift and not allow_drift:
        raise InputError(
            f"runs {baseline_id} and {candidate_id} ran on different toolchains ({drift_text(drift)}); "
            "a comparison across compilers or devices misleads: rerun on one toolchain, or pass "
            "--allow-toolchain-drift"
        )
    notes = []
    if drift:
        notes.append(f"toolchain differs, compared anyway (--allow-toolchain-drift): {drift_text(drift)}")
    unrecorded = [str(rid) for rid, t in ((baseline_id, tb), (candidate_id, tc)) if t is None]
    if unrecorded:
        notes.append(f"toolchain not recorded for run {' and '.join(unrecorded)} (stored before runs recorded "
                     "theirs): not checked for toolchain drift")
    return ToolchainCheck(tb, tc, drift, notes)
