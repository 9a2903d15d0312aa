"""Small helpers shared by the networks."""

from __future__ import annotations

import torch
from torch import nn
from typing_extensions import override

DROPOUT_WHERE = ("head", "all")


class Dropout(nn.Dropout):
    """``nn.Dropout`` with a faster mask on the CPU: each element is kept when a uniform draw
    is >= ``p`` and scaled by ``1 / (1 - p)``, as ``nn.Dropout`` does.

    PyTorch's CPU dropout draws its mask with ``bernoulli_``, 2.6 ms for the default CNN's
    128 x 3136 head activations on the benchmark machine; a float32 uniform draw and a compare take
    1.0 ms (BENCHMARKS.md). The mask is float instead of bool (4x its memory). Elsewhere (CUDA's
    fused dropout kernel) and in eval mode it is ``nn.Dropout``.
    """

    @override
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and 0.0 < self.p < 1.0 and x.device.type == "cpu"):
            return super().forward(x)
        # float32 draws whatever x's dtype: bf16 has too few bits for an exact threshold
        mask = torch.rand(x.shape, dtype=torch.float32).ge_(self.p)
        mask = mask.to(x.dtype).mul_(1.0 / (1.0 - self.p))
        return x.mul_(mask) if self.inplace else x * mask


def activation(name: str) -> nn.Module:
    """An activation by its ``torch.nn`` class name (``ReLU``, ``Sigmoid``, ``Tanh``, ``GELU``...)."""
    cls = getattr(nn, name, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ValueError(f"model.activation must name a torch.nn activation class such as "
                         f"ReLU, Sigmoid, Tanh, GELU, LeakyReLU; got {name!r}")
    return cls()


def check_dropout(dropout: float, dropout_where: str, key: str = "model.dropout") -> None:
    """Raise a ValueError naming the key unless ``0 <= dropout < 1`` and the place is known."""
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"{key} must be in [0, 1), got {dropout}")
    if dropout_where not in DROPOUT_WHERE:
        raise ValueError(f"model.dropout_where must be one of {DROPOUT_WHERE}, got {dropout_where!r}")


def check_batchnorm(momentum: float, eps: float) -> None:
    """Raise a ValueError naming the key unless BN momentum is in [0, 1] and eps > 0."""
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"model.bn_momentum must be in [0, 1], got {momentum}")
    if not eps > 0:
        raise ValueError(f"model.bn_eps must be > 0, got {eps}")
