"""What the fake AI Hub (tests/fakes/aihub_server.py) serves, apart from its HTTP plumbing:
device catalogues, QAIRT releases, the "compiler" (AIMET encodings applied to ONNX) and the
SYNTHETIC profiles. TEST FIXTURE ONLY.

Every field here is one the real qai_hub 0.56 client reads (public_api_pb2 / client.py):
Device{name, os, attributes}, Framework{name, api_version, api_tags, full_version},
ModelMetadata entries (ModelMetadataKey), ProfileDetail (execution/cold-load memory ranges,
all_execution_times, layer compute units, tool_versions).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def pb() -> Any:
    from qai_hub import public_api_pb2

    return public_api_pb2


@dataclass
class Device:
    name: str
    os: str
    attributes: list[str]
    # A "(Family)" entry: jobs run on whichever member is free (round robin here), and the
    # job records the member, as AI Hub's get_job(...).device does.
    members: list[str] = field(default_factory=list)
    _next: Any = field(default=None, repr=False)

    def member(self) -> Device:
        if not self.members:
            return self
        if self._next is None:
            self._next = itertools.cycle(self.members)
        return Device(next(self._next), self.os, list(self.attributes))

    @property
    def hexagon(self) -> str | None:
        return next((a.split(":", 1)[1] for a in self.attributes if a.startswith("hexagon:")), None)


def _attrs(chipset: str, hexagon: str, os_: str, form: str, vendor: str, fp16: bool) -> list[str]:
    out = [f"chipset:{chipset}", f"hexagon:{hexagon}", "framework:tflite", "framework:qnn", "framework:onnx",
           f"format:{form}", f"os:{os_}", f"vendor:{vendor}"]
    return out + (["htp-supports-fp16:true"] if fp16 else [])


# AI Hub as ai-hub-models 0.45+ lists it (devices_and_chipsets.yaml, 2026): the Proxy boards of
# 2025 (RB5, QCS8250, QCS6490) are gone; QCS6490 is the RB3 Gen 2 Vision Kit.
CATALOGUE_2026 = [
    Device("Dragonwing RB3 Gen 2 Vision Kit", "1.6", _attrs("qualcomm-qcs6490", "v68", "linux", "iot", "qualcomm", False)),
    Device("Dragonwing IQ-9075 EVK", "1.7", _attrs("qualcomm-qcs9075", "v73", "linux", "iot", "qualcomm", True)),
    Device("QCS8550 (Proxy)", "12", _attrs("qualcomm-qcs8550-proxy", "v73", "android", "iot", "qualcomm", True)),
    Device("SA8775P ADP", "14", _attrs("qualcomm-sa8775p", "v73", "android", "auto", "qualcomm", True)),
    Device("Samsung Galaxy S24 (Family)", "14", _attrs("qualcomm-snapdragon-8gen3", "v75", "android", "phone", "samsung", True),
           members=["Samsung Galaxy S24", "Samsung Galaxy S24+"]),
    Device("Samsung Galaxy S24", "14", _attrs("qualcomm-snapdragon-8gen3", "v75", "android", "phone", "samsung", True)),
    Device("Snapdragon 8 Elite QRD", "15", _attrs("qualcomm-snapdragon-8-elite", "v79", "android", "phone", "qualcomm", True)),
]

# AI Hub before ai-hub-models 0.45 (2025): what EdgeGate's RB5-class fixtures were written for.
CATALOGUE_2025 = [
    Device("RB5 (Proxy)", "12", _attrs("qualcomm-qcs8250-proxy", "v66", "android", "iot", "qualcomm", False)),
    Device("QCS8250 (Proxy)", "12", _attrs("qualcomm-qcs8250-proxy", "v66", "android", "iot", "qualcomm", False)),
    Device("QCS6490 (Proxy)", "12", _attrs("qualcomm-qcs6490-proxy", "v68", "android", "iot", "qualcomm", False)),
    Device("Samsung Galaxy S24 (Family)", "14", _attrs("qualcomm-snapdragon-8gen3", "v75", "android", "phone", "samsung", True),
           members=["Samsung Galaxy S24", "Samsung Galaxy S24+"]),
]


@dataclass
class Qairt:
    """One QAIRT release AI Hub offers (GET /frameworks/ -> Framework)."""

    api_version: str  # what --qairt_version takes, e.g. "2.45"
    full_version: str  # what compiled models and profiles report
    tags: list[str] = field(default_factory=list)  # "default", "latest"


def qairt_releases() -> list[Qairt]:
    # 2.45.0.260326154327 is what ai-hub-models 0.56-0.58 release assets record as tool_versions.qairt.
    return [
        Qairt("2.43", "2.43.0.260128150333"),
        Qairt("2.44", "2.44.0.260227120002"),
        Qairt("2.45", "2.45.0.260326154327", ["default"]),
        Qairt("2.46", "2.46.0.260430101500", ["latest"]),
    ]


def resolve_qairt(releases: list[Qairt], asked: str | None) -> Qairt | None:
    """The release an option asks for: a tag, an api_version or a full version (no option:
    the default)."""
    asked = asked or "default"
    for r in releases:
        if asked in r.tags or asked in (r.api_version, r.full_version):
            return r
    return None


# ---------------------------------------------------------------------------- compile


def apply_encodings(model_bytes: bytes, encodings: dict[str, Any]) -> bytes:
    """AIMET 1.0.0 encodings onto a plain ONNX: weights fake-quantized, 8-bit activations
    wrapped in QuantizeLinear/DequantizeLinear (uint8, zero point = -offset)."""
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.load_from_string(model_bytes)
    g = m.graph
    inits = {i.name: i for i in g.initializer}
    for e in encodings.get("param_encodings", []):
        init = inits.get(e["name"])
        if init is None:
            continue
        w = numpy_helper.to_array(init).astype(np.float64)
        scale, offset = np.asarray(e["scale"], np.float64), np.asarray(e["offset"], np.float64)
        if scale.size > 1 and w.ndim and w.shape[0] == scale.size:
            shape = (-1,) + (1,) * (w.ndim - 1)
            scale, offset = scale.reshape(shape), offset.reshape(shape)
        q = np.clip(np.round(w / scale) - offset, 0, 2 ** int(e["bw"]) - 1)
        init.CopyFrom(numpy_helper.from_array(((q + offset) * scale).astype(np.float32), init.name))
    graph_inputs = {i.name for i in g.input}
    for n, e in enumerate(encodings.get("activation_encodings", [])):
        if int(e["bw"]) != 8:
            continue
        name = e["name"]
        s_name, z_name = f"_fq{n}_scale", f"_fq{n}_zp"
        g.initializer.extend([
            numpy_helper.from_array(np.asarray(e["scale"][0], np.float32), s_name),
            numpy_helper.from_array(np.asarray(-int(e["offset"][0]), np.uint8), z_name),
        ])
        if name in graph_inputs:
            src, dst = name, f"{name}_fq{n}"
            for node in g.node:
                node.input[:] = [dst if i == src else i for i in node.input]
        else:
            producers = [node for node in g.node if name in node.output]
            if not producers:
                continue
            src, dst = f"{name}_raw{n}", name
            producers[0].output[:] = [src if o == name else o for o in producers[0].output]
        g.node.extend([
            helper.make_node("QuantizeLinear", [src, s_name, z_name], [f"{dst}_q{n}"]),
            helper.make_node("DequantizeLinear", [f"{dst}_q{n}", s_name, z_name], [dst]),
        ])
    sorted_nodes = _toposort(g)
    del g.node[:]
    g.node.extend(sorted_nodes)
    return m.SerializeToString()


def _toposort(g: Any) -> list[Any]:
    ready = {i.name for i in g.input} | {i.name for i in g.initializer} | {""}
    left, out = list(g.node), []
    while left:
        progressed = False
        for node in list(left):
            if all(i in ready for i in node.input):
                out.append(node)
                ready.update(node.output)
                left.remove(node)
                progressed = True
        if not progressed:
            raise ValueError("graph has a cycle or a missing input")
    return out


def target_metadata(runtime: str, qairt: Qairt, device: Device, graph_name: str) -> dict[int, str]:
    """ModelMetadata entries of a compiled model (keys: ModelMetadataKey values). Context
    binaries name their graph (QNN_MODEL_GRAPH_NAMES) and Hexagon version; every target
    records the QAIRT that made it."""
    md = {3: "v" + qairt.full_version}  # QAIRT_SDK_VERSION
    if runtime in ("qnn_context_binary", "precompiled_qnn_onnx"):
        md[30] = graph_name  # QNN_MODEL_GRAPH_NAMES
        md[31] = device.hexagon or ""  # QNN_CONTEXT_BIN_HEXAGON_VERSION
        md[33] = "HTP"  # QNN_CONTEXT_BIN_BACKEND
    return md


# ---------------------------------------------------------------------------- profile


def synthetic_profile(nodes: list[Any], qairt: Qairt, units: dict[str, str], minimal: bool) -> Any:
    """A ProfileDetail shaped like AI Hub's, with SYNTHETIC numbers (a function of the node
    count). As on AI Hub, ``after_execution_peak_memory`` (the client's
    estimated_inference_peak_memory) includes the loaded model; the inference range
    (``execution_memory.peak``, inference_memory_peak_range) does not."""
    p = pb()
    n = len(nodes)
    est = 200 + 7 * n  # microseconds
    load_peak = 2_000_000 + 10_000 * n
    inference = 300_000 + 40_000 * n
    d = p.ProfileDetail(major_version=1, execution_time=est, after_execution_peak_memory=load_peak + inference,
                        cold_load_time=9_000 + 50 * n, warm_load_time=3_000 + 20 * n,
                        after_cold_load_peak_memory=load_peak, after_warm_load_peak_memory=load_peak // 2)
    d.tool_versions.append(p.ToolVersion(name="QAIRT", version=qairt.full_version))
    for node in nodes:
        unit = units.get(node.op_type, "NPU")
        d.layer_details.append(p.LayerDetail(name=node.name, layer_type_name=node.op_type,
                                             compute_unit=p.ComputeUnit.Value(f"COMPUTE_UNIT_{unit}")))
    if minimal:  # an old-style detail: no ranges, no per-iteration times, no peak measured
        d.after_execution_peak_memory = 0
        return d
    d.minor_version = 2
    d.all_execution_times.extend(est + (k % 5) * 3 for k in range(20))
    d.execution_memory.peak.lower, d.execution_memory.peak.upper = inference - 50_000, inference + 50_000
    d.execution_memory.increase.lower, d.execution_memory.increase.upper = inference - 80_000, inference
    d.cold_load_memory.peak.lower, d.cold_load_memory.peak.upper = load_peak - 40_000, load_peak + 40_000
    d.cold_load_memory.increase.lower, d.cold_load_memory.increase.upper = load_peak // 2, load_peak
    return d
