"""Gradient clipping as a callback that also reports the norm it clipped."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from typing_extensions import override

MODES = ("norm", "value")


def grad_norm(parameters, norm_type: float = 2.0) -> torch.Tensor:
    """Total gradient norm over all parameters that have a gradient (as clip_grad_norm_ sees it)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(g.detach(), norm_type) for g in grads]), norm_type)


class GradClip(pl.Callback):
    """Clip gradients before every optimizer step (after AMP unscaling) and log their norm.

    Args:
        mode: ``norm`` (rescale so the total ``norm_type`` norm is at most ``max_norm``; the
            notes clip at 0.1) or ``value`` (clamp every element to ``[-clip_value, clip_value]``).
        max_norm: threshold of ``norm`` mode, > 0.
        norm_type: p of the p-norm in ``norm`` mode (2 = Euclidean, ``inf`` = max).
        clip_value: threshold of ``value`` mode, > 0.
    """

    def __init__(self, mode: str = "norm", max_norm: float | None = None, norm_type: float = 2.0,
                 clip_value: float | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"callbacks.grad_clip.mode must be one of {MODES}, got {mode!r}")
        if mode == "norm" and not (isinstance(max_norm, (int, float)) and max_norm > 0):
            raise ValueError(f"callbacks.grad_clip.max_norm must be > 0, got {max_norm!r}")
        if mode == "value" and not (isinstance(clip_value, (int, float)) and clip_value > 0):
            raise ValueError(f"callbacks.grad_clip.clip_value must be > 0, got {clip_value!r}")
        if not (float(norm_type) >= 1):
            raise ValueError(f"callbacks.grad_clip.norm_type must be >= 1 or inf, got {norm_type!r}")
        self.mode, self.max_norm, self.clip_value = mode, max_norm, clip_value
        self.norm_type = float(norm_type)
        self.last_pre: torch.Tensor | None = None
        self.last_post: torch.Tensor | None = None

    @override
    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                                 optimizer: torch.optim.Optimizer) -> None:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        if self.mode == "norm":
            pre = torch.nn.utils.clip_grad_norm_(params, self.max_norm, norm_type=self.norm_type)
        else:
            pre = grad_norm(params, self.norm_type)
            torch.nn.utils.clip_grad_value_(params, self.clip_value)
        self.last_pre = pre.detach()
        if trainer.global_step % trainer.log_every_n_steps == 0:
            self.last_post = grad_norm(params, self.norm_type)
            pl_module.log("grad/norm_pre_clip", self.last_pre, on_step=True, on_epoch=False)
            pl_module.log("grad/norm_post_clip", self.last_post, on_step=True, on_epoch=False)
