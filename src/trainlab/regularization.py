"""L1/L2 penalties added to the loss, and which parameters they and weight decay act on.

The notes add ``lambda * sum|w|`` or ``lambda * sum w^2`` to the loss over every parameter;
here bias and normalization parameters (every 1-D tensor) are left out by default, as is
usual practice (timm's ``param_groups_weight_decay``), with ``exclude_bias_and_norm=false``
for the notes' all-parameters form.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from trainlab.errors import ConfigError


def split_decay_params(module: nn.Module, exclude_bias_and_norm: bool = True
                       ) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Trainable parameters split into (regularized, not regularized).

    With ``exclude_bias_and_norm`` every 1-D parameter (biases, BatchNorm/LayerNorm weights)
    goes to the second list.
    """
    decay, no_decay = [], []
    for p in module.parameters():
        if not p.requires_grad:
            continue
        (no_decay if exclude_bias_and_norm and p.ndim <= 1 else decay).append(p)
    return decay, no_decay


def l1_penalty(params: Iterable[torch.Tensor]) -> torch.Tensor:
    """``sum |w|`` over all given tensors."""
    return torch.stack([p.abs().sum() for p in params]).sum()


def l2_penalty(params: Iterable[torch.Tensor]) -> torch.Tensor:
    """``sum w^2`` over all given tensors (no 1/2 factor, as in the notes)."""
    return torch.stack([p.pow(2).sum() for p in params]).sum()


class Regularization:
    """The explicit penalties of the notes, added to the loss, and which parameters they and
    the optimizer's weight decay act on.

    Weight decay is the optimizer's own ``weight_decay=`` (``model.optimizer.weight_decay``):
    PyTorch's coupled L2 for SGD, Adam and the rest, decoupled for AdamW (and for Adam with
    ``decoupled_weight_decay=true``). This object only decides which parameters it reaches, and
    refuses an explicit L2 penalty beside a decoupled decay (:meth:`check_optimizer`).

    Args:
        l1: lambda of the explicit L1 (lasso) penalty added to the loss.
        l2: lambda of the explicit L2 (ridge) penalty added to the loss. With plain SGD this
            equals ``weight_decay = 2 * l2``.
        exclude_bias_and_norm: keep 1-D parameters (biases, norm scales) out of the penalties
            and out of the optimizer's weight decay.
    """

    def __init__(self, l1: float = 0.0, l2: float = 0.0, exclude_bias_and_norm: bool = True) -> None:
        for key, value in (("l1", l1), ("l2", l2)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"model.regularization.{key} must be a number >= 0, got {value!r}")
        self.l1, self.l2 = float(l1), float(l2)
        self.exclude_bias_and_norm = exclude_bias_and_norm

    def __repr__(self) -> str:
        return (f"Regularization(l1={self.l1}, l2={self.l2}, "
                f"exclude_bias_and_norm={self.exclude_bias_and_norm})")

    @property
    def has_penalty(self) -> bool:
        return self.l1 > 0 or self.l2 > 0

    def penalty(self, module: nn.Module) -> torch.Tensor:
        """``l1 * sum|w| + l2 * sum w^2`` over the regularized parameters."""
        decay, _ = split_decay_params(module, self.exclude_bias_and_norm)
        total = torch.zeros((), device=decay[0].device, dtype=decay[0].dtype)
        if self.l1 > 0:
            total = total + self.l1 * l1_penalty(decay)
        if self.l2 > 0:
            total = total + self.l2 * l2_penalty(decay)
        return total

    def check_optimizer(self, optimizer: Callable[[list], torch.optim.Optimizer]) -> None:
        """Refuse the explicit L2 penalty beside a decoupled weight decay on the same weights.

        Both would be the run's weight decay, by two rules: the penalty's gradient ``2*l2*w``
        goes through Adam's statistics, the decoupled ``w -= lr*wd*w`` does not. (A coupled
        decay is the penalty's own gradient, ``weight_decay = 2*l2``, and adds to it.)

        Args:
            optimizer: the optimizer factory, completed with parameter groups; it is built once
                on a throwaway parameter to read the decay it applies, PyTorch's default
                included (AdamW's 0.01 when ``weight_decay`` is unset).
        """
        if self.l2 == 0:
            return
        try:
            probe = optimizer([nn.Parameter(torch.zeros(1))])
        except (TypeError, ValueError) as err:
            raise ConfigError(f"model.optimizer: {err}") from None
        decay = probe.defaults.get("weight_decay", 0.0)
        if probe.defaults.get("decoupled_weight_decay") and decay:
            name = type(probe).__name__
            raise ConfigError(
                f"model.regularization.l2={self.l2:g} (an explicit L2 penalty in the loss) and "
                f"model.optimizer.weight_decay={decay:g} ({name}'s decoupled weight decay) "
                f"are two weight decays on the same weights; keep one: "
                f"regularization=none (or model.regularization.l2=0) for {name}'s weight_decay, or "
                f"model.optimizer.weight_decay=0 for the explicit penalty")

    def param_groups(self, module: nn.Module) -> list[dict]:
        """Optimizer parameter groups. The regularized group sets nothing, so it takes every
        hyper-parameter from the optimizer's arguments (``weight_decay`` included); the 1-D
        group, with ``exclude_bias_and_norm``, sets ``weight_decay=0`` and nothing else."""
        decay, no_decay = split_decay_params(module, self.exclude_bias_and_norm)
        if not decay:
            raise ConfigError(f"model.regularization: {type(module).__name__} has no trainable weight "
                              "of 2 or more dimensions for the penalties and weight decay to act on; "
                              "set model.regularization.exclude_bias_and_norm=false to include 1-D ones")
        groups = [{"params": decay}]
        if no_decay:
            groups.append({"params": no_decay, "weight_decay": 0.0})
        return groups
