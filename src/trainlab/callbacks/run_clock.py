"""The wall time of a run over all its attempts (the first, then each resume or requeue)."""

from __future__ import annotations

import time
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.trainer.states import TrainerFn
from typing_extensions import override

CHECKPOINT_KEY = "trainlab_wall_s"


class RunClock(pl.Callback):
    """Carries the seconds a run has spent so far in its checkpoints, so that ``wall_s`` in
    ``results.json`` counts every attempt up to the checkpoint it resumed from, plus this one.
    Work done after an attempt's last checkpoint (lost to a ``kill -9``) is not counted.

    The clock starts when the callback is built, before the data is read.
    """

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.earlier_s = 0.0  # the earlier attempts', from the checkpoint resumed from

    def elapsed_s(self) -> float:
        """Seconds of every attempt up to now."""
        return self.earlier_s + time.perf_counter() - self.started

    @override
    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = self.elapsed_s()

    @override
    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        if trainer.state.fn == TrainerFn.FITTING:  # a resume; testing a checkpoint is no attempt
            self.earlier_s = float(checkpoint.get(CHECKPOINT_KEY, 0.0))
