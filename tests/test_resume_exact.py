"""A run stopped at any step inside an epoch and resumed from that checkpoint ends exactly as
the uninterrupted run: same weights, same epoch metrics (resumable loader + RNG states)."""

from __future__ import annotations

import os
import signal
from functools import partial

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.exceptions import SIGTERMException
from tiny import tiny_datamodule, tiny_trainer

from trainlab.augment import Compose, Flip, GaussianNoise
from trainlab.callbacks import PreemptionCheckpoint, SeedEveryEpoch
from trainlab.models import MLP, Classifier

EPOCHS = 3
COMPARED = ("val/acc", "val/loss", "train/acc", "train/loss")


def model() -> Classifier:
    torch.manual_seed(0)
    net = MLP([1, 4, 4], 2, hidden=(16, 16), dropout=0.3, dropout_where="all")
    return Classifier(net, partial(torch.optim.SGD, lr=0.1, momentum=0.9), num_classes=2,
                      input_shape=[1, 4, 4])


def data():
    return tiny_datamodule(augment=Compose([Flip(p=0.5), GaussianNoise(std=0.05)]))


class Interrupt(pl.Callback):
    """Stop after training batch ``batch`` of epoch ``epoch``: by saving a checkpoint there and
    stopping, or by a real SIGTERM (Lightning stops after the batch, PreemptionCheckpoint saves)."""

    def __init__(self, epoch: int, batch: int, how: str, path) -> None:
        self.at, self.how, self.path = (epoch, batch), how, path

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if (trainer.current_epoch, batch_idx) != self.at:
            return
        if self.how == "sigterm":
            os.kill(os.getpid(), signal.SIGTERM)
        else:
            trainer.save_checkpoint(self.path)
            trainer.should_stop = True


def run(tmp_path, *callbacks, ckpt_path=None, **trainer_kwargs):
    trainer = tiny_trainer(tmp_path, max_epochs=EPOCHS, callbacks=[SeedEveryEpoch(7), *callbacks],
                           **trainer_kwargs)
    module = model()
    trainer.fit(module, datamodule=data(), ckpt_path=ckpt_path, weights_only=True)
    return trainer, module


@pytest.mark.parametrize("how", ["save_at_batch_end", "sigterm"])
@pytest.mark.parametrize("at", [(0, 1), (1, 2)])
def test_resume_from_inside_an_epoch_ends_as_the_uninterrupted_run(tmp_path, how, at):
    straight, expected = run(tmp_path / "a")
    ckpt = tmp_path / "b" / "last.ckpt"
    stop = Interrupt(*at, how=how, path=ckpt)
    if how == "sigterm":
        with pytest.raises(SIGTERMException):
            run(tmp_path / "b", stop, PreemptionCheckpoint(str(ckpt.parent)))
    else:
        run(tmp_path / "b", stop)
    resumed, got = run(tmp_path / "c", ckpt_path=ckpt)
    assert resumed.global_step == straight.global_step == EPOCHS * 5
    for (name, a), (_, b) in zip(expected.state_dict().items(), got.state_dict().items(), strict=True):
        assert torch.equal(a, b), name  # weights, BN statistics: bit for bit
    for key in COMPARED:
        assert resumed.callback_metrics[key].item() == straight.callback_metrics[key].item(), key


@pytest.mark.parametrize("accumulate", [2, 3])
def test_a_sigterm_inside_an_accumulation_cycle_resumes_to_the_same_weights(tmp_path, accumulate):
    """SIGTERM after batch 0 of epoch 1: the stop waits for the optimizer step that ends the
    cycle (a checkpoint holds no accumulated gradients), so the resumed run loses nothing."""
    def fit(root, *callbacks, ckpt_path=None):
        return run(root, *callbacks, ckpt_path=ckpt_path, accumulate_grad_batches=accumulate)

    straight, expected = fit(tmp_path / "a")
    ckpt = tmp_path / "b" / "last.ckpt"
    with pytest.raises(SIGTERMException):
        fit(tmp_path / "b", Interrupt(1, 0, how="sigterm", path=ckpt), PreemptionCheckpoint(str(ckpt.parent)))
    saved = torch.load(ckpt, weights_only=True)
    (loader,) = saved["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert loader["batches_done"] == accumulate  # stopped at the end of the cycle, inside the epoch
    resumed, got = fit(tmp_path / "c", ckpt_path=ckpt)
    assert resumed.global_step == straight.global_step
    for (name, a), (_, b) in zip(expected.state_dict().items(), got.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_a_float64_run_resumes_to_the_same_weights(tmp_path):
    """Lightning restores the weights before it converts the module to float64: the classifier
    converts itself first, so no weight passes through float32."""
    _, expected = run(tmp_path / "a", precision="64-true")
    ckpt = tmp_path / "b" / "last.ckpt"
    run(tmp_path / "b", Interrupt(1, 2, how="save_at_batch_end", path=ckpt), precision="64-true")
    _, got = run(tmp_path / "c", ckpt_path=ckpt, precision="64-true")
    for (name, a), (_, b) in zip(expected.state_dict().items(), got.state_dict().items(), strict=True):
        assert a.dtype == b.dtype and torch.equal(a, b), name
