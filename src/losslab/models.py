"""Model registry. Every model takes a width multiplier, a dropout rate and a BatchNorm switch.

The registry maps a name to a builder. Builders take the input shape and number of outputs
from the dataset, so one name works for 8x8 digits, 28x28 MNIST and 32x32 CIFAR.
"""
from __future__ import annotations

import inspect
import json
from typing import Callable

import torch
from torch import nn

from . import catalog


def _ch(base: int, width: float) -> int:
    return max(1, int(round(base * width)))


def _norm2d(c: int, batchnorm: bool) -> nn.Module:
    return nn.BatchNorm2d(c) if batchnorm else nn.Identity()


def _head_features(body: nn.Module, in_shape) -> int:
    with torch.no_grad():
        was = body.training
        body.eval()
        n = body(torch.zeros(1, *in_shape)).flatten(1).shape[1]
        body.train(was)
    return n


class SimpleCNN(nn.Module):
    """The paper's SimpleCNN: 3x3 convs with 16/32/32 channels, each followed by 2x2 pooling
    and a ReLU, then a linear head."""

    def __init__(self, in_shape, num_outputs, width=1.0, dropout=0.0, batchnorm=False, channels=(16, 32, 32)):
        super().__init__()
        layers, c_in = [], in_shape[0]
        for c in channels:
            c_out = _ch(c, width)
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), _norm2d(c_out, batchnorm), nn.MaxPool2d(2), nn.ReLU()]
            c_in = c_out
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(_head_features(self.features, in_shape), num_outputs)

    def forward(self, x):
        return self.head(self.dropout(self.features(x)))


class MLP(nn.Module):
    """Fully connected ReLU network on the flattened input."""

    def __init__(self, in_shape, num_outputs, width=1.0, dropout=0.0, batchnorm=False, hidden=100, depth=2, activation="relu"):
        super().__init__()
        acts = {"relu": nn.ReLU, "tanh": nn.Tanh}
        if activation not in acts:
            raise ValueError(f"model option activation={activation!r}; allowed: {sorted(acts)}")
        d_in = 1
        for s in in_shape:
            d_in *= s
        layers: list[nn.Module] = [nn.Flatten()]
        h = _ch(hidden, width)
        for _ in range(depth):
            layers += [nn.Linear(d_in, h)]
            if batchnorm:
                layers += [nn.BatchNorm1d(h)]
            layers += [acts[activation](), nn.Dropout(dropout)]
            d_in = h
        layers += [nn.Linear(d_in, num_outputs)]
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class BasicBlock(nn.Module):
    def __init__(self, c_in, c_out, stride, batchnorm, skip):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=not batchnorm)
        self.bn1 = _norm2d(c_out, batchnorm)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=not batchnorm)
        self.bn2 = _norm2d(c_out, batchnorm)
        self.skip = skip
        self.shortcut = nn.Identity()
        if skip and (stride != 1 or c_in != c_out):
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=not batchnorm), _norm2d(c_out, batchnorm))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.skip:
            out = out + self.shortcut(x)
        return torch.relu(out)


class ResNet20(nn.Module):
    """CIFAR ResNet-20 (3 stages of 3 basic blocks). ``skip=False`` removes every skip
    connection, as in the blog's pictures."""

    def __init__(self, in_shape, num_outputs, width=1.0, dropout=0.0, batchnorm=False, skip=True, blocks=3):
        super().__init__()
        c = [_ch(16, width), _ch(32, width), _ch(64, width)]
        self.stem = nn.Sequential(nn.Conv2d(in_shape[0], c[0], 3, 1, 1, bias=not batchnorm), _norm2d(c[0], batchnorm), nn.ReLU())
        layers, c_in = [], c[0]
        for stage, c_out in enumerate(c):
            for b in range(blocks):
                layers.append(BasicBlock(c_in, c_out, 2 if (stage > 0 and b == 0) else 1, batchnorm, skip))
                c_in = c_out
        self.layers = nn.Sequential(*layers)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(c_in, num_outputs)

    def forward(self, x):
        return self.head(self.dropout(self.pool(self.layers(self.stem(x)))))


class VGGSmall(nn.Module):
    """A small VGG-style network: conv-conv-pool blocks then a linear head."""

    def __init__(self, in_shape, num_outputs, width=1.0, dropout=0.0, batchnorm=False, channels=(32, 64, 128)):
        super().__init__()
        layers, c_in = [], in_shape[0]
        for c in channels:
            c_out = _ch(c, width)
            for _ in range(2):
                layers += [nn.Conv2d(c_in, c_out, 3, padding=1), _norm2d(c_out, batchnorm), nn.ReLU()]
                c_in = c_out
            layers += [nn.MaxPool2d(2)]
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(c_in, num_outputs)

    def forward(self, x):
        return self.head(self.dropout(self.features(x)))


MODELS: dict[str, Callable[..., nn.Module]] = {
    "simplecnn": SimpleCNN,
    "mlp": MLP,
    "resnet20": ResNet20,
    "vgg_small": VGGSmall,
}
COMMON = ("in_shape", "num_outputs", "width", "dropout", "batchnorm")


def model_options(name: str) -> dict:
    """The model-specific options of a registered model and their defaults."""
    if name not in MODELS:
        raise catalog.unknown_model(name)
    sig = inspect.signature(MODELS[name].__init__)
    return {k: p.default for k, p in sig.parameters.items() if k not in COMMON and k != "self"}


check_spec = catalog.check_model_spec


def build_model(spec: dict, in_shape, num_outputs: int) -> nn.Module:
    """Build a model from a spec ``{name, width, dropout, batchnorm, options}``."""
    check_spec(spec)
    opts = dict(spec.get("options", {}))
    for k, v in opts.items():
        if isinstance(v, list):
            opts[k] = tuple(v)
    return MODELS[spec["name"]](
        tuple(in_shape),
        num_outputs,
        width=spec.get("width", 1.0),
        dropout=spec.get("dropout", 0.0),
        batchnorm=spec.get("batchnorm", False),
        **opts,
    )


def spec_json(spec: dict) -> str:
    """Canonical JSON of a model spec, stored in checkpoints to detect mismatches."""
    keep = {k: spec.get(k) for k in ("name", "width", "dropout", "batchnorm", "options")}
    return json.dumps(keep, sort_keys=True)
