"""A stop signal becomes a checkpoint at the next step boundary; SLURM's pre-timeout signal also
requeues the job (and leaves no checkpoint of its own behind)."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.exceptions import SIGTERMException
from tiny import tiny_datamodule, tiny_model, tiny_trainer

from trainlab import stop_signals
from trainlab.callbacks import PreemptionCheckpoint, RunClock
from trainlab.callbacks import preemption as module


def test_the_requeue_id_of_a_job_and_of_an_array_task():
    assert stop_signals.slurm_job_id({"SLURM_JOB_ID": "41"}) == "41"
    assert stop_signals.slurm_job_id({"SLURM_JOB_ID": "41", "SLURM_ARRAY_JOB_ID": "40",
                                "SLURM_ARRAY_TASK_ID": "3"}) == "40_3"
    assert stop_signals.slurm_job_id({}) is None


class Signal(pl.Callback):
    def __init__(self, signum: int, at: int) -> None:
        self.signum, self.at = signum, at

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.at:
            os.kill(os.getpid(), self.signum)


def test_slurms_pre_timeout_signal_saves_and_requeues(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "1234")
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    calls = []
    monkeypatch.setattr(module.subprocess, "run", lambda cmd, **kw: calls.append(cmd) or
                        subprocess.CompletedProcess(cmd, 0, "", ""))
    stop = PreemptionCheckpoint(str(tmp_path / "checkpoints"))
    trainer = tiny_trainer(tmp_path, max_epochs=5, callbacks=[Signal(signal.SIGUSR1, at=7), stop])
    with pytest.raises(SIGTERMException):
        trainer.fit(tiny_model(), datamodule=tiny_datamodule())
    assert stop.signal_name == "SIGUSR1" and trainer.global_step == 7  # the step in progress ended
    assert calls == [["scontrol", "requeue", "1234"]]
    assert sorted(p.name for p in tmp_path.rglob("*.ckpt")) == ["last.ckpt"]  # no hpc_ckpt_*
    assert signal.getsignal(signal.SIGUSR1) is not stop._note  # handlers given back


def test_without_a_signal_nothing_is_saved_and_handlers_are_given_back(tmp_path):
    before = signal.getsignal(signal.SIGINT)
    stop = PreemptionCheckpoint(str(tmp_path / "checkpoints"))
    tiny_trainer(tmp_path, max_epochs=1, callbacks=[stop]).fit(tiny_model(), datamodule=tiny_datamodule())
    assert stop.signal_name is None and not list(tmp_path.rglob("*.ckpt"))
    assert signal.getsignal(signal.SIGINT) is before


def test_the_run_clock_carries_earlier_attempts_through_a_checkpoint(tmp_path):
    clock = RunClock()
    trainer = tiny_trainer(tmp_path, max_epochs=1, callbacks=[clock])
    trainer.fit(tiny_model(), datamodule=tiny_datamodule())
    trainer.save_checkpoint(tmp_path / "a.ckpt")
    saved = torch.load(tmp_path / "a.ckpt", weights_only=True)["trainlab_wall_s"]
    assert 0 < saved <= clock.elapsed_s()
    again = RunClock()
    resumed = tiny_trainer(tmp_path, max_epochs=2, callbacks=[again])
    resumed.fit(tiny_model(), datamodule=tiny_datamodule(), ckpt_path=tmp_path / "a.ckpt", weights_only=True)
    assert again.earlier_s == saved and again.elapsed_s() > saved
    fresh = RunClock()
    tested = tiny_trainer(tmp_path, max_epochs=1, callbacks=[fresh])
    tested.test(tiny_model(), datamodule=tiny_datamodule(), ckpt_path=tmp_path / "a.ckpt", weights_only=True)
    assert fresh.earlier_s == 0.0  # testing a checkpoint is not an earlier attempt of this run


def test_a_pre_timeout_signal_while_the_job_starts_is_acted_on_after_the_first_step(tmp_path,
                                                                                   monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "99")
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    monkeypatch.setattr(stop_signals, "NOTED", [])
    calls = []
    monkeypatch.setattr(module.subprocess, "run", lambda cmd, **kw: calls.append(cmd) or
                        subprocess.CompletedProcess(cmd, 0, "", ""))
    before = signal.getsignal(signal.SIGUSR1)
    try:
        stop_signals.note_early()
        os.kill(os.getpid(), signal.SIGUSR1)  # before training: noted, the process lives on
        trainer = tiny_trainer(tmp_path, max_epochs=5,
                               callbacks=[PreemptionCheckpoint(str(tmp_path / "checkpoints"))])
        with pytest.raises(SIGTERMException):
            trainer.fit(tiny_model(), datamodule=tiny_datamodule())
    finally:
        signal.signal(signal.SIGUSR1, before)
    assert trainer.global_step == 1 and calls == [["scontrol", "requeue", "99"]]
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
