"""weight_averaging=ema|swa and early_stopping=val_loss|val_acc are Lightning's own callbacks:
the averages are exactly what they claim, the tested and checkpointed weights are the average,
a resumed run ends as the uninterrupted one, and early stopping stops."""

from __future__ import annotations

import math

import pytest
import torch
from pytorch_lightning.callbacks import EarlyStopping, EMAWeightAveraging, StochasticWeightAveraging
from test_resume_exact import Interrupt, data, model
from tiny import LRRecorder, tiny_datamodule, tiny_model, tiny_trainer

from trainlab.callbacks import LRSchedule, SeedEveryEpoch
from trainlab.errors import ConfigError
from trainlab.pipeline import build, fit_and_test
from trainlab.validate import validate


class WeightRecorder:
    """A copy of the network's parameters at each optimizer step or epoch start."""

    def __init__(self):
        import pytorch_lightning as pl

        recorder = self

        class Hook(pl.Callback):
            def on_train_batch_end(self, trainer, pl_module, *args):
                recorder.steps.append([p.detach().clone() for p in pl_module.net.parameters()])

            def on_train_epoch_start(self, trainer, pl_module):
                recorder.epochs.append([p.detach().clone() for p in pl_module.net.parameters()])

        self.steps: list[list[torch.Tensor]] = []
        self.epochs: list[list[torch.Tensor]] = []
        self.callback = Hook()


def test_ema_ends_holding_the_exponential_average_of_every_step(tmp_path):
    decay = 0.9
    recorder = WeightRecorder()
    module = tiny_model()
    trainer = tiny_trainer(tmp_path, max_epochs=2,
                           callbacks=[recorder.callback, EMAWeightAveraging(decay=decay)])
    trainer.fit(module, datamodule=tiny_datamodule())
    expected = [w.clone() for w in recorder.steps[0]]  # the first update copies the weights
    for weights in recorder.steps[1:]:
        for avg, w in zip(expected, weights, strict=True):
            avg.mul_(decay).add_(w, alpha=1 - decay)
    assert len(recorder.steps) == trainer.global_step == 10
    for got, want, last in zip(module.net.parameters(), expected, recorder.steps[-1], strict=True):
        torch.testing.assert_close(got.detach(), want)
        assert not torch.allclose(got.detach(), last)  # the average, not the last step's weights


def test_swa_averages_the_epoch_start_weights_at_its_own_lr(tmp_path):
    """From swa_epoch_start (1-based) on, the LR is swa_lrs (LRSchedule hands over to SWALR)
    and the run ends with the equal average of the weights at each of those epochs' start."""
    from functools import partial

    recorder, lrs = WeightRecorder(), LRRecorder()
    cosine = LRSchedule(partial(torch.optim.lr_scheduler.CosineAnnealingLR, T_max=4))
    swa = StochasticWeightAveraging(swa_lrs=0.03, swa_epoch_start=3, annealing_epochs=1,
                                    device=None)
    module = tiny_model(lr=0.1)
    trainer = tiny_trainer(tmp_path, max_epochs=4, callbacks=[recorder.callback, cosine, swa, lrs])
    trainer.fit(module, datamodule=tiny_datamodule())
    cosine_lrs = [0.1 * (1 + math.cos(math.pi * epoch / 4)) / 2 for epoch in range(4)]
    assert lrs.by_epoch[:3] == pytest.approx(cosine_lrs[:3])  # epoch 3 starts SWALR's annealing
    assert lrs.by_epoch[3] == pytest.approx(0.03) != pytest.approx(cosine_lrs[3])  # SWALR's LR
    averaged = recorder.epochs[2:]  # the starts of epochs 3 and 4 (1-based)
    for i, got in enumerate(module.net.parameters()):
        torch.testing.assert_close(got.detach(), sum(w[i] for w in averaged) / len(averaged))


def test_an_ema_run_resumed_inside_an_epoch_ends_as_the_uninterrupted_one(tmp_path):
    def run(path, *callbacks, ckpt_path=None):
        # the stop comes after the step's average update, as trainlab's PreemptionCheckpoint does
        trainer = tiny_trainer(path, max_epochs=3, callbacks=[SeedEveryEpoch(7), EMAWeightAveraging(
            decay=0.8), *callbacks])
        module = model()
        trainer.fit(module, datamodule=data(), ckpt_path=ckpt_path, weights_only=True)
        return module

    expected = run(tmp_path / "a")
    ckpt = tmp_path / "b" / "last.ckpt"
    run(tmp_path / "b", Interrupt(1, 2, how="save", path=ckpt))
    saved = torch.load(ckpt, weights_only=True)
    assert "current_model_state" in saved  # the trained weights travel beside the average
    got = run(tmp_path / "c", ckpt_path=ckpt)
    for (name, a), (_, b) in zip(expected.state_dict().items(), got.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_the_run_tests_the_averaged_weights_of_its_best_checkpoint(cfg_factory):
    cfg = cfg_factory("data=digits", "net=mlp", "weight_averaging=ema",
                      "callbacks.weight_averaging.decay=0.9", "trainer.max_epochs=2")
    datamodule, module, trainer = build(cfg)
    assert any(isinstance(c, EMAWeightAveraging) for c in trainer.callbacks)
    results = fit_and_test(cfg, datamodule, module, trainer, None)
    best = torch.load(trainer.checkpoint_callback.best_model_path, weights_only=True)
    assert results["tested_checkpoint"].startswith("best-")
    state = module.state_dict()
    assert all(torch.equal(state[k], v) for k, v in best["state_dict"].items())  # the average
    assert any(not torch.equal(state[k], v) for k, v in best["current_model_state"].items())


# min_delta above any possible improvement: the loss is below ln(10) = 2.3, an accuracy below 1
@pytest.mark.parametrize("option, monitor, mode, min_delta", [("val_loss", "val/loss", "min", 2.5),
                                                              ("val_acc", "val/acc", "max", 1.0)])
def test_early_stopping_is_lightnings_and_stops_the_run(cfg_factory, option, monitor, mode, min_delta):
    cfg = cfg_factory("data=digits", "net=mlp", f"early_stopping={option}", "trainer.max_epochs=30",
                      "callbacks.early_stopping.patience=1",
                      f"callbacks.early_stopping.min_delta={min_delta}")
    datamodule, module, trainer = build(cfg)
    (stopper,) = [c for c in trainer.callbacks if isinstance(c, EarlyStopping)]
    assert (stopper.monitor, stopper.mode, stopper.patience) == (monitor, mode, 1)
    results = fit_and_test(cfg, datamodule, module, trainer, None)
    # no epoch improves on the first by min_delta: the run stops after its second epoch
    assert results["epoch"] == 2 and stopper.stopped_epoch == 1
    assert results["status"] == "ok" and "test/acc" in results


@pytest.mark.parametrize("override, message", [
    ("callbacks.weight_averaging.decay=1.5", "callbacks.weight_averaging.decay=1.5 is not allowed"),
    ("+callbacks.weight_averaging.decya=0.9", "callbacks.weight_averaging.decya is not a parameter"),
])
def test_a_bad_averaging_key_stops_the_run_naming_it(cfg_factory, override, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        validate(cfg_factory("weight_averaging=ema", override))


def test_a_key_of_a_callback_that_is_off_stops_the_run(cfg_factory):
    cfg = cfg_factory("+callbacks.weight_averaging.decay=0.9")  # weight_averaging=none
    with pytest.raises(ConfigError, match=r"callbacks\.weight_averaging=\{'decay': 0\.9\} is not an "
                                          r"object.*weight_averaging=ema"):
        validate(cfg)
