"""Cheap diagnostics of what a technique did: weight norms and sparsity, gradient flow."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import nn
from typing_extensions import override

from trainlab.errors import ConfigError
from trainlab.init import INIT_LAYERS
from trainlab.regularization import split_decay_params


def weight_stats(module: nn.Module, exclude_bias_and_norm: bool = True,
                 zero_tol: float = 1e-3) -> dict[str, float]:
    """``weights/l1`` (sum |w|), ``weights/l2`` (Euclidean norm) and ``weights/sparsity``
    (fraction with |w| < zero_tol) over the parameters regularization acts on."""
    decay, _ = split_decay_params(module, exclude_bias_and_norm)
    flat = torch.cat([p.detach().flatten().double() for p in decay])
    return {"weights/l1": flat.abs().sum().item(),
            "weights/l2": torch.linalg.vector_norm(flat).item(),
            "weights/sparsity": (flat.abs() < zero_tol).double().mean().item()}


def first_and_last_layers(module: nn.Module) -> tuple[nn.Module, nn.Module]:
    """The first and last Linear/Conv layers in registration order (input side, output side)."""
    layers = [m for m in module.modules() if isinstance(m, INIT_LAYERS)]
    if not layers:
        raise ConfigError(f"callbacks.diagnostics watches the first and last nn.Linear/nn.Conv layers; "
                          f"{type(module).__name__} has none: set callbacks.diagnostics=null")
    return layers[0], layers[-1]


class Diagnostics(pl.Callback):
    """Log weight norms/sparsity each epoch and first/last-layer gradient norms every
    ``log_every_n_steps`` steps (vanishing gradients show as a tiny ``grad/first_layer``).

    Args:
        zero_tol: |w| below this counts as zero in ``weights/sparsity``.
    """

    def __init__(self, zero_tol: float = 1e-3) -> None:
        if not zero_tol > 0:
            raise ConfigError(f"callbacks.diagnostics.zero_tol must be > 0, got {zero_tol}")
        self.zero_tol = zero_tol
        self.layers: tuple[nn.Module, nn.Module] | None = None

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.layers = first_and_last_layers(pl_module.net)

    @override
    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if trainer.global_step % trainer.log_every_n_steps:
            return
        for name, layer in zip(("grad/first_layer", "grad/last_layer"), self.layers, strict=True):
            if layer.weight.grad is not None:
                pl_module.log(name, torch.linalg.vector_norm(layer.weight.grad.detach()).float(),
                              on_step=False, on_epoch=True, reduce_fx="mean")

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        exclude = pl_module.regularization.exclude_bias_and_norm
        for key, value in weight_stats(pl_module.net, exclude, self.zero_tol).items():
            pl_module.log(key, value, on_step=False, on_epoch=True)
