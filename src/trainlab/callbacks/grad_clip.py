"""Gradient clipping as a callback: Lightning's own clipping, with the norm it saw logged."""

from __future__ import annotations

from typing import Literal

import pytorch_lightning as pl
import torch
from typing_extensions import override

from trainlab.errors import ConfigError

# Lightning's Trainer keys for the same thing: set beside this callback they would clip twice
# (or, with another value, stop the first step with Lightning's MisconfigurationException)
TRAINER_KEYS = ("gradient_clip_val", "gradient_clip_algorithm")


def grad_norm(optimizer: torch.optim.Optimizer) -> torch.Tensor:
    """Total 2-norm of the gradients of ``optimizer``'s parameters (what norm clipping bounds)."""
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    return torch.nn.utils.get_total_norm(grads).detach() if grads else torch.zeros(())


def refuse_trainer_clipping(gradient_clip_val: object, gradient_clip_algorithm: object) -> None:
    """Raise :class:`ConfigError` if the Trainer's own clipping keys (given as set, None = unset)
    are set beside the callback."""
    for key, value in zip(TRAINER_KEYS, (gradient_clip_val, gradient_clip_algorithm), strict=True):
        if value is not None:
            raise ConfigError(
                f"trainer.{key}={value!r} is set beside callbacks.grad_clip: both are gradient "
                f"clipping, and it is the callback's (grad_clip=norm|value, or "
                f"callbacks.grad_clip.{key}), which also logs grad/norm_pre_clip and "
                f"grad/norm_post_clip; set trainer.{key}=null")


class GradientClipping(pl.Callback):
    """Clip the gradients before every optimizer step with Lightning's own
    ``LightningModule.clip_gradients``, and log their total 2-norm before and after as
    ``grad/norm_pre_clip`` and ``grad/norm_post_clip`` every ``trainer.log_every_n_steps`` steps.

    Lightning does the clipping: its precision plugin has unscaled ``16-mixed`` gradients
    before ``on_before_optimizer_step`` runs, and clips the way its strategy needs. The hook
    runs once per optimizer step, after gradient accumulation. Callbacks listed after this one
    see the clipped gradients in their own ``on_before_optimizer_step``, those before it (the
    default ``diagnostics``) the gradients as computed.

    This is the run's one clipping setting: the Trainer's ``gradient_clip_val`` and
    ``gradient_clip_algorithm`` are refused beside it.

    Args:
        gradient_clip_val: the bound: of the total 2-norm of all gradients (``norm``), or of
            every gradient element's absolute value (``value``).
        gradient_clip_algorithm: ``norm`` (``torch.nn.utils.clip_grad_norm_``: rescale all
            gradients together, keeping their direction) or ``value``
            (``torch.nn.utils.clip_grad_value_``: clamp each element).
    """

    def __init__(self, gradient_clip_val: float,
                 gradient_clip_algorithm: Literal["norm", "value"] = "norm") -> None:
        value_ok = isinstance(gradient_clip_val, (int, float)) and not isinstance(gradient_clip_val, bool)
        if not (value_ok and gradient_clip_val > 0):
            raise ConfigError(f"callbacks.grad_clip.gradient_clip_val must be a number > 0, got "
                              f"{gradient_clip_val!r}; grad_clip=none switches clipping off")
        if gradient_clip_algorithm not in ("norm", "value"):
            raise ConfigError(f"callbacks.grad_clip.gradient_clip_algorithm must be 'norm' or 'value', "
                              f"got {gradient_clip_algorithm!r}")
        self.gradient_clip_val = float(gradient_clip_val)
        self.gradient_clip_algorithm = gradient_clip_algorithm

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # trainlab.validate refuses the pair in a Hydra config; this, a Trainer built otherwise
        # (LightningCLI, a script)
        algorithm = trainer.gradient_clip_algorithm  # Lightning's enum: its value, as the user wrote it
        refuse_trainer_clipping(trainer.gradient_clip_val, algorithm and algorithm.value)

    @override
    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                                 optimizer: torch.optim.Optimizer) -> None:
        watch = trainer.global_step % trainer.log_every_n_steps == 0
        if watch:
            pl_module.log("grad/norm_pre_clip", grad_norm(optimizer), on_step=True, on_epoch=False)
        pl_module.clip_gradients(optimizer, gradient_clip_val=self.gradient_clip_val,
                                 gradient_clip_algorithm=self.gradient_clip_algorithm)
        if watch:
            pl_module.log("grad/norm_post_clip", grad_norm(optimizer), on_step=True, on_epoch=False)
