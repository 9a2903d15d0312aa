"""The generalization gap is measured on the tested weights in eval mode, not from the running
training accuracy (dropout and augmentation on)."""

from __future__ import annotations

import pytest
import torch

from trainlab.generalization_gap import add_gaps
from trainlab.pipeline import build, fit_and_test


def test_the_gap_is_the_tested_weights_on_the_training_split_in_eval_mode(cfg_factory):
    cfg = cfg_factory("data=digits", "net=mlp", "model.net.dropout=0.5", "model.net.dropout_where=all",
                      "augmentation=gaussian_noise", "trainer.max_epochs=3", "callbacks.progress_bar=null",
                      "model.tta_flip=true")
    datamodule, model, trainer = build(cfg)
    results = fit_and_test(cfg, datamodule, model, trainer, None)
    x, y = datamodule.splits["train"]
    n = len(datamodule.splits["test"][0])  # as many training images as the test split has
    model.eval()
    with torch.no_grad():  # by hand: the tested weights, eval mode, the test's views, no noise
        logits = model._eval_logits(datamodule.to_model_input(x[:n]))
    assert results["train_eval/acc"] == pytest.approx((logits.argmax(1) == y[:n]).float().mean().item(),
                                                      abs=1e-6)
    assert results["train_eval/loss"] == pytest.approx(
        torch.nn.functional.cross_entropy(logits, y[:n]).item(), rel=1e-5)
    assert results["gap/acc"] == results["train_eval/acc"] - results["test/acc"]
    assert results["gap/loss"] == results["test/loss"] - results["train_eval/loss"]
    # the running mean, as trained with dropout 0.5 and noise, is another number
    assert results["train/acc"] < results["train_eval/acc"]


def test_gaps_need_both_sides():
    assert add_gaps({"train/acc": 0.9, "test/acc": 0.8}) == {"train/acc": 0.9, "test/acc": 0.8}
    assert add_gaps({"train_eval/acc": 0.9, "test/acc": 0.8})["gap/acc"] == pytest.approx(0.1)
