"""The per-step savings of the training loop keep Lightning's behaviour (their speed is in
scripts/bench.py and BENCHMARKS.md)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from pytorch_lightning.callbacks import RichProgressBar
from pytorch_lightning.profilers import SimpleProfiler
from tiny import tiny_datamodule, tiny_model, tiny_trainer
from torch import nn

from trainlab.callbacks import progress
from trainlab.callbacks.progress import ProgressBar
from trainlab.pipeline import build
from trainlab.profiler import NoProfiler


def test_no_profiler_unless_one_is_asked_for(cfg_factory):
    _, _, trainer = build(cfg_factory("data=digits"))
    assert isinstance(trainer.profiler, NoProfiler)
    assert trainer.profiler.profile("a") is trainer.profiler.profile("b")  # one shared context
    _, _, trainer = build(cfg_factory("data=digits", "trainer.profiler=simple"))
    assert isinstance(trainer.profiler, SimpleProfiler)


def test_a_progress_bar_exactly_when_the_callback_is_configured(cfg_factory):
    _, _, trainer = build(cfg_factory("data=digits"))
    assert isinstance(trainer.progress_bar_callback, ProgressBar)
    _, _, trainer = build(cfg_factory("data=digits", "callbacks.progress_bar=null"))
    assert trainer.progress_bar_callback is None  # Lightning would add its own bar


def test_progress_bar_updates_at_most_refresh_rate_per_second_and_after_the_last_batch(
        monkeypatch):
    updated = []
    monkeypatch.setattr(RichProgressBar, "on_train_batch_end",
                        lambda self, trainer, module, outputs, batch, i: updated.append(i))
    clock = iter([0.0, 0.05, 0.11, 0.15, 0.30, 0.31])  # seconds, one per batch
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    bar = ProgressBar(refresh_rate=10)
    bar._trainer = SimpleNamespace(num_training_batches=6, max_epochs=1, max_steps=-1)
    for i in range(6):
        bar.on_train_batch_end(bar._trainer, None, None, None, i)
    assert updated == [0, 2, 4, 5]


def test_module_attributes_still_register_beside_the_hook_name_shortcut():
    model = tiny_model()
    model._current_fx_name = "training_step"
    assert model._current_fx_name == "training_step" and "_current_fx_name" not in model._modules
    model.extra = nn.Linear(2, 2)
    model.scale = nn.Parameter(torch.ones(1))
    assert "extra" in model._modules and "scale" in model._parameters


def test_lightning_gradient_clipping_still_clips(tmp_path):
    # SGD with lr 1 and no momentum: the weights move by exactly the clipped gradient
    model = tiny_model(lr=1.0)
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    trainer = tiny_trainer(tmp_path, max_epochs=1, max_steps=1, gradient_clip_val=1e-3)
    trainer.fit(model, datamodule=tiny_datamodule())
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert torch.linalg.vector_norm(after - before).item() == pytest.approx(1e-3, rel=1e-3)


def test_batches_already_on_the_device_are_not_walked_again():
    datamodule = tiny_datamodule()
    batch = (torch.zeros(2, 1, 4, 4), torch.zeros(2, dtype=torch.long))
    assert datamodule.transfer_batch_to_device(batch, torch.device("cpu"), 0) is batch
    mixed = [torch.zeros(2), "label"]  # not all tensors: Lightning's own transfer
    assert datamodule.transfer_batch_to_device(mixed, torch.device("cpu"), 0) == mixed
