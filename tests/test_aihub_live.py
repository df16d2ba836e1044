"""Opt-in: what only a live Qualcomm AI Hub account can confirm, when credentials are present
(EDGEGATE_AIHUB_TOKEN, or the client's config: QAIHUB_CLIENT_INI or ~/.qai_hub/client.ini).
It lists the catalogue and submits three small jobs (compile, profile, inference) to the
hosted farm; it takes minutes. EDGEGATE_AIHUB_LIVE_DEVICE picks the device file (default
devices/qcs6490-aihub.yaml, the Dragonwing RB3 Gen 2 Vision Kit).

What it checks against the real service (the fake in tests/fakes follows the client's code;
these are the service's side): the device catalogue and which device files map into it, that
rb5-aihub fails fast when AI Hub no longer lists RB5, that the pinned QAIRT is offered and
lands in the compiled model's metadata and the profile's tool_versions, the memory fields
(inference range apart from the load-including estimate) and the per-layer compute units."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _credentials() -> str | None:
    if os.environ.get("EDGEGATE_AIHUB_TOKEN"):
        return "EDGEGATE_AIHUB_TOKEN"
    ini = Path(os.path.expanduser(os.environ.get("QAIHUB_CLIENT_INI", "~/.qai_hub/client.ini")))
    return str(ini) if ini.is_file() else None


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        _credentials() is None,
        reason="live AI Hub test: no credentials (set EDGEGATE_AIHUB_TOKEN, or run `qai-hub configure`, "
        "or set QAIHUB_CLIENT_INI) - it would submit real jobs",
    ),
]


def test_catalogue_and_rb5_on_real_aihub() -> None:
    from edgegate.config import load_device
    from edgegate.errors import InputError
    from edgegate.targets.aihub import AihubTarget
    from edgegate.targets.aihub_catalogue import aihub_catalogue, local_device_files

    local = local_device_files(devices_dir=ROOT / "devices")
    cat = aihub_catalogue(local)
    listed = {d.name: d for d in cat.devices}
    assert listed, "AI Hub listed no devices"
    # every shipped AI Hub device file but rb5-aihub should map to a device AI Hub lists today
    assert set(cat.unmatched) <= {"rb5-aihub"}, f"device files AI Hub no longer lists: {cat.unmatched}"
    if "RB5 (Proxy)" not in listed:
        with pytest.raises(InputError, match="no longer lists 'RB5 \\(Proxy\\)'.*board path"):
            AihubTarget(load_device("rb5-aihub", devices_dir=ROOT / "devices")).describe()


def test_tiny_graph_on_real_aihub(tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from edgegate.config import load_device
    from edgegate.metrics import Source
    from edgegate.targets.aihub import AihubTarget

    w = numpy_helper.from_array(np.random.RandomState(0).randn(8, 3, 3, 3).astype(np.float32) * 0.1, "w")
    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["y"])],
        "edgegate_live", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 32, 32])], [w],
    )
    path = tmp_path / "edgegate_live.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)

    device = load_device(os.environ.get("EDGEGATE_AIHUB_LIVE_DEVICE", "qcs6490-aihub"), devices_dir=ROOT / "devices")
    target = AihubTarget(device)
    desc = target.describe()
    # the pinned QAIRT is one AI Hub offers (describe() fails otherwise), resolved to a full version
    assert desc["qairt_resolved"] and desc["qairt_resolved"].startswith(desc["qairt_version"].lstrip("v"))

    c = target.compile("edgegate_live", path, tmp_path / "out")
    tc = c.details["toolchain"]
    assert tc["qairt"] and tc["qairt"].startswith(desc["qairt_version"]), c.details["aihub"]["metadata"]
    assert tc["device"] and tc["chipset"], tc  # the device the compile job recorded
    if desc["target_runtime"] in ("qnn_context_binary", "precompiled_qnn_onnx"):
        assert c.details["aihub"]["graph_names"] == "edgegate_live"  # context_enable_graphs honoured

    bench = target.benchmark([c], {}, warmup=0, repeats=1, min_seconds=0, work_dir=tmp_path / "run")
    assert bench.source is Source.AIHUB_PROFILE and bench.timings[0].samples_ms[0] > 0
    prof = json.loads((tmp_path / "run" / "edgegate_live_aihub_profile.json").read_text())
    es = prof["execution_summary"]
    lo, hi = es["inference_memory_peak_range"]
    assert 0 <= lo <= hi and es["first_load_memory_peak_range"] is not None
    # AI Hub's estimated_inference_peak_memory includes the loaded model; the range does not
    assert es["estimated_inference_peak_memory"] >= hi, es
    assert bench.peak_memory_mb == pytest.approx(hi / 2**20)
    assert {layer["compute_unit"] for layer in prof["execution_detail"]} <= {"NPU", "GPU", "CPU", "UNSPECIFIED"}
    assert any(t["name"].upper() in ("QAIRT", "QNN") for t in prof["tool_versions"]), prof["tool_versions"]
    assert bench.details["toolchain"]["qairt"] and bench.details["toolchain"]["device"]

    feeds = [{"x": np.random.RandomState(i).rand(1, 3, 32, 32).astype(np.float32)} for i in range(2)]
    outs = target.run_batch(c, feeds)
    ref = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for f, o in zip(feeds, outs):
        np.testing.assert_allclose(o[0].reshape(-1), ref.run(None, f)[0].reshape(-1), atol=0.05)
