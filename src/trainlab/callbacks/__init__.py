"""Lightning callbacks, one per module."""

from trainlab.callbacks.diagnostics import Diagnostics
from trainlab.callbacks.epoch_seed import SeedEveryEpoch
from trainlab.callbacks.grad_clip import GradientClipping
from trainlab.callbacks.lr_schedule import LRSchedule
from trainlab.callbacks.optuna_pruning import OptunaPruning
from trainlab.callbacks.preemption import PreemptionCheckpoint
from trainlab.callbacks.run_clock import RunClock

__all__ = ["Diagnostics", "GradientClipping", "LRSchedule", "OptunaPruning", "PreemptionCheckpoint",
           "RunClock", "SeedEveryEpoch"]
