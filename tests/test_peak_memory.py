"""PeakMemory: the peak RSS of a fit, reset per fit so trials of one multirun do not share it."""

from __future__ import annotations

import sys

import pytest
import pytorch_lightning as pl
import torch
from tiny import tiny_datamodule, tiny_model, tiny_trainer

from trainlab.callbacks.peak_memory import PeakMemory, current_rss_mib, peak_rss_mib, reset_peak_rss

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc (Linux)")
BLOCK_MIB = 128


def touched_block(mib: int) -> torch.Tensor:
    """A tensor of ``mib`` MiB whose pages are all written (so they count in the RSS)."""
    return torch.ones(mib * 1024 * 1024 // 8, dtype=torch.float64)


@linux_only
def test_reset_brings_the_peak_down_to_the_current_rss():
    block = touched_block(BLOCK_MIB)
    del block
    assert peak_rss_mib() >= current_rss_mib() + BLOCK_MIB * 0.9  # freed, still the peak
    assert reset_peak_rss()
    assert peak_rss_mib() == pytest.approx(current_rss_mib(), abs=8.0)


class Allocate(pl.Callback):
    """Hold a touched block of memory during the first training batch of the fit."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 0 and trainer.current_epoch == 0:
            touched_block(BLOCK_MIB).sum()


@linux_only
def test_callback_logs_the_growth_of_the_fit(tmp_path):
    touched_block(2 * BLOCK_MIB).sum()  # an earlier, larger peak that must not count
    trainer = tiny_trainer(tmp_path, max_epochs=2, callbacks=[PeakMemory(), Allocate()])
    trainer.fit(tiny_model(), datamodule=tiny_datamodule())
    metrics = trainer.callback_metrics
    growth, peak = float(metrics["memory/rss_growth_mb"]), float(metrics["memory/peak_rss_mb"])
    assert BLOCK_MIB * 0.9 <= growth < 2 * BLOCK_MIB
    assert peak >= growth
    assert "memory/cuda_peak_mb" not in metrics  # CPU run
