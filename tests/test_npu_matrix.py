"""Every shipped pipeline (mini versions) on both emulated NPUs: htp-sim (RB5-class, AIMET
htp_v66 per-tensor, compiled for HTP v68) and htp-sim-v73 (AIMET htp_v73, per-channel).

Each cell runs the pipeline end to end with the AIMET config its device's arch chooses and
checks full NPU placement (npu_fraction == 1.0) and INT8 agreement with the FP32 baseline.
Each device's cells run in their own fresh process (tests/fixtures/pipelines/run_cells.py
says why). The matrix (placement, agreement, seconds per cell, wall time) is written to
``npu_matrix.json`` in the test's directory and printed (``pytest -s`` shows it).

The quick tests at the top check how AIMET's configs are adjusted to what ONNX Runtime's
QNN EP compiles (``edgegate.run.qnn_config``), without quantizing anything.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgegate.errors import InputError
from edgegate.run.qnn_config import graph_op_chains, qnn_ep_config, read_aimet_config

ROOT = Path(__file__).resolve().parents[1]
PIPELINES = ROOT / "tests" / "fixtures" / "pipelines"

# op-type chains (graph_op_chains) of the zoo's FP32 exports, the ones that matter here
MTCNN_PNET = {("Conv",), ("PRelu",), ("MaxPool",), ("Softmax",), ("Conv", "PRelu"), ("PRelu", "MaxPool"),
              ("MaxPool", "Conv"), ("Conv", "Softmax"), ("Conv", "PRelu", "MaxPool")}
MINILM = {(op,) for op in ("Add", "Cast", "Constant", "Div", "Erf", "Gather", "LayerNormalization", "MatMul",
                           "Mul", "Reshape", "Softmax", "Transpose", "Unsqueeze")} | {("MatMul", "Add")}


# ----------------------------------------------------------------------------- config adjustment


def test_v73_conv_prelu_net_gets_what_the_qnn_ep_compiles() -> None:
    q = qnn_ep_config(read_aimet_config("htp_v73"), MTCNN_PNET)
    assert q is not None
    assert q.changes == ("Conv+PRelu not fused", "PRelu weights per-tensor")
    assert ["Conv", "PRelu"] not in [g["op_list"] for g in q.config["supergroups"]]
    assert ["Conv", "Relu"] in [g["op_list"] for g in q.config["supergroups"]]  # the EP fuses that one
    assert q.config["op_type"]["PRelu"]["per_channel_quantization"] == "False"
    assert q.config["op_type"]["Conv"]["per_channel_quantization"] == "True"  # per-channel Conv stays
    assert q.digest.startswith("sha256:") and q.digest == qnn_ep_config(read_aimet_config("htp_v73"), MTCNN_PNET).digest


def test_configs_that_compile_as_they_are_stay_aimets() -> None:
    """RB5's per-tensor htp_v66 for MTCNN and a transformer, v73 for a transformer, a config for
    no HTP: unchanged, so their cache keys (and artifacts) are the ones they always were."""
    assert qnn_ep_config(read_aimet_config("htp_v66"), MTCNN_PNET) is None
    assert qnn_ep_config(read_aimet_config("htp_v66"), MINILM) is None
    assert qnn_ep_config(read_aimet_config("htp_v73"), MINILM) is None
    assert qnn_ep_config(read_aimet_config("default"), MTCNN_PNET) is None


def test_v68_per_channel_prelu_is_switched_off() -> None:
    q = qnn_ep_config(read_aimet_config("htp_v68"), MTCNN_PNET)
    assert q is not None and q.changes == ("PRelu weights per-tensor",)


def test_op_chains_follow_the_edges(tmp_path: Path) -> None:
    """A supergroup applies where its ops feed each other, not where they merely occur."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, None)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["y"], kernel_shape=[2, 2]),
        helper.make_node("PRelu", ["x", "s"], ["z"]),  # a PRelu, but not after the Conv
    ]
    inits = [helper.make_tensor("w", TensorProto.FLOAT, [4, 4, 1, 1], [0.0] * 16),
             helper.make_tensor("s", TensorProto.FLOAT, [4, 1, 1], [0.1] * 4)]
    path = tmp_path / "g.onnx"
    onnx.save(helper.make_model(helper.make_graph(nodes, "g", [x], [y, z], inits)), str(path))
    chains = graph_op_chains(path)
    assert {("Conv", "Relu"), ("Conv", "Relu", "MaxPool"), ("PRelu",)} <= chains
    assert ("Conv", "PRelu") not in chains
    q = qnn_ep_config(read_aimet_config("htp_v73"), chains)
    assert q is not None and q.changes == ("PRelu weights per-tensor",)  # Conv+PRelu kept: not in this graph


def test_unknown_aimet_config_is_an_input_error() -> None:
    with pytest.raises(InputError, match="quantization.config: Config file not found: htp_v99"):
        read_aimet_config("htp_v99")


# ----------------------------------------------------------------------------- the matrix

RUN_CELLS = PIPELINES / "run_cells.py"
# Per device, in the order its worker process runs them. robot_intents goes first on htp-sim,
# so its compile meets an emulator that has compiled nothing else.
MATRIX = {
    "htp-sim": ("robot_intents_matrix", "person_detect_matrix", "lm_tiny_matrix"),
    "htp-sim-v73": ("person_detect_matrix", "lm_tiny_matrix", "robot_intents_matrix"),
}
# (pipeline, device) cells expected to fail, each with a test that says why; none today.
KNOWN_LIMITS: frozenset[tuple[str, str]] = frozenset()
CELLS = [(p, d) for d, ps in MATRIX.items() for p in ps if (p, d) not in KNOWN_LIMITS]


