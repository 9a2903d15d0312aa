"""Lightning callbacks, one per module."""

from trainlab.callbacks.diagnostics import Diagnostics
from trainlab.callbacks.epoch_seed import SeedEveryEpoch
from trainlab.callbacks.grad_clip import GradClip
from trainlab.callbacks.lr_schedule import LRSchedule
from trainlab.callbacks.preemption import PreemptionCheckpoint
from trainlab.callbacks.progress import ProgressBar

__all__ = ["Diagnostics", "GradClip", "LRSchedule", "PreemptionCheckpoint", "ProgressBar",
           "SeedEveryEpoch"]
