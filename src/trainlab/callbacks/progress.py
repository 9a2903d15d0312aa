"""Rich progress bar that updates only as often as it redraws."""

from __future__ import annotations

import time

from pytorch_lightning.callbacks import RichProgressBar
from typing_extensions import override


class ProgressBar(RichProgressBar):
    """Lightning's ``RichProgressBar``, updated after a training batch at most ``refresh_rate``
    times a second (as often as it redraws) and after the epoch's last batch.

    Lightning's bar updates after every batch: it advances the rich task, merges the logged
    metrics into a dict and calls ``.item()`` on each tensor, about 0.1 ms per step on the
    benchmark machine (BENCHMARKS.md) and a host-device sync per step on a GPU.

    Args:
        refresh_rate: redraws per second (0 hides the bar).
        leave: keep each finished epoch's bar on screen.
        **kwargs: the rest of ``RichProgressBar``'s arguments.
    """

    def __init__(self, refresh_rate: int = 10, leave: bool = False, **kwargs) -> None:
        super().__init__(refresh_rate=refresh_rate, leave=leave, **kwargs)
        self._updated_at = float("-inf")

    @override
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        now = time.monotonic()
        last = batch_idx + 1 >= self.total_train_batches
        if last or now - self._updated_at >= 1.0 / max(self.refresh_rate, 1):
            self._updated_at = now
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
