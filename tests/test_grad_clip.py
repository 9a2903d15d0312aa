"""Gradient clipping is Lightning's own, called by the grad_clip callback; the norm it saw is
logged, and the Trainer's clipping keys are refused beside it."""

from __future__ import annotations

import re

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.plugins import MixedPrecision
from tiny import tiny_datamodule, tiny_model, tiny_trainer

from trainlab.callbacks import GradientClipping
from trainlab.errors import ConfigError
from trainlab.pipeline import build
from trainlab.validate import validate


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
    """Gradients before clipping (listed before GradientClipping, its hook runs first)."""

    def on_train_start(self, trainer, pl_module) -> None:
        pass

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        norm, max_abs = grad_stats(pl_module)
        self.norms.append(norm)
        self.max_abs.append(max_abs)


def fit_clipped(tmp_path, value: float, algorithm: str, epochs: int = 2, **trainer_kwargs):
    before, after = PreClipProbe(), GradProbe()
    trainer = tiny_trainer(tmp_path, max_epochs=epochs,
                           callbacks=[before, GradientClipping(value, algorithm), after], **trainer_kwargs)
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
    trainer = tiny_trainer(tmp_path, max_epochs=1, max_steps=1, callbacks=[GradientClipping(1e-3)])
    trainer.fit(model, datamodule=tiny_datamodule())
    moved = torch.cat([p.detach().flatten() for p in model.parameters()]) - start
    assert torch.linalg.vector_norm(moved).item() == pytest.approx(1e-3, rel=1e-3)


def test_16_mixed_gradients_are_unscaled_before_the_callback_clips_them(tmp_path):
    """Lightning's MixedPrecision plugin (what trainer.precision=16-mixed builds on a GPU, here
    with a CPU GradScaler) unscales before on_before_optimizer_step: the callback clips the true
    gradients, so the step uses norm exactly 0.1, not 0.1 / scale."""
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 8)  # low enough not to overflow fp16
    trainer, before, after = fit_clipped(tmp_path, 0.1, "norm",
                                         plugins=[MixedPrecision("16-mixed", "cpu", scaler=scaler)])
    assert scaler.get_scale() == 2.0 ** 8  # the loss was scaled, and no step was skipped
    assert len(after.norms) == len(before.norms) == 10
    clipped = [a for b, a in zip(before.norms, after.norms, strict=True) if b > 0.1]
    assert clipped and all(n == pytest.approx(0.1, rel=1e-4) for n in clipped)
    assert all(b < 2 for b in before.norms)  # unscaled: a scaled norm would be ~256 times larger
    logged = trainer.callback_metrics
    assert logged["grad/norm_pre_clip"].item() == pytest.approx(before.norms[-1], rel=1e-5)
    assert logged["grad/norm_post_clip"].item() == pytest.approx(after.norms[-1], rel=1e-5)


def test_without_the_callback_lightning_clips_nothing_and_logs_no_norm(tmp_path):
    """trainer.gradient_clip_val=None: Lightning's own configure_gradient_clipping does nothing."""
    before, after = PreClipProbe(), GradProbe()
    trainer = tiny_trainer(tmp_path, max_epochs=1, callbacks=[before, after])
    trainer.fit(tiny_model(lr=5.0), datamodule=tiny_datamodule())
    assert max(before.norms) > 0.1
    assert before.norms == after.norms
    assert "grad/norm_pre_clip" not in trainer.callback_metrics


def clip_callbacks(trainer: pl.Trainer) -> list[GradientClipping]:
    return [c for c in trainer.callbacks if isinstance(c, GradientClipping)]


@pytest.mark.parametrize(("option", "value", "algorithm"), [("norm", 0.1, "norm"), ("value", 0.01, "value")])
def test_the_grad_clip_group_adds_the_callback_and_leaves_the_trainers_keys_unset(cfg_factory, option,
                                                                               value, algorithm):
    _, _, trainer = build(cfg_factory("data=digits", f"grad_clip={option}"))
    (clip,) = clip_callbacks(trainer)
    assert (clip.gradient_clip_val, clip.gradient_clip_algorithm) == (value, algorithm)
    assert (trainer.gradient_clip_val, trainer.gradient_clip_algorithm) == (None, None)
    _, _, trainer = build(cfg_factory("data=digits", f"grad_clip={option}",
                                      "callbacks.grad_clip.gradient_clip_val=0.5"))
    assert clip_callbacks(trainer)[0].gradient_clip_val == 0.5  # the command line wins


def test_grad_clip_none_adds_no_callback(cfg_factory):
    cfg = cfg_factory("data=digits", "grad_clip=none")
    assert cfg.callbacks.grad_clip is None
    _, _, trainer = build(cfg)
    assert clip_callbacks(trainer) == [] and trainer.gradient_clip_val is None


@pytest.mark.parametrize("option", ["norm", "value"])
@pytest.mark.parametrize("override", ["trainer.gradient_clip_val=0.5",
                                      "trainer.gradient_clip_algorithm=norm"])
def test_the_trainers_clipping_beside_the_callback_is_refused_naming_both_keys(cfg_factory, option,
                                                                               override):
    key, value = override.split("=")
    cfg = cfg_factory("data=digits", f"grad_clip={option}", override)
    message = (rf"^{re.escape(key)}=.*{value}.* is set beside callbacks.grad_clip: .*"
               rf"it is the callback's .*; set {re.escape(key)}=null$")
    with pytest.raises(ConfigError, match=message):
        validate(cfg)
    with pytest.raises(ConfigError, match=message):
        build(cfg)


def test_the_pair_is_refused_before_training_without_the_hydra_config(tmp_path):
    """A Trainer built by hand (or by LightningCLI) is checked by the callback's setup."""
    model = tiny_model()
    start = [p.detach().clone() for p in model.parameters()]
    trainer = tiny_trainer(tmp_path, max_epochs=1, callbacks=[GradientClipping(0.1)], gradient_clip_val=0.1)
    with pytest.raises(ConfigError, match=r"^trainer.gradient_clip_val=0.1 is set beside callbacks"):
        trainer.fit(model, datamodule=tiny_datamodule())
    assert trainer.global_step == 0
    assert all(torch.equal(a, b) for a, b in zip(start, model.parameters(), strict=True))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"gradient_clip_val": 0.0}, "callbacks.grad_clip.gradient_clip_val must be a number > 0, got 0.0"),
    ({"gradient_clip_val": True}, "callbacks.grad_clip.gradient_clip_val must be a number > 0, got True"),
    ({"gradient_clip_val": 0.1, "gradient_clip_algorithm": "l2"},
     "callbacks.grad_clip.gradient_clip_algorithm must be 'norm' or 'value', got 'l2'"),
])
def test_a_bad_clipping_setting_is_refused_with_its_key(kwargs, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        GradientClipping(**kwargs)


def test_a_bad_algorithm_in_the_config_is_refused_before_anything_is_built(cfg_factory):
    cfg = cfg_factory("data=digits", "grad_clip=norm", "callbacks.grad_clip.gradient_clip_algorithm=l2")
    with pytest.raises(ConfigError, match=r"callbacks.grad_clip.gradient_clip_algorithm='l2' is not "
                                          r"allowed: one of 'norm', 'value'"):
        validate(cfg)
