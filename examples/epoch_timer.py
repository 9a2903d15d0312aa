"""A callback: log each training epoch's wall time as ``time/epoch_s``.

Recipe 5 of docs/EXTENDING.md. Its YAML is ``examples/conf/callbacks/epoch_timer.yaml``.
"""

from __future__ import annotations

import time

import pytorch_lightning as pl
from typing_extensions import override


class EpochTimer(pl.Callback):
    """Seconds from the start to the end of every training epoch, in the logs and results.json."""

    def __init__(self) -> None:
        self.start = 0.0

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.start = time.perf_counter()

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pl_module.log("time/epoch_s", time.perf_counter() - self.start, on_epoch=True)
