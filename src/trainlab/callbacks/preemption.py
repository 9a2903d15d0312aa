"""Stop at a step boundary when the job is told to stop (SIGTERM, Ctrl-C, SLURM's pre-timeout
SIGUSR1), save ``last.ckpt`` there, and requeue the SLURM job when its time is running out."""

from __future__ import annotations

import logging
import signal
import subprocess
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import SIGTERMException
from typing_extensions import override

from trainlab import stop_signals
from trainlab.stop_signals import slurm_job_id

log = logging.getLogger(__name__)


class PreemptionCheckpoint(pl.Callback):
    """Turn a stop signal into a checkpoint at the next step boundary, on every rank together.

    During training the signal handlers only note the signal: SIGTERM (``kill``, SLURM's
    preemption or end of job), SIGINT (Ctrl-C; a second one stops at once) and, in a SLURM job,
    SIGUSR1 (the pre-timeout signal, ``--signal=USR1@<s>``). After the training step in
    progress (with gradient accumulation: after the optimizer step that ends the cycle, since a
    checkpoint holds no accumulated gradients), the ranks agree (any rank's signal stops all),
    write ``<dirpath>/last.ckpt`` and
    stop with ``SIGTERMException``; for SIGUSR1, rank 0 first runs ``scontrol requeue``, and the
    requeued job resumes from that checkpoint. ``python train.py resume=<run dir>`` continues
    any other stop exactly. Nothing is saved inside a signal handler, so a checkpoint never
    holds half a step and no collective runs out of order. These handlers replace Lightning's
    own (its SLURM auto-requeue and SIGTERM handling) during training only.

    Args:
        dirpath: checkpoint directory (the ModelCheckpoint's).
    """

    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)
        self.signal_name: str | None = None  # the signal that stopped the run
        self._previous: dict[int, Any] = {}

    def _signals(self) -> list[int]:
        extra = [signal.SIGUSR1] if slurm_job_id() else []
        return [signal.SIGTERM, signal.SIGINT, *extra]

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if threading.current_thread() is threading.main_thread():  # handlers live in the main thread
            self._previous = {s: signal.signal(s, self._note) for s in self._signals()}
        if stop_signals.NOTED and self.signal_name is None:  # arrived while the job started
            self.signal_name = stop_signals.NOTED[0]

    def _note(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and self.signal_name == "SIGINT":
            raise KeyboardInterrupt  # Ctrl-C twice: stop now
        if self.signal_name is None:
            self.signal_name = signal.Signals(signum).name
            log.warning("%s: stopping after this step and saving %s", self.signal_name,
                        self.dirpath / "last.ckpt")

    @override
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        # every rank asks every step (one tiny all-reduce under DDP), so all stop at this step
        if not trainer.strategy.reduce_boolean_decision(self.signal_name is not None, all=False):
            return
        self.signal_name = self.signal_name or "SIGTERM"  # another rank's signal
        if not ends_accumulation(trainer, batch_idx):
            return  # a checkpoint holds no gradients: stop once this cycle's optimizer step is taken
        path = self.dirpath / "last.ckpt"
        trainer.save_checkpoint(path)
        log.warning("%s: saved %s at epoch %d step %d", self.signal_name, path,
                    trainer.current_epoch, trainer.global_step)
        if self.signal_name == "SIGUSR1" and trainer.is_global_zero:
            job = slurm_job_id()
            done = subprocess.run(["scontrol", "requeue", str(job)], capture_output=True, text=True)
            log.warning("SLURM job %s requeued (it resumes from %s)%s", job, path,
                        "" if done.returncode == 0 else f": scontrol failed: {done.stderr.strip()}")
        self._restore()
        raise SIGTERMException

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore()

    @override
    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                     exception: BaseException) -> None:
        self._restore()

    def _restore(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for signum, handler in self._previous.items():
                signal.signal(signum, handler)
        self._previous = {}


def ends_accumulation(trainer: pl.Trainer, batch_idx: int) -> bool:
    """Whether training batch ``batch_idx`` of the epoch ends a gradient-accumulation cycle, so the
    optimizer has just stepped (Lightning's rule: every ``accumulate_grad_batches`` batches of the
    epoch, and the epoch's last batch)."""
    done = batch_idx + 1
    return done % trainer.accumulate_grad_batches == 0 or done == trainer.num_training_batches
