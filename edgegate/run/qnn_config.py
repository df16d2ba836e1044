"""AIMET's HTP configs, adjusted to what ONNX Runtime's QNN execution provider compiles.

AIMET's ``htp_v68`` .. ``htp_v85`` configs describe the QNN *converter* (qnn-onnx-converter,
AI Hub): it fuses supergroups such as Conv+PRelu itself, so AIMET leaves the tensor inside a
supergroup unquantized, and it takes per-channel weights on PReLU. ONNX Runtime's QNN EP
(the HTP emulator here) compiles the exported QDQ graph node by node instead: an op becomes
a quantized QNN op only when every input comes from a DequantizeLinear and its output goes to
a QuantizeLinear, and it fuses only a few activation pairs itself. A Conv whose output AIMET
left float (Conv+PRelu supergroup) and a per-channel PReLU slope are what stopped MTCNN on
``htp-sim-v73`` ("DequantizeLinear(conv3.weight_dq) ... 12 of 53 ONNX nodes would run on the
host CPU").

Seen on the emulator (onnxruntime-qnn 2.7.0, QNN 2.40; v68 and v73), one small net per
pattern: per-channel int8 weights with their axis and int32 biases (scale = input scale x
weight scale, as AIMET exports them) compile for Conv, ConvTranspose, Gemm and MatMul, but
not a per-channel PReLU slope; the supergroups Conv+Relu, Conv+Clip (ReLU6),
ConvTranspose+Relu, Gemm+Relu and Add+Relu compile, Conv+PRelu, Conv+LeakyRelu and every
Conv+BatchNormalization+activation do not.

So the adjustment keeps AIMET's config and changes only what this graph would trip on: a
supergroup outside that list whose ops occur in the graph as a chain (each feeding the next)
is dropped (its inner tensors get quantized, as the EP runs them), and per-channel
quantization of an op type outside that list is switched off where the op occurs. A graph with none of them quantizes
with AIMET's config unchanged, so its cache key and artifacts stay the same (MTCNN, MiniLM
and TinyLM on htp_v66; MiniLM and TinyLM on htp_v73).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgegate.artifacts import digest_json
from edgegate.errors import InputError

# Supergroups whose inner tensor the QNN EP does without (it fuses the pair).
QNN_EP_SUPERGROUPS: frozenset[tuple[str, ...]] = frozenset(
    {("Conv", "Relu"), ("Conv", "Clip"), ("ConvTranspose", "Relu"), ("Gemm", "Relu"), ("Add", "Relu")}
)
# Op types whose per-channel (axis) weight DequantizeLinear the QNN EP folds into the op.
QNN_EP_PER_CHANNEL: frozenset[str] = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})


@dataclass(frozen=True)
class QnnEpConfig:
    """AIMET's config as the QNN EP compiles it, for one graph."""

    config: dict[str, Any]  # the quantsim config JSON to give AIMET
    changes: tuple[str, ...]  # what differs from AIMET's own, for progress lines and manifests

    @property
    def digest(self) -> str:
        """Content id of the adjusted config (the cache key's config for this graph)."""
        return "sha256:" + digest_json(self.config)

    def write(self, path: Path) -> Path:
        """The config as a file, where AIMET reads it (sorted keys: equal configs, equal bytes)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.config, indent=1, sort_keys=True) + "\n")
        return path


def read_aimet_config(config: str) -> dict[str, Any]:
    """The quantsim config JSON that AIMET loads for `config` (an alias such as htp_v73, or a
    path), resolved by AIMET's own lookup so an alias means exactly the file AIMET would read."""
    from aimet_torch.common.quantsim_config import quantsim_config

    try:
        path = quantsim_config._get_config_file(config)  # noqa: SLF001 - AIMET's alias table, no public API
    except FileNotFoundError as exc:
        raise InputError(f"quantization.config: {exc}".splitlines()[0]) from exc
    return json.loads(Path(path).read_text())


def graph_op_chains(onnx_path: Path, longest: int = 3) -> frozenset[tuple[str, ...]]:
    """The op-type chains of a graph (its FP32 export), up to `longest` ops where each feeds
    the next: ("Conv",), ("Conv", "PRelu"), ... in the op-type names AIMET's configs use too,
    so a supergroup or an op type applies to the graph when its chain is in here."""
    import onnx

    nodes = onnx.load(str(onnx_path), load_external_data=False).graph.node
    consumers: dict[str, list[int]] = {}
    for i, n in enumerate(nodes):
        for name in n.input:
            consumers.setdefault(name, []).append(i)
    chains: set[tuple[str, ...]] = set()
    frontier = [((n.op_type,), i) for i, n in enumerate(nodes)]
    while frontier:
        chains.update(c for c, _ in frontier)
        frontier = [
            ((*c, nodes[j].op_type), j)
            for c, i in frontier if len(c) < longest
            for out in nodes[i].output for j in consumers.get(out, ())
        ]
    return frozenset(chains)


