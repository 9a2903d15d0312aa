"""Small helpers shared by the networks."""

from __future__ import annotations

import torch
from torch import nn
from typing_extensions import override

from trainlab.errors import ConfigError

DROPOUT_WHERE = ("head", "all")


class FastDropout(nn.Dropout):
    """An opt-in (``model.net.fast_dropout=true``) ``nn.Dropout`` with a faster mask on the
    CPU: each element is kept with probability ``1 - p`` and scaled by the inverse of that
    probability, as ``nn.Dropout`` does, but from other random draws (so a run's numbers differ
    from ``nn.Dropout``'s, and from the same run on a GPU).

    PyTorch's CPU dropout draws its mask with ``bernoulli_``: 2.6 ms for the default CNN's
    128 x 3136 head activations on the benchmark machine, and a float32 uniform per element
    still 0.9 ms: both draw one random number per element from the CPU generator. Here one
    63-bit integer draw serves four elements, 15 random bits each, compared with
    ``round(p * 2**15)``: 0.34 ms (BENCHMARKS.md). So ``p`` acts rounded to a multiple of
    1/32768 (exact for 0.5, 0.25, 0.125...; 0.1 acts as 0.100006), and the scale is the
    inverse of the keep probability actually used, so the expected output is the input.
    Elsewhere (CUDA's fused kernel), in eval mode, and for ``p`` that rounds to 0 or 1, it is
    ``nn.Dropout``.
    """

    BITS = 15  # random bits per element: the low 15 of each int16 quarter of an int64 draw

    @override
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        levels = 1 << self.BITS
        threshold = round(self.p * levels)
        if not (self.training and 0 < threshold < levels and x.device.type == "cpu"):
            return super().forward(x)
        n = x.numel()
        # random_() on int64 fills [0, 2**63): every int16 quarter has 15 uniform low bits
        words = torch.empty((n + 3) // 4, dtype=torch.int64).random_()
        draws = words.view(torch.int16)[:n].view(x.shape).bitwise_and_(levels - 1)
        mask = draws.ge_(threshold).to(x.dtype)
        # the scale as a Python number: bf16 products are rounded once, not scaled by bf16(4/3)
        scale = levels / (levels - threshold)
        return x.mul_(mask).mul_(scale) if self.inplace else (x * mask).mul_(scale)


def dropout_layer(p: float, fast: bool = False) -> nn.Dropout:
    """``nn.Dropout(p)``, PyTorch's own; ``fast``: :class:`FastDropout` (CPU mask, opt-in)."""
    return FastDropout(p) if fast else nn.Dropout(p)


# activations whose backward reads only their output's sign or range: in place, the gradients
# are bit for bit the same (ELU's family rebuilds exp(x) from the output: not bit for bit)
INPLACE_ACTIVATIONS = ("ReLU", "ReLU6", "LeakyReLU", "Hardtanh")
# non-decreasing and piecewise linear, so max-pooling commutes with them exactly:
# act(max(window)) == max(act(window)), and the CNN pools first (a quarter of the pixels)
POOL_COMMUTING_ACTIVATIONS = ("ReLU", "ReLU6", "LeakyReLU", "Hardtanh")


def activation(name: str) -> nn.Module:
    """An activation by its ``torch.nn`` class name (``ReLU``, ``Sigmoid``, ``Tanh``, ``GELU``...).

    Those in ``INPLACE_ACTIVATIONS`` overwrite their input: the networks put them right after
    a Linear, Conv, BatchNorm or pooling layer, whose backward does not read its output, so
    the gradients are the same and no second buffer is allocated and written (the default
    job's peak RSS 1.48 -> 1.31 GB; 1.06x samples/s for the default CNN while its ReLU ran
    before the pool, BENCHMARKS.md).
    """
    cls = getattr(nn, name, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ConfigError(f"model.net.activation must name a torch.nn activation class such as "
                          f"ReLU, Sigmoid, Tanh, GELU, LeakyReLU; got {name!r}")
    return cls(inplace=True) if name in INPLACE_ACTIVATIONS else cls()


def check_dropout(dropout: float, dropout_where: str, key: str = "model.net.dropout") -> None:
    """Raise a ValueError naming the key unless ``0 <= dropout < 1`` and the place is known."""
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"{key} must be in [0, 1), got {dropout}")
    if dropout_where not in DROPOUT_WHERE:
        raise ConfigError(f"model.net.dropout_where must be one of {DROPOUT_WHERE}, got {dropout_where!r}")


def check_batchnorm(momentum: float, eps: float) -> None:
    """Raise a ValueError naming the key unless BN momentum is in [0, 1] and eps > 0."""
    if not 0.0 <= momentum <= 1.0:
        raise ConfigError(f"model.net.bn_momentum must be in [0, 1], got {momentum}")
    if not eps > 0:
        raise ConfigError(f"model.net.bn_eps must be > 0, got {eps}")
