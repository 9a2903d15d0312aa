"""Reseed every RNG at the start of each epoch, and carry the RNG states across a resume taken
inside an epoch, so that a resumed run draws exactly the numbers an uninterrupted one would."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from typing_extensions import override

from trainlab.checkpoint_state import from_every_rank, rng_states, set_rng_states

CHECKPOINT_KEY = "trainlab_rng"


class SeedEveryEpoch(pl.Callback):
    """Seed torch/numpy/random with ``seed + 1000 * epoch + rank`` at each training epoch start,
    and save every rank's RNG states in each checkpoint.

    Lightning checkpoints do not hold RNG states. With this callback, the dropout masks and
    augmentations of epoch ``e`` depend only on ``(seed, e, rank)`` and on the batches before
    them in that epoch. A run resumed from a checkpoint taken inside an epoch gets back every
    rank's RNG states as they were at that step. Together with the resumable loader
    (``trainlab.data.TensorBatchLoader``), it replays exactly what an uninterrupted run would.

    Args:
        seed: the run's seed.
    """

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)
        self.resume: tuple[int, dict[str, Any]] | None = None  # (epoch, this rank's states)

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # resumed inside an epoch, Lightning does not call on_train_epoch_start for its rest:
        # go on with the RNG states of the step the checkpoint was taken at
        if self.resume is not None and self.resume[0] == trainer.current_epoch:
            set_rng_states(self.resume[1])
        self.resume = None

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pl.seed_everything(self.seed + 1000 * trainer.current_epoch + trainer.global_rank,
                           workers=False, verbose=False)

    @override
    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = {"epoch": trainer.current_epoch,
                                      "ranks": from_every_rank(rng_states(), trainer.world_size)}

    @override
    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get(CHECKPOINT_KEY)
        if saved and trainer.global_rank < len(saved["ranks"]):
            self.resume = (saved["epoch"], saved["ranks"][trainer.global_rank])
