"""The two shapes of an augmentation: :class:`ImageOp` (images only) and :class:`Compose`,
and the argument checks and per-sample draws the ops share."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from trainlab.errors import ConfigError


def check(ok: bool, name: str, value: object, allowed: str) -> None:
    """Raise ``ValueError`` naming the argument, its bad value and what is allowed."""
    if not ok:
        raise ConfigError(f"{name} must be {allowed}, got {value!r}")


def check_probability(p: float) -> float:
    check(0.0 <= p <= 1.0, "p", p, "in [0, 1]")
    return float(p)


def check_range_pair(name: str, pair: Iterable[float], low: float, high: float) -> tuple:
    """Validate a ``(min, max)`` pair with ``low < min <= max <= high``."""
    values = tuple(float(v) for v in pair)  # Hydra passes YAML lists as ListConfig
    ok = len(values) == 2 and low < values[0] <= values[1] <= high
    check(ok, name, values, f"a pair (min, max) with {low} < min <= max <= {high}")
    return values


def per_sample(p: float, x: Tensor) -> Tensor:
    """Independent Bernoulli(p) decision per sample, shaped (N, 1, 1, 1) to broadcast."""
    return (torch.rand(x.shape[0], device=x.device) < p).view(-1, 1, 1, 1)


class Compose(nn.Module):
    """Apply ops in order; with no ops it is the identity.

    Note that ``len()`` makes an empty Compose falsy.

    Args:
        ops: Modules with ``forward(x, y) -> (x, y)``.
    """

    def __init__(self, ops: Iterable[nn.Module]) -> None:
        super().__init__()
        ops = list(ops)  # Hydra passes a ListConfig of instantiated ops
        for i, op in enumerate(ops):
            check(isinstance(op, nn.Module), f"ops[{i}]", op, "an nn.Module with forward(x, y)")
        self.ops = nn.ModuleList(ops)

    def forward(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        for op in self.ops:
            x, y = op(x, y)
        return x, y

    def __len__(self) -> int:
        return len(self.ops)


class ImageOp(nn.Module):
    """Base class for ops that change the images only; subclasses implement ``transform``."""

    def forward(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        if x.ndim != 4:
            raise ValueError(f"x must be a batch of shape (N, C, H, W), got shape {tuple(x.shape)}")
        return self.transform(x), y

    def transform(self, x: Tensor) -> Tensor:
        """Augment a batch of images (N, C, H, W) in [0, 1]."""
        raise NotImplementedError


