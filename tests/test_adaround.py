"""AdaRound (quantization.adaround) on graphs with more than one input: AIMET's default forward
reads a data-loader tuple as (inputs, labels), so a two-input graph got only its first input
and MiniLM's four failed ("too many values to unpack")."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from edgegate.run.quantize import QuantizeSettings, quantize_graph


class TwoInputs(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Linear(8, 8)
        self.b = torch.nn.Linear(8, 8)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.a(x) + self.b(y)


def test_adaround_feeds_every_input_of_a_graph(tmp_path: Path) -> None:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    batches = [tuple(rng.standard_normal((2, 8)).astype(np.float32) for _ in range(2)) for _ in range(4)]
    settings = QuantizeSettings(config="htp_v73", scheme="tf_enhanced", param_bw=8, output_bw=8, bn_fold=False,
                                cle=False, adaround_iterations=2, seed=0)
    res = quantize_graph(TwoInputs().eval(), ["x", "y"], ["z"], batches, settings, tmp_path, "two")
    assert res.qdq_onnx.is_file()
    # both linear layers' weights were AdaRounded and frozen into the sim's encodings
    params = json.loads(res.encodings.read_text())["param_encodings"]
    names = params if isinstance(params, dict) else {p["name"]: p for p in params}
    assert any("a.weight" in n for n in names) and any("b.weight" in n for n in names)
    assert (tmp_path / "two_adaround.encodings").is_file()
