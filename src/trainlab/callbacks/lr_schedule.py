"""Learning-rate decay as a callback that owns the torch scheduler and steps it with the optimizer."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.cli import LRSchedulerCallable
from torch.optim.lr_scheduler import LinearLR, LRScheduler, ReduceLROnPlateau, SequentialLR
from typing_extensions import override

from trainlab.errors import ConfigError

INTERVALS = ("epoch", "step")


class LRSchedule(pl.Callback):
    """Build a torch LR scheduler on the run's optimizer, step it, log the LR, checkpoint it.

    ``interval: step`` steps the scheduler once per *optimizer* step (``trainer.global_step``
    counts them), so gradient accumulation, ``max_steps`` and a resume in the middle of an
    accumulation cycle all see the schedule the optimizer sees, as Lightning's own
    ``lr_scheduler_configs`` would.

    A scheduler Lightning itself steps takes over the LR: ``weight_averaging=swa`` (Lightning's
    ``StochasticWeightAveraging``) installs SWALR in ``trainer.lr_scheduler_configs`` at its
    ``swa_epoch_start``, and from then on this callback no longer steps its own.

    Args:
        scheduler: factory completed with the optimizer (a Hydra ``_partial_`` or LightningCLI's
            ``LRSchedulerCallable``), e.g. ``partial(StepLR, step_size=3, gamma=0.1)``. If it
            takes ``total_steps`` (OneCycleLR) and leaves it unset, the number of scheduler
            steps of the whole run is filled in.
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
            raise ConfigError(f"callbacks.lr_schedule.interval must be one of {INTERVALS}, got {interval!r}")
        if not isinstance(warmup, int) or warmup < 0:
            raise ConfigError(f"callbacks.lr_schedule.warmup must be an integer >= 0, got {warmup!r}")
        if not 0 < warmup_start_factor <= 1:
            raise ConfigError("callbacks.lr_schedule.warmup_start_factor must be in (0, 1], "
                              f"got {warmup_start_factor}")
        self.factory, self.interval = scheduler, interval
        self.warmup, self.warmup_start_factor = warmup, warmup_start_factor
        self.monitor = monitor
        self.fills_total_steps = _leaves_total_steps_unset(scheduler)
        self.plateau = isinstance(self._probe(), ReduceLROnPlateau)
        if self.plateau and not monitor:
            raise ConfigError("callbacks.lr_schedule.monitor must name a metric (e.g. val/loss) "
                              "for ReduceLROnPlateau")
        if self.plateau and warmup:
            raise ConfigError("callbacks.lr_schedule.warmup is not supported with ReduceLROnPlateau; "
                              "set warmup=0")
        self.scheduler: LRScheduler | ReduceLROnPlateau | None = None
        self._pending_state: dict | None = None
        self._stepped = 0  # scheduler steps taken: optimizer steps done, up to the last one
        self._total = 0  # intervals in the run

    def _probe(self) -> LRScheduler | ReduceLROnPlateau:
        """The scheduler built on a throwaway optimizer: its arguments are checked before training."""
        probe = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        try:
            return self.build(probe, total_steps=self.warmup + 1)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"callbacks.lr_schedule.scheduler: {err}") from None

    def build(self, optimizer: torch.optim.Optimizer, total_steps: int | None = None):
        """Create the scheduler (with warmup in front) for ``optimizer``."""
        kwargs = {}
        if total_steps is not None and self.fills_total_steps:
            kwargs["total_steps"] = total_steps - self.warmup
        main = self.factory(optimizer, **kwargs)
        if self.warmup:
            ramp = LinearLR(optimizer, start_factor=self.warmup_start_factor, total_iters=self.warmup)
            return SequentialLR(optimizer, [ramp, main], milestones=[self.warmup])
        return main

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        optimizer = trainer.optimizers[0]
        # a resumed run's optimizer arrives restored (lr, momentum...); building a scheduler
        # rewrites its groups, so keep them and put them back once the scheduler is restored
        restored = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
        total = int(trainer.estimated_stepping_batches) if self.interval == "step" else trainer.max_epochs
        self.scheduler = self.build(optimizer, total)
        self._stepped, self._total = trainer.global_step, total
        if self._pending_state is not None:  # resumed: continue where the checkpoint stopped
            self.scheduler.load_state_dict(self._pending_state)
            for group, saved in zip(optimizer.param_groups, restored, strict=True):
                group.update(saved)
            self._pending_state = None

    @staticmethod
    def handed_over(trainer: pl.Trainer) -> bool:
        """Whether a scheduler of Lightning's own now sets the LR (SWA's SWALR)."""
        return bool(trainer.lr_scheduler_configs)

    def _log_lr(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        lr = trainer.optimizers[0].param_groups[0]["lr"]
        pl_module.log("train/lr", lr, on_step=self.interval == "step",
                      on_epoch=self.interval == "epoch")

    @override
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if self.interval != "step" or self.plateau or self.handed_over(trainer):
            return
        # one scheduler step per optimizer step (none inside an accumulation cycle), and none
        # after the run's last one: that LR would never be used, and OneCycleLR would leave its
        # range (a negative LR) or refuse
        target = min(trainer.global_step, self._total - 1)
        if self._stepped >= target:
            return
        while self._stepped < target:
            self.scheduler.step()
            self._stepped += 1
        if trainer.global_step % trainer.log_every_n_steps == 0:
            self._log_lr(trainer, pl_module)

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.interval != "epoch" and not self.plateau:
            return
        if not self.handed_over(trainer):
            self._step_epoch(trainer)
        self._log_lr(trainer, pl_module)

    def _step_epoch(self, trainer: pl.Trainer) -> None:
        if self.plateau:
            value = trainer.callback_metrics.get(self.monitor)
            if value is None:
                raise KeyError(f"callbacks.lr_schedule.monitor={self.monitor!r} was not logged; logged: "
                               f"{sorted(trainer.callback_metrics)}")
            self.scheduler.step(float(value))
        else:
            self.scheduler.step()

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"scheduler": self.scheduler.state_dict()} if self.scheduler is not None else {}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending_state = state_dict.get("scheduler")


def _leaves_total_steps_unset(factory: Callable) -> bool:
    """Whether ``factory`` takes ``total_steps`` and leaves it None (OneCycleLR without it).

    Read from the partial's public ``keywords`` (LightningCLI's factories list every argument
    there) or else from the factory's signature (Hydra's ``functools.partial(cls, ...)``).
    """
    keywords = getattr(factory, "keywords", None) or {}
    if "total_steps" in keywords:
        return keywords["total_steps"] is None
    try:
        param = inspect.signature(factory).parameters.get("total_steps")
    except (TypeError, ValueError):
        return False
    return param is not None and param.default is None
