"""Save a checkpoint when the job is told to stop (SIGTERM, SLURM's pre-timeout signal)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import SIGTERMException
from typing_extensions import override

log = logging.getLogger(__name__)


class PreemptionCheckpoint(pl.Callback):
    """On SIGTERM write ``<dirpath>/last.ckpt`` (atomically, as every Lightning save) so that
    ``python train.py resume=<run dir>`` continues. SLURM's SIGUSR1 is handled by Lightning's
    SLURM environment (``auto_requeue``), which checkpoints and requeues the same job.

    Args:
        dirpath: checkpoint directory (the ModelCheckpoint's).
    """

    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)

    @override
    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                     exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException):
            path = self.dirpath / "last.ckpt"
            trainer.save_checkpoint(path)
            log.warning("SIGTERM: saved %s at epoch %d step %d; continue with resume=%s", path,
                        trainer.current_epoch, trainer.global_step, self.dirpath.parent)
