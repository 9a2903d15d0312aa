"""Learning-rate decay as a callback that owns the torch scheduler and steps it with the optimizer."""

from __future__ import annotations

import inspect
import logging
import math
import warnings
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.cli import LRSchedulerCallable
from torch.optim.lr_scheduler import LinearLR, LRScheduler, ReduceLROnPlateau, SequentialLR
from typing_extensions import override

from trainlab.errors import ConfigError

log = logging.getLogger(__name__)

INTERVALS = ("epoch", "step")
# a scheduler's length (OneCycleLR's, CosineAnnealingLR's): filled in from the Trainer when unset
HORIZON_ARGS = ("total_steps", "T_max")


class LRSchedule(pl.Callback):
    """Build a torch LR scheduler on the run's optimizer, step it, log the LR, checkpoint it.

    ``interval: step`` steps the scheduler once per *optimizer* step (``trainer.global_step``
    counts them), so gradient accumulation, ``max_steps`` and a resume in the middle of an
    accumulation cycle all see the schedule the optimizer sees, as Lightning's own
    ``lr_scheduler_configs`` would.

    The run's length in intervals comes from the steps the Trainer will take
    (``trainer.estimated_stepping_batches``: ``max_epochs``, ``max_steps`` and
    ``accumulate_grad_batches`` together). A resume that trains for longer (a raised
    ``trainer.max_epochs``/``max_steps``) re-plans the schedule for the new length: each later
    step gets the LR that a run planned for that length from the start gives it.

    ``train/lr`` is the LR an optimizer step used: logged at the steps the logger writes, and
    at each epoch's end as the LR of its last step (so ``results.json`` holds the last step's).

    A scheduler Lightning itself steps takes over the LR: ``weight_averaging=swa`` (Lightning's
    ``StochasticWeightAveraging``) installs SWALR in ``trainer.lr_scheduler_configs`` at its
    ``swa_epoch_start``, and from then on this callback no longer steps its own.

    Args:
        scheduler: factory completed with the optimizer (a Hydra ``_partial_`` or LightningCLI's
            ``LRSchedulerCallable``), e.g. ``partial(StepLR, step_size=3, gamma=0.1)``. If it
            takes a length (:data:`HORIZON_ARGS`: OneCycleLR's ``total_steps``,
            CosineAnnealingLR's ``T_max``) and leaves it unset, the run's intervals after the
            warmup are filled in.
        interval: ``epoch`` (step after every training epoch) or ``step`` (after every
            optimizer step).
        warmup: number of intervals of linear warmup from ``warmup_start_factor * lr`` in front
            of the scheduler (0 = none).
        warmup_start_factor: LR multiplier at the first warmup interval, in (0, 1].
        monitor: metric for ReduceLROnPlateau (e.g. ``val/loss``), read after validation; only
            ``scheduler=plateau`` reads it.
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
        self.horizon_arg = horizon_argument(scheduler)
        probe = self._probe()
        self.name = type(probe).__name__  # the torch scheduler's class, for messages
        self.plateau = isinstance(probe, ReduceLROnPlateau)
        if self.plateau and not monitor:
            raise ConfigError("callbacks.lr_schedule.monitor must name a metric (e.g. val/loss) "
                              "for ReduceLROnPlateau")
        if monitor is not None and not self.plateau:
            raise ConfigError(f"callbacks.lr_schedule.monitor={monitor!r} is not read by "
                              f"{self.name}: only scheduler=plateau (ReduceLROnPlateau) "
                              "reads it; set callbacks.lr_schedule.monitor=null")
        if self.plateau and warmup:
            raise ConfigError("callbacks.lr_schedule.warmup is not supported with ReduceLROnPlateau; "
                              "set warmup=0")
        self.scheduler: LRScheduler | ReduceLROnPlateau | None = None
        self._pending_state: dict | None = None
        self._stepped = 0  # scheduler steps taken: optimizer steps done, up to the last one
        self._total: int | None = None  # intervals in the run (None: no bound)
        self._last_lr: float | None = None  # the LR the latest optimizer step used

    def _probe(self) -> LRScheduler | ReduceLROnPlateau:
        """The scheduler built on a throwaway optimizer: its arguments are checked before training."""
        probe = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        try:
            return self.build(probe, total_steps=self.warmup + 1)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"callbacks.lr_schedule.scheduler: {err}") from None

    def build(self, optimizer: torch.optim.Optimizer, total_steps: int | None = None):
        """Create the scheduler (with warmup in front) for ``optimizer``.

        Args:
            optimizer: the optimizer whose LR the scheduler sets.
            total_steps: the run's intervals (warmup included); fills the factory's unset
                length (:data:`HORIZON_ARGS`), if it has one.
        """
        kwargs = {}
        if total_steps is not None and self.horizon_arg:
            kwargs[self.horizon_arg] = total_steps - self.warmup
        main = self.factory(optimizer, **kwargs)
        if self.warmup:
            ramp = LinearLR(optimizer, start_factor=self.warmup_start_factor, total_iters=self.warmup)
            return SequentialLR(optimizer, [ramp, main], milestones=[self.warmup])
        return main

    def _plan(self, optimizer: torch.optim.Optimizer, total: int | None):
        """:meth:`build` for the run; a length the scheduler cannot be planned over stops it."""
        try:
            return self.build(optimizer, total)
        except (ValueError, ZeroDivisionError) as err:  # OneCycleLR's phases shorter than a step
            raise ConfigError(f"callbacks.lr_schedule.scheduler: {self.name} cannot be planned over the "
                              f"run's {total} {self.interval}s ({err}); train for longer or set "
                              "callbacks.lr_schedule.interval=step") from None

    def planned_intervals(self, trainer: pl.Trainer) -> int | None:
        """The run's length in intervals, from the optimizer steps the Trainer will take."""
        return run_intervals(self.interval, trainer.estimated_stepping_batches,
                             trainer.num_training_batches, trainer.accumulate_grad_batches)

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        optimizer = trainer.optimizers[0]
        total = self.planned_intervals(trainer)
        if self.horizon_arg and (total is None or total <= self.warmup):
            raise ConfigError(f"callbacks.lr_schedule: {self.name}'s {self.horizon_arg} is the run's "
                              f"{self.interval}s after warmup={self.warmup}, but the run takes "
                              f"{'no bounded number of' if total is None else total} "
                              f"{self.interval}s; set trainer.max_epochs or trainer.max_steps, or "
                              f"callbacks.lr_schedule.scheduler.{self.horizon_arg}")
        state, self._pending_state = self._pending_state, None
        if state is None:
            self.scheduler = self._plan(optimizer, total)
        elif self.plateau or state.get("intervals", -1) == total:
            self._restore(optimizer, state, total)
        else:
            self._replan(trainer, state, total)
        self._stepped, self._total = trainer.global_step, total

    def _restore(self, optimizer: torch.optim.Optimizer, state: dict[str, Any], total: int | None) -> None:
        """Continue the checkpoint's scheduler where it stopped (the run's length is unchanged)."""
        # a resumed run's optimizer arrives restored (lr, momentum...); building a scheduler
        # rewrites its groups, so keep them and put them back once the scheduler is restored
        restored = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
        self.scheduler = self._plan(optimizer, total)
        self.scheduler.load_state_dict(state["scheduler"])
        for group, saved in zip(optimizer.param_groups, restored, strict=True):
            group.update(saved)

    def _replan(self, trainer: pl.Trainer, state: dict[str, Any], total: int | None) -> None:
        """Plan the schedule for this run's length and move it to where the checkpoint stopped.

        The plan is built as a fresh run builds it and stepped once per epoch done
        (``interval: epoch``) or optimizer step done (``interval: step``, up to the run's last
        step), so each later step's LR is that of a run planned for ``total`` from the start
        (timm re-plans on ``--epochs`` likewise). Not for ReduceLROnPlateau: its state follows
        the metric, not the length.
        """
        optimizer = trainer.optimizers[0]
        for group in optimizer.param_groups:  # the LR the first plan started from
            group["lr"] = group.get("initial_lr", group["lr"])
        self.scheduler = self._plan(optimizer, total)
        done = trainer.current_epoch if self.interval == "epoch" else trainer.global_step
        if total is not None:
            done = min(done, total - 1)
        with warnings.catch_warnings():  # stepped before this process's first optimizer step
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)`")
            for _ in range(done):
                self.scheduler.step()
        log.info("LR schedule re-planned for the run's new horizon: %s -> %s %ss; it continues "
                 "at %s %d", state.get("intervals", "unrecorded"),
                 "unbounded" if total is None else total, self.interval, self.interval, done)

    @staticmethod
    def handed_over(trainer: pl.Trainer) -> bool:
        """Whether a scheduler of Lightning's own now sets the LR (SWA's SWALR)."""
        return bool(trainer.lr_scheduler_configs)

    @override
    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                                 optimizer: torch.optim.Optimizer) -> None:
        self._last_lr = optimizer.param_groups[0]["lr"]
        # a self.log call took 0.3-1 ms on 2 busy cores, a share of a small step worth saving:
        # log at the steps the logger writes (log_every_n_steps divides the step count after
        # the step); the epoch's end logs its last step's LR for results.json
        every = trainer.log_every_n_steps
        if trainer.loggers and every and (trainer.global_step + 1) % every == 0:
            pl_module.log("train/lr", self._last_lr, on_step=True, on_epoch=False)

    @override
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if self.interval != "step" or self.plateau or self.handed_over(trainer):
            return
        # one scheduler step per optimizer step (none inside an accumulation cycle), and none
        # after the run's last one: that LR would never be used, and OneCycleLR would leave its
        # range (a negative LR) or refuse
        target = trainer.global_step if self._total is None else min(trainer.global_step, self._total - 1)
        while self._stepped < target:
            self.scheduler.step()
            self._stepped += 1

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._last_lr is not None:  # the LR of the epoch's last step, for results.json
            pl_module.log("train/lr", self._last_lr, on_step=False, on_epoch=True)
        if (self.interval == "epoch" or self.plateau) and not self.handed_over(trainer):
            self._step_epoch(trainer)

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
        if self.scheduler is None:
            return {}
        return {"scheduler": self.scheduler.state_dict(), "intervals": self._total}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending_state = state_dict if state_dict.get("scheduler") is not None else None


def run_intervals(interval: str, optimizer_steps: float, batches_per_epoch: float,
                  accumulate: int) -> int | None:
    """How many scheduler intervals a run takes; None where nothing bounds it.

    Args:
        interval: ``step`` (the run's optimizer steps) or ``epoch`` (the epochs they span, the
            last one perhaps cut short by ``max_steps``).
        optimizer_steps: the run's optimizer steps (``trainer.estimated_stepping_batches``:
            ``max_epochs``, ``max_steps`` and accumulation together; inf when unbounded).
        batches_per_epoch: training batches in an epoch (``trainer.num_training_batches``).
        accumulate: batches per optimizer step; an epoch's last batch steps too.
    """
    if math.isinf(optimizer_steps) or optimizer_steps < 0:
        return None
    if interval == "step":
        return int(optimizer_steps)
    if math.isinf(batches_per_epoch):
        return None
    per_epoch = max(math.ceil(batches_per_epoch / accumulate), 1)
    return math.ceil(optimizer_steps / per_epoch)


def horizon_argument(factory: Callable) -> str | None:
    """The length argument of :data:`HORIZON_ARGS` that ``factory`` takes and leaves unset.

    Read from the partial's public ``keywords`` (LightningCLI's factories list every argument
    there; a value there is the user's fixed length, None is unset) or else from the factory's
    signature (Hydra's ``functools.partial(cls, ...)``): a parameter without a value
    (CosineAnnealingLR's ``T_max``) or with None (OneCycleLR's ``total_steps``).
    """
    keywords = getattr(factory, "keywords", None) or {}
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    for name in HORIZON_ARGS:
        if name in keywords:
            if keywords[name] is None:
                return name
            continue
        param = params.get(name)
        if param is not None and (param.default is None or param.default is inspect.Parameter.empty):
            return name
    return None
