"""A small zoo of teachers and students: MLPs and small CNNs, described by a ModelSpec.

Every model maps a flat batch (batch, features) to logits (batch, classes) and reshapes
internally to the split's `input_shape`, so data stays flat everywhere else. Layers are
named (`body.fc1`, `blocks.0`, `head`, ...) so that feature-based techniques can attach
forward hooks without changing the models.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from torch import Tensor, nn

from .data import Split


@dataclass(frozen=True)
class ModelSpec:
    kind: str  # "mlp" or "cnn"
    hidden: tuple[int, ...] = (64,)  # MLP hidden widths
    channels: tuple[int, ...] = (16, 32)  # CNN channels per block
    fc: int = 0  # CNN: width of an extra fully-connected layer before the head (0 = none)

    def describe(self) -> str:
        if self.kind == "mlp":
            return "MLP " + "-".join(map(str, self.hidden))
        return "CNN " + "-".join(map(str, self.channels)) + (f" fc{self.fc}" if self.fc else "")


class MLP(nn.Module):
    def __init__(self, in_features: int, hidden: tuple[int, ...], n_classes: int):
        super().__init__()
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        width = in_features
        for i, h in enumerate(hidden, start=1):
            layers[f"fc{i}"] = nn.Linear(width, h)
            layers[f"relu{i}"] = nn.ReLU()
            width = h
        self.body = nn.Sequential(layers)
        self.head = nn.Linear(width, n_classes)
        self.feature_dim = width

    def features(self, x: Tensor) -> Tensor:  # (B, F) -> (B, feature_dim)
        return self.body(x.flatten(1))

    def forward(self, x: Tensor) -> Tensor:  # (B, F) -> (B, classes)
        return self.head(self.features(x))


class ConvNet(nn.Module):
    """Conv blocks (conv-ReLU-maxpool), global average pooling, optional fc, linear head.
    1-D convolutions for sequences (input_shape (L,)), 2-D for images ((C, H, W))."""

    def __init__(self, input_shape: tuple[int, ...], channels: tuple[int, ...], n_classes: int, fc: int = 0):
        super().__init__()
        self.input_shape = input_shape
        two_d = len(input_shape) == 3
        conv, pool = (nn.Conv2d, nn.MaxPool2d) if two_d else (nn.Conv1d, nn.MaxPool1d)
        in_ch = input_shape[0] if two_d else 1
        blocks = []
        for out_ch in channels:
            blocks.append(nn.Sequential(conv(in_ch, out_ch, 3, padding=1), nn.ReLU(), pool(2, ceil_mode=True)))
            in_ch = out_ch
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1) if two_d else nn.AdaptiveAvgPool1d(1)
        self.fc = nn.Sequential(nn.Linear(in_ch, fc), nn.ReLU()) if fc else nn.Identity()
        self.feature_dim = fc or in_ch
        self.head = nn.Linear(self.feature_dim, n_classes)

    def features(self, x: Tensor) -> Tensor:
        x = x.view(x.shape[0], *self.input_shape) if len(self.input_shape) == 3 else x.view(x.shape[0], 1, -1)
        return self.fc(self.pool(self.blocks(x)).flatten(1))  # (B, feature_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def build_model(spec: ModelSpec, split: Split) -> nn.Module:
    if spec.kind == "mlp":
        return MLP(split.n_features, spec.hidden, split.n_classes)
    if spec.kind == "cnn":
        return ConvNet(split.input_shape, spec.channels, split.n_classes, spec.fc)
    raise ValueError(f"unknown model kind {spec.kind!r}: 'mlp' or 'cnn'")


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

