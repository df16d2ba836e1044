"""Helpers the AI Hub tests share: a fake service wired into the environment, a tiny graph,
targets on devices of the fake's catalogue, and a simulated clock. TEST FIXTURE ONLY."""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fakes.aihub_server import FakeAihub

RB3 = "Dragonwing RB3 Gen 2 Vision Kit"  # QCS6490, Hexagon v68 (TFLite)
IQ9075 = "Dragonwing IQ-9075 EVK"  # QCS9075, Hexagon v73 (QNN context binaries)


@contextlib.contextmanager
def serve(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, token: str, **kw: Any) -> Iterator[FakeAihub]:
    """A fake AI Hub the client (and EdgeGate) talk to, with the client's retry delays short."""
    import qai_hub.util.session as session

    from edgegate.targets.aihub_session import HubSession

    monkeypatch.setattr(session, "BACKOFF_FACTOR", 0.01)
    monkeypatch.setattr(HubSession, "backoff_s", 0.01)
    with FakeAihub(token, **kw) as server:
        monkeypatch.setenv("EDGEGATE_AIHUB_TOKEN", token)
        monkeypatch.setenv("EDGEGATE_AIHUB_API_URL", server.url)
        monkeypatch.setenv("QAIHUB_CLIENT_INI", str(tmp_path / "absent.ini"))
        yield server


def tiny_onnx(path: Path, seed: int = 0, *, qdq: bool = False) -> Path:
    """Conv + Relu on a 1x3x8x8 input; ``qdq`` wraps the input in Quantize/DequantizeLinear
    (a quantized graph, which the placement gate checks)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.RandomState(seed)
    inits = [numpy_helper.from_array(rng.randn(4, 3, 3, 3).astype(np.float32), "conv.weight")]
    nodes = []
    x = "x"
    if qdq:
        inits += [numpy_helper.from_array(np.asarray(1 / 255, np.float32), "s"),
                  numpy_helper.from_array(np.asarray(0, np.uint8), "z")]
        nodes += [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="q"),
                  helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"], name="dq")]
        x = "xd"
    nodes += [helper.make_node("Conv", [x, "conv.weight"], ["c"], pads=[1, 1, 1, 1], name="conv"),
              helper.make_node("Relu", ["c"], ["y"], name="relu")]
    g = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def aihub_target(db: Any = None, *, invocation: str | None = None, clock: Any = None, **kw: Any) -> Any:
    """A target on the fake (the RB3 Gen 2 unless ``device`` says otherwise); with a db,
    attached to a new run of a new invocation unless one is given."""
    from edgegate.config import AihubDevice
    from edgegate.targets.aihub import AihubTarget

    fields = {"name": "rb3-aihub", "kind": "aihub", "device": RB3, "poll_interval_s": 0.02,
              "job_timeout_s": 30, "max_retries": 3, **kw}
    t = AihubTarget(AihubDevice(**fields), clock=clock.now if clock else None, sleep=clock.sleep if clock else None)
    if db is not None:
        attach(t, db, invocation or uuid.uuid4().hex)
    return t


def attach(target: Any, db: Any, invocation: str, **run: Any) -> int:
    """Start a database run and attach the target to it, as the pipeline does per variant."""
    fields = {"pipeline": "p", "device": target.name, "variant": "int8", "model_digest": "m", "pack_digest": "k",
              "config_digest": "c", **run}
    run_id = db.start_run(invocation=invocation, **fields)
    target.attach_run(db, run_id)
    return run_id


def feeds(n: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.RandomState(1)
    return [{"x": rng.rand(1, 3, 8, 8).astype(np.float32)} for _ in range(n)]


def aimet_entry(tmp_path: Path, onnx_path: Path) -> Path:
    """A quantize cache entry as EdgeGate writes it (QDQ ONNX + AIMET's ONNX + .encodings):
    the candidate goes up as a .aimet directory. Returns the QDQ ONNX path."""
    entry = tmp_path / "quantized"
    entry.mkdir(exist_ok=True)
    (entry / "tiny_qdq.onnx").write_bytes(onnx_path.read_bytes())
    (entry / "tiny.onnx").write_bytes(onnx_path.read_bytes())
    enc = {"version": "1.0.0", "activation_encodings": [
        {"name": "x", "bw": 8, "scale": [1 / 255], "offset": [0], "dtype": "INT", "enc_type": "PER_TENSOR", "is_sym": False}],
        "param_encodings": [{"name": "conv.weight", "bw": 8, "scale": [0.02], "offset": [-128], "dtype": "INT",
                             "enc_type": "PER_TENSOR", "is_sym": True}]}
    (entry / "tiny.encodings").write_text(json.dumps(enc))
    (entry / "manifest.json").write_text(json.dumps({"meta": {
        "qdq_onnx": "tiny_qdq.onnx", "encodings": "tiny.encodings", "encodings_onnx": "tiny.onnx"}}))
    return entry / "tiny_qdq.onnx"


class FakeClock:
    """Simulated time: ``sleep`` moves ``now`` on at once, so a test can live through minutes
    of rate limiting in milliseconds. Shared by EdgeGate's session and the fake's storm."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.slept: list[float] = []
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self.t

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
            self.t += seconds