def run_cells(home: Path, device: str, pipelines: list[Path]) -> list[dict]:
    """Every pipeline on `device` in one fresh process (see run_cells.py for why)."""
    proc = subprocess.run(
        [sys.executable, str(RUN_CELLS), str(home), device, *map(str, pipelines)],
        capture_output=True, text=True, cwd=ROOT,
    )
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or len(lines) != len(pipelines):
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise AssertionError(f"run_cells.py on {device} exited {proc.returncode}:\n{tail}")
    return lines


def agreement(pipeline: str, cand: dict, base: dict) -> dict[str, float]:
    """INT8 vs FP32, per pipeline: detections, embeddings, next-byte perplexity."""
    if pipeline.startswith("person_detect"):
        return {"baseline_agreement": cand["baseline_agreement"]}
    if pipeline.startswith("robot_intents"):
        return {"cosine_agreement": cand["cosine_agreement"]}
    return {"perplexity_ratio": cand["perplexity"] / base["perplexity"]}


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], dict]:
    """Every cell, one worker process per device, one home (FP32 exports and TinyLM's
    checkpoint shared). The table goes to npu_matrix.json and stdout (pytest -s)."""
    home = tmp_path_factory.mktemp("npu_matrix")
    t0 = time.perf_counter()
    runs = {}
    for device, pipelines in MATRIX.items():
        for r in run_cells(home, device, [PIPELINES / f"{p}.yaml" for p in pipelines]):
            runs[(r["pipeline"], r["device"])] = r
    wall = time.perf_counter() - t0
    table = {}
    for (p, d), r in runs.items():
        row = {"seconds": round(r["seconds"], 1)}
        if r["error"]:
            row["error"] = r["error"][:160]
        else:
            row.update(npu_fraction=r["candidate"]["npu_fraction"], npu_nodes=int(r["candidate"]["npu_nodes"]),
                       **{k: round(v, 4) for k, v in agreement(p, r["candidate"], r["baseline"]).items()})
        table[f"{p}@{d}"] = row
    (home / "npu_matrix.json").write_text(json.dumps({"wall_seconds": round(wall, 1), "cells": table}, indent=1))
    print(f"\nNPU matrix (mini pipelines), {wall:.0f} s in all:")
    for cell, row in table.items():
        print(f"  {cell:34s} " + "  ".join(f"{k}={v}" for k, v in row.items()))
    return runs


@pytest.mark.slow
@pytest.mark.parametrize(("pipeline", "device"), CELLS, ids=[f"{p}@{d}" for p, d in CELLS])
def test_cell_runs_fully_on_the_npu_and_agrees_with_fp32(pipeline: str, device: str, matrix) -> None:
    r = matrix[(pipeline, device)]
    assert r["error"] is None
    c = r["candidate"]
    assert c["npu_fraction"] == 1.0 and c["cpu_nodes"] == 0
    a = agreement(pipeline, c, r["baseline"])
    assert a.get("baseline_agreement", 1.0) >= 0.9
    assert a.get("cosine_agreement", 1.0) >= 0.99
    assert a.get("perplexity_ratio", 1.0) <= 1.05


@pytest.mark.slow
def test_v73_person_detect_keeps_the_adjusted_config_and_says_what_changed(matrix) -> None:
    quantized = matrix[("person_detect_matrix", "htp-sim-v73")]["quantized"]
    assert set(quantized) == {"pnet", "rnet", "onet"}
    for q in quantized.values():
        assert "Conv+PRelu not fused" in q["meta"]["qnn_ep_adjustments"]
        assert q["meta"]["aimet_config"].endswith("_aimet_config.json")
        assert q["key"]["settings"]["config"].startswith("sha256:")


@pytest.mark.slow
def test_rb5_v66_quantization_is_aimets_own(matrix) -> None:
    """htp_v66 (per-tensor) needs no adjustment: the cache key names the alias, as always."""
    for q in matrix[("person_detect_matrix", "htp-sim")]["quantized"].values():
        assert q["key"]["settings"]["config"] == "htp_v66" and "aimet_config" not in q["meta"]


@pytest.mark.slow
def test_robot_intents_runs_on_htp_v68_as_on_v73(matrix) -> None:
    """MiniLM on htp-sim (AIMET htp_v66 per-tensor, HTP v68): AIMET's own config, the whole
    graph on the NPU as on v73, embeddings within cosine 0.99 of FP32. It failed to finalize
    (QNN_COMMON_ERROR_MEM_ALLOC) while the mask bias was (1 - mask) * -100: a float Sub feeding
    a Mul, which QNN's v68 cannot take (edgegate.zoo.minilm). Its per-tensor weights clipped the
    FFN outputs' outliers (cosine 0.986) until the model split them."""
    v68, v73 = matrix[("robot_intents_matrix", "htp-sim")], matrix[("robot_intents_matrix", "htp-sim-v73")]
    assert v68["error"] is None, v68["error"]
    (q,) = v68["quantized"].values()
    assert q["key"]["settings"]["config"] == "htp_v66" and "aimet_config" not in q["meta"]
    assert v68["candidate"]["npu_nodes"] == v73["candidate"]["npu_nodes"] > 0
    assert v68["candidate"]["cpu_nodes"] == 0
    assert v68["candidate"]["cosine_agreement"] >= 0.99
