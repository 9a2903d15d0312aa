"""A multilayer perceptron: [linear-BN-act-dropout] layers and a linear head."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from trainlab.errors import ConfigError
from trainlab.models.layers import activation as make_activation
from trainlab.models.layers import check_batchnorm, check_dropout, dropout_layer


class MLP(nn.Module):
    """Fully connected classifier; images are flattened.

    Args:
        input_shape: shape of one input (flattened to ``prod(input_shape)`` features).
        num_classes: number of output logits.
        hidden: width of each hidden layer (deep sigmoid stacks show vanishing gradients).
        activation: ``torch.nn`` activation class name.
        batchnorm: BatchNorm1d after every hidden linear layer.
        bn_momentum: BatchNorm running-statistics momentum.
        bn_eps: BatchNorm epsilon.
        dropout: ``nn.Dropout`` probability.
        dropout_where: ``head`` (only after the last hidden layer) or ``all`` (every layer).
        fast_dropout: ``trainlab.models.layers.FastDropout`` instead of ``nn.Dropout`` (a
            faster CPU mask from other random draws; opt-in, measured in BENCHMARKS.md).
    """

    def __init__(self, input_shape: Sequence[int], num_classes: int,
                 hidden: Sequence[int] = (256, 128), activation: str = "ReLU",
                 batchnorm: bool = False, bn_momentum: float = 0.1, bn_eps: float = 1e-5,
                 dropout: float = 0.0, dropout_where: str = "head", fast_dropout: bool = False) -> None:
        super().__init__()
        check_dropout(dropout, dropout_where)
        check_batchnorm(bn_momentum, bn_eps)
        if any(int(h) < 1 for h in hidden):
            raise ConfigError(f"model.net.hidden widths must be >= 1, got {list(hidden)}")
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for i, out in enumerate(hidden):
            layers += [nn.Linear(width, out)]
            layers += [nn.BatchNorm1d(out, eps=bn_eps, momentum=bn_momentum)] if batchnorm else []
            layers += [make_activation(activation)]
            if dropout > 0 and (dropout_where == "all" or i == len(hidden) - 1):
                layers += [dropout_layer(dropout, fast_dropout)]
            width = out
        layers += [nn.Linear(width, num_classes)]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
