"""Gradient clipping is Lightning's (trainer.gradient_clip_val); the norm it saw is logged."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from tiny import tiny_datamodule, tiny_model, tiny_trainer

from trainlab.pipeline import build


def grad_stats(module) -> tuple[float, float]:
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    flat = torch.cat([g.flatten() for g in grads])
    return torch.linalg.vector_norm(flat).item(), flat.abs().max().item()


class GradProbe(pl.Callback):
    """Gradients as the optimizer used them (read right after each of its steps)."""

    def __init__(self) -> None:
        self.norms: list[float] = []
        self.max_abs: list[float] = []

    def on_train_start(self, trainer, pl_module) -> None:
        def record(optimizer, args, kwargs) -> None:
            norm, max_abs = grad_stats(pl_module)
            self.norms.append(norm)
            self.max_abs.append(max_abs)

        trainer.optimizers[0].register_step_post_hook(record)


class PreClipProbe(GradProbe):
    """Gradients before clipping (Lightning clips after on_before_optimizer_step)."""

    def on_train_start(self, trainer, pl_module) -> None:
        pass

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        norm, max_abs = grad_stats(pl_module)
        self.norms.append(norm)
        self.max_abs.append(max_abs)


def fit_clipped(tmp_path, value: float, algorithm: str, epochs: int = 2):
    before, after = PreClipProbe(), GradProbe()
    trainer = tiny_trainer(tmp_path, max_epochs=epochs, callbacks=[before, after],
                           gradient_clip_val=value, gradient_clip_algorithm=algorithm)
    trainer.fit(tiny_model(lr=5.0), datamodule=tiny_datamodule())  # a high LR: large gradients
    return trainer, before, after


def test_norm_clipping_bounds_the_total_norm_and_logs_it_before_and_after(tmp_path):
    trainer, before, after = fit_clipped(tmp_path, 0.1, "norm")
    assert max(before.norms) > 0.1  # clipping had something to do
    assert all(n <= 0.1 + 1e-6 for n in after.norms)
    logged = trainer.callback_metrics  # log_every_n_steps=1: the last step's norms
    assert logged["grad/norm_pre_clip"].item() == pytest.approx(before.norms[-1], rel=1e-5)
    assert logged["grad/norm_post_clip"].item() == pytest.approx(after.norms[-1], rel=1e-5)


def test_value_clipping_bounds_every_element(tmp_path):
    _, before, after = fit_clipped(tmp_path, 0.01, "value")
    assert max(before.max_abs) > 0.01
    assert all(m <= 0.01 + 1e-9 for m in after.max_abs)


def test_sgd_moves_the_weights_by_exactly_the_clipped_gradient(tmp_path):
    model = tiny_model(lr=1.0)  # SGD, lr 1, no momentum: the step is the clipped gradient
    start = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    trainer = tiny_trainer(tmp_path, max_epochs=1, max_steps=1, gradient_clip_val=1e-3)
    trainer.fit(model, datamodule=tiny_datamodule())
    moved = torch.cat([p.detach().flatten() for p in model.parameters()]) - start
    assert torch.linalg.vector_norm(moved).item() == pytest.approx(1e-3, rel=1e-3)


@pytest.mark.parametrize(("option", "value", "algorithm"), [
    ("none", None, None), ("norm", 0.1, "norm"), ("value", 0.01, "value")])
def test_the_grad_clip_group_sets_lightnings_own_keys(cfg_factory, option, value, algorithm):
    _, _, trainer = build(cfg_factory("data=digits", f"grad_clip={option}"))
    assert (trainer.gradient_clip_val, trainer.gradient_clip_algorithm) == (value, algorithm)
    _, _, trainer = build(cfg_factory("data=digits", f"grad_clip={option}",
                                      "trainer.gradient_clip_val=0.5"))
    assert trainer.gradient_clip_val == 0.5  # one key: the command line wins, nothing ignored
