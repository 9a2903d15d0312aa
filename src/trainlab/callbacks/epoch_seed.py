"""Reseed every RNG at the start of each epoch, so any epoch can be replayed on its own."""

from __future__ import annotations

import pytorch_lightning as pl
from typing_extensions import override


class SeedEveryEpoch(pl.Callback):
    """Seed torch/numpy/random with ``seed + 1000 * epoch + rank`` at each training epoch start.

    Lightning checkpoints do not hold RNG states; with this, dropout masks and augmentation of
    epoch ``e`` depend only on ``(seed, e, rank)``, so a run resumed from an epoch-end checkpoint
    replays exactly what an uninterrupted run would.

    Args:
        seed: the run's seed.
    """

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pl.seed_everything(self.seed + 1000 * trainer.current_epoch + trainer.global_rank,
                           workers=False, verbose=False)
