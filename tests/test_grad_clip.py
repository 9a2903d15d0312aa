"""Gradient clipping bounds the gradients and reports the norm it saw."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from tiny import tiny_datamodule, tiny_model, tiny_trainer

from trainlab.callbacks import GradClip


class GradProbe(pl.Callback):
    """Records gradients after every other callback's on_before_optimizer_step."""

    def __init__(self) -> None:
        self.norms: list[float] = []
        self.max_abs: list[float] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
        self.norms.append(torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads])).item())
        self.max_abs.append(max(g.abs().max().item() for g in grads))


class PreClipProbe(GradProbe):
    pass


def fit_with(tmp_path, clip: GradClip) -> tuple[GradProbe, GradProbe]:
    before, after = PreClipProbe(), GradProbe()
    trainer = tiny_trainer(tmp_path, max_epochs=2, callbacks=[before, clip, after])
    trainer.fit(tiny_model(lr=5.0), datamodule=tiny_datamodule())  # a high LR: large gradients
    return before, after


def test_norm_clipping_bounds_total_norm_and_logs_pre_clip_norm(tmp_path):
    clip = GradClip(mode="norm", max_norm=0.1)
    before, after = fit_with(tmp_path, clip)
    assert max(before.norms) > 0.1  # clipping had something to do
    assert all(n <= 0.1 + 1e-6 for n in after.norms)
    assert clip.last_pre.item() == pytest.approx(before.norms[-1], rel=1e-5)
    assert clip.last_post.item() == pytest.approx(after.norms[-1], rel=1e-5)


def test_value_clipping_bounds_every_element(tmp_path):
    before, after = fit_with(tmp_path, GradClip(mode="value", clip_value=0.01))
    assert max(before.max_abs) > 0.01
    assert all(m <= 0.01 + 1e-9 for m in after.max_abs)


def test_logged_norms_match(tmp_path):
    clip = GradClip(mode="norm", max_norm=0.05)
    trainer = tiny_trainer(tmp_path, max_epochs=1, callbacks=[clip])
    trainer.fit(tiny_model(lr=5.0), datamodule=tiny_datamodule())
    logged = trainer.callback_metrics
    assert logged["grad/norm_pre_clip"].item() == pytest.approx(clip.last_pre.item())
    assert logged["grad/norm_post_clip"].item() <= 0.05 + 1e-6


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"mode": "norm", "max_norm": 0.0}, "callbacks.grad_clip.max_norm must be > 0, got 0.0"),
    ({"mode": "norm", "max_norm": -1}, "callbacks.grad_clip.max_norm must be > 0, got -1"),
    ({"mode": "value", "clip_value": None}, "callbacks.grad_clip.clip_value must be > 0, got None"),
    ({"mode": "both", "max_norm": 1.0}, "callbacks.grad_clip.mode must be one of"),
])
def test_bad_arguments_name_the_key(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GradClip(**kwargs)