def _is_on(value: Any) -> bool:
    return str(value).lower() == "true"


def qnn_ep_config(config: Mapping[str, Any], chains: Collection[tuple[str, ...]]) -> QnnEpConfig | None:
    """`config` adjusted for the QNN EP where this graph (its ``graph_op_chains``) needs it;
    None when nothing applies (configs for no HTP, without ``defaults.hw_version``, never are)."""
    defaults = config.get("defaults", {})
    if "hw_version" not in defaults:
        return None
    present = set(chains)
    out = copy.deepcopy(dict(config))
    changes: list[str] = []

    kept = []
    for group in out.get("supergroups", []):
        ops = tuple(group.get("op_list", ()))
        if ops not in QNN_EP_SUPERGROUPS and ops in present:
            changes.append(f"{'+'.join(ops)} not fused")
            continue
        kept.append(group)
    if len(kept) != len(out.get("supergroups", [])):
        out["supergroups"] = kept

    # AIMET's HTP configs turn per-channel on per op type (their defaults keep it off).
    op_cfg = out.get("op_type", {})
    for op in sorted({c[0] for c in present if len(c) == 1} - QNN_EP_PER_CHANNEL):
        entry = op_cfg.get(op, {})
        if _is_on(entry.get("per_channel_quantization", "False")):
            op_cfg[op] = {**entry, "per_channel_quantization": "False"}
            changes.append(f"{op} weights per-tensor")
    return QnnEpConfig(out, tuple(changes)) if changes else None


# ----------------------------------------------------------------------------- int32 biases

INT32_MAX = 2**31 - 1
# What the QDQ export does after AIMET's (part of the quantize cache key): 2 = per-channel
# int32 biases re-quantized on the QNN EP's grid (align_bias_scales).
QDQ_EXPORT = 2


def align_bias_scales(qdq_path: Path) -> list[str]:
    """Give every per-channel int32 bias of a QDQ graph the scale the QNN EP assumes:
    input scale x weight scale, per output channel. Returns the biases it re-quantized.

    AIMET's export sometimes picks its own per-channel bias scale (MobileNetV2's classifier:
    |bias| / 2^31, every value at the int32 edge). ONNX Runtime's CPU kernels dequantize that
    exactly, but the QNN EP reads the int32 values in units of input x weight scale, so on
    v68+ (per-channel) the logits came out unrelated to FP32 (cosine 0.03). The float bias is
    recomputed from the stored values and quantized again on the EP's grid; per-tensor biases
    (RB5's v66 configs) and biases already on that grid are left alone, and a graph with nothing
    to change is not rewritten (its bytes stay the same).
    """
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(qdq_path))
    inits = {i.name: i for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}

    def dq_scale(tensor: str) -> np.ndarray | None:
        node = producer.get(tensor)
        if node is None or node.op_type != "DequantizeLinear" or node.input[1] not in inits:
            return None
        return numpy_helper.to_array(inits[node.input[1]]).astype(np.float64)

    changed: list[str] = []
    for node in model.graph.node:
        if node.op_type not in ("Conv", "ConvTranspose", "Gemm") or len(node.input) < 3:
            continue
        bias_dq = producer.get(node.input[2])
        if bias_dq is None or bias_dq.op_type != "DequantizeLinear":
            continue
        if not any(a.name == "axis" for a in bias_dq.attribute):  # per-tensor: not ours to touch
            continue
        q_name, s_name = bias_dq.input[0], bias_dq.input[1]
        if q_name not in inits or s_name not in inits:
            continue
        x_scale, w_scale = dq_scale(node.input[0]), dq_scale(node.input[1])
        if x_scale is None or w_scale is None or x_scale.size != 1:
            continue
        q = numpy_helper.to_array(inits[q_name])
        scale = numpy_helper.to_array(inits[s_name]).astype(np.float64)
        if q.dtype != np.int32:
            continue
        want = (x_scale.reshape(()) * w_scale).reshape(-1) * np.ones(q.shape[0])
        if np.allclose(scale, want, rtol=1e-6, atol=0.0):
            continue
        bias = q.astype(np.float64) * scale
        new_q = np.clip(np.rint(bias / want), -INT32_MAX - 1, INT32_MAX).astype(np.int32)
        inits[q_name].CopyFrom(numpy_helper.from_array(new_q, q_name))
        inits[s_name].CopyFrom(numpy_helper.from_array(want.astype(np.float32), s_name))
        changed.append(node.input[2])
    if changed:
        onnx.save(model, str(qdq_path))
    return changed
