"""Lightning callbacks, one per module."""

from trainlab.callbacks.epoch_seed import SeedEveryEpoch
from trainlab.callbacks.grad_clip import GradClip
from trainlab.callbacks.lr_schedule import LRSchedule

__all__ = ["GradClip", "LRSchedule", "SeedEveryEpoch"]
