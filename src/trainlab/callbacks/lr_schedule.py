"""Learning-rate decay as a callback that owns the torch scheduler."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.cli import LRSchedulerCallable
from torch.optim.lr_scheduler import LinearLR, LRScheduler, ReduceLROnPlateau, SequentialLR
from typing_extensions import override

INTERVALS = ("epoch", "step")


class LRSchedule(pl.Callback):
    """Build a torch LR scheduler on the run's optimizer, step it, log the LR, checkpoint it.

    Args:
        scheduler: factory completed with the optimizer (a Hydra ``_partial_``), e.g.
            ``partial(StepLR, step_size=3, gamma=0.1)``. If the scheduler takes
            ``total_steps`` (OneCycleLR) and it is not given, the Trainer's number of
            scheduler steps is filled in.
        interval: ``epoch`` (step after every training epoch) or ``step`` (after every
            optimizer step).
        warmup: number of intervals of linear warmup from ``warmup_start_factor * lr`` in front
            of the scheduler (0 = none).
        warmup_start_factor: LR multiplier at the first warmup interval, in (0, 1].
        monitor: metric for ReduceLROnPlateau (e.g. ``val/loss``), read after validation.
    """

    def __init__(self, scheduler: LRSchedulerCallable, interval: str = "epoch", warmup: int = 0,
                 warmup_start_factor: float = 0.1, monitor: str | None = None) -> None:
        if interval not in INTERVALS:
            raise ValueError(f"callbacks.lr_schedule.interval must be one of {INTERVALS}, got {interval!r}")
        if not isinstance(warmup, int) or warmup < 0:
            raise ValueError(f"callbacks.lr_schedule.warmup must be an integer >= 0, got {warmup!r}")
        if not 0 < warmup_start_factor <= 1:
            raise ValueError("callbacks.lr_schedule.warmup_start_factor must be in (0, 1], "
                             f"got {warmup_start_factor}")
        self.factory, self.interval = scheduler, interval
        self.warmup, self.warmup_start_factor = warmup, warmup_start_factor
        self.monitor = monitor
        self.plateau = _target_is(scheduler, ReduceLROnPlateau)
        if self.plateau and not monitor:
            raise ValueError("callbacks.lr_schedule.monitor must name a metric (e.g. val/loss) "
                             "for ReduceLROnPlateau")
        if self.plateau and warmup:
            raise ValueError("callbacks.lr_schedule.warmup is not supported with ReduceLROnPlateau; "
                             "set warmup=0")
        self.scheduler: LRScheduler | ReduceLROnPlateau | None = None
        self._pending_state: dict | None = None

    def build(self, optimizer: torch.optim.Optimizer, total_steps: int | None = None):
        """Create the scheduler (with warmup in front) for ``optimizer``."""
        kwargs = {}
        if total_steps is not None and "total_steps" in _parameters(self.factory) \
                and getattr(self.factory, "keywords", {}).get("total_steps") is None:
            kwargs["total_steps"] = total_steps - self.warmup
        main = self.factory(optimizer, **kwargs)
        if self.warmup:
            ramp = LinearLR(optimizer, start_factor=self.warmup_start_factor, total_iters=self.warmup)
            return SequentialLR(optimizer, [ramp, main], milestones=[self.warmup])
        return main

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        optimizer = trainer.optimizers[0]
        total = int(trainer.estimated_stepping_batches) if self.interval == "step" else trainer.max_epochs
        self.scheduler = self.build(optimizer, total)
        if self._pending_state is not None:  # resumed: continue where the checkpoint stopped
            self.scheduler.load_state_dict(self._pending_state)
            for group, lr in zip(optimizer.param_groups, self._last_lrs(), strict=True):
                group["lr"] = lr
            self._pending_state = None

    def _last_lrs(self) -> list[float]:
        if isinstance(self.scheduler, ReduceLROnPlateau):
            return list(self.scheduler._last_lr)
        return list(self.scheduler.get_last_lr())

    def _log_lr(self, pl_module: pl.LightningModule) -> None:
        pl_module.log("train/lr", self._last_lrs()[0], on_step=self.interval == "step",
                      on_epoch=self.interval == "epoch")

    @override
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if self.interval == "step" and not self.plateau and outputs is not None:
            if trainer.global_step >= trainer.estimated_stepping_batches:
                return  # the run is over: one more step would leave the schedule's range
            self.scheduler.step()
            if trainer.global_step % trainer.log_every_n_steps == 0:
                self._log_lr(pl_module)

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.interval != "epoch" and not self.plateau:
            return
        if self.plateau:
            value = trainer.callback_metrics.get(self.monitor)
            if value is None:
                raise KeyError(f"callbacks.lr_schedule.monitor={self.monitor!r} was not logged; logged: "
                               f"{sorted(trainer.callback_metrics)}")
            self.scheduler.step(float(value))
        else:
            self.scheduler.step()
        self._log_lr(pl_module)

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"scheduler": self.scheduler.state_dict()} if self.scheduler is not None else {}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending_state = state_dict.get("scheduler")


def _target(factory: Callable) -> Callable:
    """What a scheduler factory builds: ``partial(cls, ...)`` from Hydra, or jsonargparse's
    ``partial(call_without_instantiate_context, instantiator, cls, ...)`` from LightningCLI."""
    if isinstance(factory, functools.partial):
        return next((a for a in (factory.func, *factory.args) if isinstance(a, type)), factory.func)
    return factory


def _parameters(factory: Callable) -> set[str]:
    try:
        return set(inspect.signature(_target(factory)).parameters)
    except (TypeError, ValueError):
        return set()


def _target_is(factory: Callable, cls: type) -> bool:
    target = _target(factory)
    return isinstance(target, type) and issubclass(target, cls)
