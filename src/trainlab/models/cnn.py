"""A small VGG-style CNN: [conv-BN-act-pool] blocks, optionally followed by residual blocks
(the ResNet-9 layout of Page's DAWNBench CIFAR-10 net), dropout, a linear head."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from trainlab.errors import ConfigError
from trainlab.models.layers import POOL_COMMUTING_ACTIVATIONS, check_batchnorm, check_dropout, dropout_layer
from trainlab.models.layers import activation as make_activation


class Residual(nn.Module):
    """``x + f(x)`` with ``f`` two [conv-BN-act] layers that keep the channels and the size."""

    def __init__(self, channels: int, kernel_size: int, activation: str, batchnorm: bool,
                 bn_momentum: float, bn_eps: float) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(2):
            layers += [nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2,
                                 bias=not batchnorm)]
            layers += [nn.BatchNorm2d(channels, eps=bn_eps, momentum=bn_momentum)] if batchnorm else []
            layers += [make_activation(activation)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def hidden_units(hidden: int | Sequence[int]) -> list[int]:
    """``model.net.hidden`` as a list of layer widths: ``0`` -> ``[]``, ``512`` -> ``[512]``."""
    if isinstance(hidden, int) and not isinstance(hidden, bool):
        units = [] if hidden == 0 else [hidden]
    elif isinstance(hidden, str):
        units = None
    else:
        try:
            units = [int(h) for h in hidden]  # a list (Hydra passes a ListConfig)
        except (TypeError, ValueError):
            units = None
    if units is None or any(u < 1 for u in units):
        raise ConfigError("model.net.hidden must be 0, a width >= 1 or a list of widths >= 1, "
                          f"got {hidden!r}")
    return units


class CNN(nn.Module):
    """Convolutional classifier.

    Args:
        input_shape: (C, H, W) of the input images.
        num_classes: number of output logits.
        channels: output channels of each conv block; each block halves H and W.
        kernel_size: conv kernel size (odd; padding keeps H and W).
        hidden: width of a fully connected layer before the head (0 = none), or a list of
            widths, one layer each (``[192, 512]``: the first reads the whole last map, as a
            conv with that map's size would, and trains faster than a padded conv on a 3x3
            map; BENCHMARKS.md, ``fmnist_94``).
        activation: ``torch.nn`` activation class name.
        batchnorm: BatchNorm2d after every conv (and BatchNorm1d after each hidden layer).
        bn_momentum: BatchNorm running-statistics momentum.
        bn_eps: BatchNorm epsilon.
        dropout: probability of ``nn.Dropout`` before the head (the notes: mostly in the last
            fully connected layers).
        dropout_where: ``head`` (only before the classifier) or ``all`` (also after each block
            and each hidden layer).
        dropout2d: probability of ``nn.Dropout2d`` (drops whole feature maps) after each block.
        pool_first: block order conv-pool-BN-act instead of conv-BN-act-pool (airbench's order):
            BN and the activation then run on a quarter of the pixels, which on a CPU makes
            the [16, 32, 64] net 1.4x faster (BENCHMARKS.md). Not the same function: BN
            normalizes the pooled maxima.
        fast_dropout: ``trainlab.models.layers.FastDropout`` instead of ``nn.Dropout`` (a
            faster CPU mask from other random draws; opt-in, measured in BENCHMARKS.md).
        res_blocks: residual blocks (:class:`Residual`, two convs each) after each block, one
            count per entry of ``channels``; empty = none. Depth where the image is small is
            cheap capacity: ``[0, 1, 0, 1]`` on ``[16, 32, 64, 128]`` is ResNet-9's layout.

    With ``pool_first=false`` and an activation in ``POOL_COMMUTING_ACTIVATIONS`` (ReLU...), the
    modules run conv-BN-pool-act: max-pooling commutes with a non-decreasing activation, so
    this is conv-BN-act-pool's function with the same gradients, and the activation touches a
    quarter of the pixels (default CNN 1.08x samples/s on 2 cores, BENCHMARKS.md). The order
    of the parameterized layers, and so the state_dict, is the same either way.
    """

    def __init__(self, input_shape: Sequence[int], num_classes: int,
                 channels: Sequence[int] = (32, 64), kernel_size: int = 3,
                 hidden: int | Sequence[int] = 0,
                 activation: str = "ReLU", batchnorm: bool = True, bn_momentum: float = 0.1,
                 bn_eps: float = 1e-5, dropout: float = 0.25, dropout_where: str = "head",
                 dropout2d: float = 0.0, pool_first: bool = False, fast_dropout: bool = False,
                 res_blocks: Sequence[int] = ()) -> None:
        super().__init__()
        check_dropout(dropout, dropout_where)
        check_dropout(dropout2d, "head", key="model.net.dropout2d")
        check_batchnorm(bn_momentum, bn_eps)
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ConfigError(f"model.net.kernel_size must be a positive odd integer, got {kernel_size}")
        in_ch, height, width = input_shape
        if len(channels) == 0 or 2 ** len(channels) > min(height, width):
            raise ConfigError(f"model.net.channels: {len(channels)} blocks halve {height}x{width} "
                              f"below 1 pixel; use 1..{int(min(height, width)).bit_length() - 1} blocks")
        units = hidden_units(hidden)
        res_blocks = list(res_blocks) or [0] * len(channels)
        if len(res_blocks) != len(channels) or min(res_blocks) < 0:
            raise ConfigError(f"model.net.res_blocks must be empty or {len(channels)} counts >= 0 (one per "
                              f"entry of model.net.channels={list(channels)}), got {res_blocks}")
        blocks: list[nn.Module] = []
        for out_ch, n_res in zip(channels, res_blocks, strict=True):
            blocks += [nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2, bias=not batchnorm)]
            blocks += [nn.MaxPool2d(2)] if pool_first else []
            if batchnorm:
                blocks += [nn.BatchNorm2d(out_ch, eps=bn_eps, momentum=bn_momentum)]
            if pool_first:
                blocks += [make_activation(activation)]
            elif activation in POOL_COMMUTING_ACTIVATIONS:  # same function, see the docstring
                blocks += [nn.MaxPool2d(2), make_activation(activation)]
            else:
                blocks += [make_activation(activation), nn.MaxPool2d(2)]
            blocks += [Residual(out_ch, kernel_size, activation, batchnorm, bn_momentum, bn_eps)
                       for _ in range(n_res)]
            if dropout2d > 0:
                blocks += [nn.Dropout2d(dropout2d)]
            if dropout > 0 and dropout_where == "all":
                blocks += [dropout_layer(dropout, fast_dropout)]
            in_ch, height, width = out_ch, height // 2, width // 2
        self.features = nn.Sequential(*blocks)
        head: list[nn.Module] = [nn.Flatten()]
        features = in_ch * height * width
        for i, n_units in enumerate(units):
            head += [nn.Linear(features, n_units, bias=not batchnorm)]
            head += [nn.BatchNorm1d(n_units, eps=bn_eps, momentum=bn_momentum)] if batchnorm else []
            head += [make_activation(activation)]
            if dropout > 0 and dropout_where == "all" and i < len(units) - 1:
                head += [dropout_layer(dropout, fast_dropout)]
            features = n_units
        if dropout > 0:
            head += [dropout_layer(dropout, fast_dropout)]
        head += [nn.Linear(features, num_classes)]
        self.head = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


