"""Parse the text that ``qnn-profile-viewer --input_log qnn-profiling-data_0.log`` prints.

qnn-net-run with ``--profiling_level basic`` writes a binary log; the QNN SDK's viewer turns it
into text like this (QNN 2.x; values are microseconds unless the unit says otherwise)::

    Input Log File Location: output/qnn-profiling-data_0.log
    Log File Created: Thu Mar 24 15:07:55 2022
    Time Scale: 1e-06
    Epoch Timestamp: 1648130875669710 Steady Clock Timestamp: 1112519815079
    Generated using:
    qnn-profile-viewer v2.20.0.240223
    qnn-net-run        v2.20.0.240223
    Backend            v2.20.0.240223

    Qnn Init/Prepare/Finalize/De-Init/Execute/Lib-Load Statistics:
    ------------------------------------------------------------
    Init Stats:
    -----------
        NetRun: 171679 us
        Backend (RPC (load binary) time): 2001 us

    Finalize Stats:
    ---------------
    Graph 0 (model):
        NetRun: 76129 us
        Backend (RPC (finalize) time): 2315 us

    De-Init Stats:
    --------------
        NetRun: 20020 us

    Execute Stats (Average):
    ------------------------
    Total Inference Time:
    ---------------------
    Graph 0 (model):
        NetRun: 2952 us
        Backend (Number of HVX threads used): 4 count
        Backend (RPC (execute) time): 2920 us
        Backend (QNN accelerator (execute) time): 2600 us
        Backend (Accelerator (execute) time): 2492 us
        Backend (QNN (execute) time): 2949 us

    Execute Stats (Min): ... and Execute Stats (Max): ... (same shape)

    Execute Stats (Overall):
    ------------------------
        NetRun IPS (includes IO and misc. time): 214.8888 inf/sec

Which lines appear depends on the backend (the DSP backend of a v66 has no HVX thread count,
a CPU backend no RPC time), so the parser keeps every ``label: value unit`` line it finds, by
section and graph, and the accessors answer None for what a backend did not report.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from edgegate.errors import TargetError

_SECTION_RE = re.compile(
    r"^(?P<name>Init|Compose Graphs|Finalize|De-Init|Execute|Lib-Load|Prepare)\s+Stats"
    r"(?:\s+\((?P<stat>[A-Za-z]+)\))?:\s*$"
)
_GRAPH_RE = re.compile(r"^Graph\s+(?P<index>\d+)\s+\((?P<name>.*)\):\s*$")
_VALUE_RE = re.compile(
    r"^(?P<label>\S.*?):\s+(?P<value>[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\s*(?P<unit>[A-Za-z%/]+)?\s*$"
)
_HEADER_KEYS = ("Input Log File Location", "Log File Created", "Time Scale")
_VERSION_RE = re.compile(r"^(?P<tool>qnn-profile-viewer|qnn-net-run|Backend)\s+(?P<version>v\S+)\s*$")

# Units as the viewer prints them, to milliseconds.
_TO_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "ns": 1e-6}


@dataclass(frozen=True)
class ProfileValue:
    value: float
    unit: str  # "us", "count", "cycles", "inf/sec", ... as printed ("" when none)

    @property
    def ms(self) -> float | None:
        factor = _TO_MS.get(self.unit)
        return None if factor is None else self.value * factor


# section key: "Init", "Finalize", "De-Init", "Execute (Average)", "Execute (Min)", ...
# graph key: "" for values outside a "Graph N (name):" block
Values = dict[str, ProfileValue]


@dataclass
class QnnProfile:
    """Every value of one viewer text, by section, then graph, then label."""

    sections: dict[str, dict[str, Values]] = field(default_factory=dict)
    header: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)

    def value(self, section: str, label: str, graph: str | None = None) -> ProfileValue | None:
        """One value; with ``graph`` None, the value outside graphs or else the first graph's."""
        graphs = self.sections.get(section, {})
        if graph is not None:
            return graphs.get(graph, {}).get(label)
        for values in graphs.values():
            if label in values:
                return values[label]
        return None

    def graphs(self, section: str) -> list[str]:
        return [g for g in self.sections.get(section, {}) if g]

    def total_ms(self, section: str, label: str) -> float | None:
        """``label`` summed over the graphs of ``section`` (one inference runs every graph)."""
        graphs = self.sections.get(section, {})
        found = [v.ms for values in graphs.values() if (v := values.get(label)) is not None]
        found = [x for x in found if x is not None]
        return sum(found) if found else None

    # ---------------------------------------------------------------- what EdgeGate reads

    def execute_ms(self, stat: str = "Average", label: str = "NetRun") -> float | None:
        """Per-inference time of ``stat`` (Average | Min | Max), summed over graphs."""
        return self.total_ms(f"Execute ({stat})", label)

    def init_ms(self) -> float | None:
        """qnn-net-run's Init NetRun time: backend and context (load binary) set-up."""
        return self.total_ms("Init", "NetRun")

    def ips(self) -> float | None:
        for label, v in self.sections.get("Execute (Overall)", {}).get("", {}).items():
            if label.startswith("NetRun IPS") and v.unit == "inf/sec":
                return v.value
        return None

    def summary(self) -> dict[str, float | None]:
        """The numbers EdgeGate keeps from one qnn-net-run process, in ms (IPS in inf/sec)."""
        out: dict[str, float | None] = {
            "init_ms": self.init_ms(),
            "finalize_ms": self.total_ms("Finalize", "NetRun"),
            "deinit_ms": self.total_ms("De-Init", "NetRun"),
            "ips": self.ips(),
        }
        backend = {
            "rpc": "Backend (RPC (execute) time)",
            "qnn_accelerator": "Backend (QNN accelerator (execute) time)",
            "accelerator": "Backend (Accelerator (execute) time)",
            "qnn": "Backend (QNN (execute) time)",
        }
        for stat in ("Average", "Min", "Max"):
            key = stat.lower()[:3] if stat != "Average" else "avg"
            out[f"netrun_{key}_ms"] = self.execute_ms(stat)
            for name, label in backend.items():
                out[f"{name}_{key}_ms"] = self.execute_ms(stat, label)
        return out


def parse_profile_viewer(text: str) -> QnnProfile:
    """Parse qnn-profile-viewer's text; raises TargetError when no execute stats are in it."""
    profile = QnnProfile()
    section: str | None = None
    graph = ""
    in_header = True
    for raw in text.splitlines():
        line = raw.strip()
        if not line or set(line) <= {"-", "="}:
            continue
        m = _SECTION_RE.match(line)
        if m:
            in_header = False
            section = m["name"] + (f" ({m['stat']})" if m["stat"] else "")
            graph = ""
            profile.sections.setdefault(section, {})
            continue
        if in_header:
            v = _VERSION_RE.match(line)
            if v:
                profile.versions[v["tool"]] = v["version"]
                continue
            key, sep, rest = line.partition(":")
            if sep and key in _HEADER_KEYS:
                profile.header[key] = rest.strip()
            continue
        if section is None or line == "Total Inference Time:":
            continue
        g = _GRAPH_RE.match(line)
        if g:
            graph = f"{g['index']} ({g['name']})"
            continue
        m = _VALUE_RE.match(line)
        if m:
            values = profile.sections[section].setdefault(graph, {})
            values[m["label"].strip()] = ProfileValue(float(m["value"]), m["unit"] or "")
    if profile.execute_ms("Average") is None:
        head = " | ".join(text.strip().splitlines()[:3]) or "no output"
        raise TargetError(f"qnn-profile-viewer output has no 'Execute Stats (Average)' NetRun time: {head}")
    return profile
