"""Small helpers shared by the networks."""

from __future__ import annotations

from torch import nn

DROPOUT_WHERE = ("head", "all")


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
