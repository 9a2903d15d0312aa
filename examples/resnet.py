"""A network: a small residual CNN (a stem, then stages of two-conv residual blocks).

Recipe 1 of docs/EXTENDING.md. Its YAML is ``examples/conf/net/resnet.yaml``:
``python train.py --config-dir examples/conf net=resnet data=digits``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from trainlab.errors import ConfigError
from trainlab.models.layers import check_dropout, dropout_layer


class ResidualBlock(nn.Module):
    """conv-BN-ReLU-conv-BN plus the input (a 1x1 conv when the width or stride changes), ReLU."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, batchnorm: bool) -> None:
        super().__init__()

        def norm(ch: int) -> nn.Module:
            return nn.BatchNorm2d(ch) if batchnorm else nn.Identity()

        self.body = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=not batchnorm), norm(out_ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=not batchnorm), norm(out_ch))
        self.skip = nn.Identity() if stride == 1 and in_ch == out_ch else nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=not batchnorm), norm(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.skip(x))


class ResNet(nn.Module):
    """Residual CNN for small images.

    Args:
        input_shape: (C, H, W) of the images (from ``data.input_shape``).
        num_classes: number of logits (from ``data.num_classes``).
        width: channels of the first stage; each later stage doubles them and halves H and W.
        stages: number of stages (one residual block each).
        batchnorm: BatchNorm after every conv (the batch-norm study sets it).
        dropout: ``nn.Dropout`` probability before the head (the dropout study sets it).
    """

    def __init__(self, input_shape: Sequence[int], num_classes: int, width: int = 16,
                 stages: int = 2, batchnorm: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        check_dropout(dropout, "head")
        if width < 1 or stages < 1:
            raise ConfigError(f"model.net.width and model.net.stages must be >= 1, got {width}, {stages}")
        channels = input_shape[0]
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1, bias=not batchnorm),
                                   nn.BatchNorm2d(width) if batchnorm else nn.Identity(),
                                   nn.ReLU(inplace=True)]
        in_ch = width
        for stage in range(stages):
            out_ch = width * 2 ** stage
            layers.append(ResidualBlock(in_ch, out_ch, stride=1 if stage == 0 else 2, batchnorm=batchnorm))
            in_ch = out_ch
        self.features = nn.Sequential(*layers)
        head: list[nn.Module] = [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        if dropout > 0:
            head.append(dropout_layer(dropout))
        head.append(nn.Linear(in_ch, num_classes))
        self.head = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
