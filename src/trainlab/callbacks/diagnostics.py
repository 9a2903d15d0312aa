"""Cheap diagnostics of what a technique did: weight norms and sparsity, gradient flow."""

from __future__ import annotations

import math

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


def sample_interval(log_every_n_steps: int, batches_per_epoch: float, accumulate_grad_batches: int) -> int:
    """Optimizer steps between two gradient samples: ``log_every_n_steps``, or fewer where an
    epoch has fewer steps, so that every epoch holds at least one sample.

    Args:
        log_every_n_steps: the Trainer's; 0 (no step logging) samples once per epoch.
        batches_per_epoch: the Trainer's ``num_training_batches`` (``inf`` for a loader without
            a length: then ``log_every_n_steps``).
        accumulate_grad_batches: batches per optimizer step (the last batch of an epoch steps too).
    """
    steps = math.ceil(batches_per_epoch / accumulate_grad_batches) \
        if math.isfinite(batches_per_epoch) else math.inf
    return max(1, int(min(log_every_n_steps or steps, steps)))


class Diagnostics(pl.Callback):
    """Log weight norms/sparsity each epoch and first/last-layer gradient norms (vanishing
    gradients show as a tiny ``grad/first_layer``), the epoch's mean over steps sampled every
    ``log_every_n_steps`` optimizer steps, or every epoch's steps where an epoch has fewer
    (:func:`sample_interval`). The samples are evenly spaced, and every epoch logs its own.

    Args:
        zero_tol: |w| below this counts as zero in ``weights/sparsity``.
    """

    def __init__(self, zero_tol: float = 1e-3) -> None:
        if not zero_tol > 0:
            raise ConfigError(f"callbacks.diagnostics.zero_tol must be > 0, got {zero_tol}")
        self.zero_tol = zero_tol
        self.layers: tuple[nn.Module, nn.Module] | None = None
        self.interval = 1  # optimizer steps between gradient samples, set each epoch

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.layers = first_and_last_layers(pl_module.net)

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # here, not at fit start: the length of the epoch is known once its loader is set up
        self.interval = sample_interval(trainer.log_every_n_steps, trainer.num_training_batches,
                                        trainer.accumulate_grad_batches)

    @override
    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if trainer.global_step % self.interval:
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
