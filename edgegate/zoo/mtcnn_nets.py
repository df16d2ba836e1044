"""MTCNN's three networks (P-Net, R-Net, O-Net) with the facenet-pytorch 2.6.0 weights.

The weights ship in the facenet-pytorch wheel (MIT licence; converted from the original MTCNN
release). The wheel pins torch<2.3, so it is installed with ``--no-deps`` and only its
``data/*.pt`` state dicts are read, with ``weights_only=True``; the modules are defined here.
The cascade's host glue and adapter are in ``edgegate.zoo.mtcnn``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn



def _weights_path(name: str) -> Path:
    # find_spec on a top-level package does not execute it (facenet_pytorch's __init__
    # imports modules written for torch<2.3; we only need its data files).
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or not spec.submodule_search_locations:
        from edgegate.errors import InputError

        raise InputError(
            "MTCNN weights: package 'facenet-pytorch' is not installed; "
            "run `make setup` (it installs facenet-pytorch==2.6.0 with --no-deps)"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "data" / f"{name}.pt"


def _load(module: nn.Module, name: str, pretrained: bool) -> nn.Module:
    if pretrained:
        state = torch.load(_weights_path(name), map_location="cpu", weights_only=True)
        module.load_state_dict(state)
    return module.eval()


class PNet(nn.Module):
    """Proposal network: fully convolutional, 12x12 window, stride 2."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, kernel_size=3)
        self.prelu1 = nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(10, 16, kernel_size=3)
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, kernel_size=3)
        self.prelu3 = nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, kernel_size=1)
        self.softmax4_1 = nn.Softmax(dim=1)
        self.conv4_2 = nn.Conv2d(32, 4, kernel_size=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.prelu1(self.conv1(x))
        x = self.pool1(x)
        x = self.prelu2(self.conv2(x))
        x = self.prelu3(self.conv3(x))
        return self.softmax4_1(self.conv4_1(x)), self.conv4_2(x)


class RNet(nn.Module):
    """Refinement network on 24x24 crops."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, kernel_size=3)
        self.prelu1 = nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(28, 48, kernel_size=3)
        self.prelu2 = nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(48, 64, kernel_size=2)
        self.prelu3 = nn.PReLU(64)
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.softmax5_1 = nn.Softmax(dim=1)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        x = x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)
        x = self.prelu4(self.dense4(x))
        return self.softmax5_1(self.dense5_1(x)), self.dense5_2(x)


class ONet(nn.Module):
    """Output network on 48x48 crops: score, box regression, 5 landmarks."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3)
        self.prelu1 = nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
        self.prelu2 = nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(64, 64, kernel_size=3)
        self.prelu3 = nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4 = nn.Conv2d(64, 128, kernel_size=2)
        self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.softmax6_1 = nn.Softmax(dim=1)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)
        x = self.prelu5(self.dense5(x))
        return self.softmax6_1(self.dense6_1(x)), self.dense6_2(x), self.dense6_3(x)


def pnet(pretrained: bool = True) -> nn.Module:
    """P-Net with the facenet-pytorch weights (factory for pipeline YAML)."""
    return _load(PNet(), "pnet", pretrained)


def rnet(pretrained: bool = True) -> nn.Module:
    """R-Net with the facenet-pytorch weights (factory for pipeline YAML)."""
    return _load(RNet(), "rnet", pretrained)


def onet(pretrained: bool = True) -> nn.Module:
    """O-Net with the facenet-pytorch weights (factory for pipeline YAML)."""
    return _load(ONet(), "onet", pretrained)
