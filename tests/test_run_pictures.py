"""Every run can be judged on its own: macro-F1, per-class accuracy and the confusion matrix of
its test split, its learning curves as pictures, and where its numbers come from."""

from __future__ import annotations

import subprocess

import pytest
import torch
from sklearn.metrics import f1_score
from tiny import tiny_datamodule, tiny_model, tiny_trainer

from trainlab.provenance import provenance
from trainlab.run_pictures import CONFUSION, CURVES, epoch_curves, write_run_pictures

PNG = b"\x89PNG"


def test_test_metrics_match_the_predictions(tmp_path):
    trainer = tiny_trainer(tmp_path, max_epochs=2)
    model, data = tiny_model(), tiny_datamodule()
    trainer.fit(model, datamodule=data)
    logged = trainer.test(model, datamodule=data, verbose=False)[0]
    x, y = data.splits["test"]
    with torch.no_grad():
        pred = model.eval()(data.to_model_input(x)).argmax(1)
    matrix = model.confusion
    assert matrix.sum().item() == len(y)
    assert torch.equal(matrix, torch.stack([torch.bincount(pred[y == k], minlength=2) for k in (0, 1)]))
    assert logged["test/f1_macro"] == pytest.approx(f1_score(y, pred, average="macro"), abs=1e-6)
    for k in (0, 1):
        assert logged[f"test/acc_class{k}"] == pytest.approx((pred[y == k] == k).float().mean().item())


def test_curves_and_confusion_pictures_are_written(tmp_path):
    (tmp_path / "csv" / "version_0").mkdir(parents=True)
    (tmp_path / "csv" / "version_0" / "metrics.csv").write_text(
        "epoch,step,train/loss,train/acc,val/loss,val/acc\n0,9,,,0.9,0.6\n0,9,1.2,0.5,,\n"
        "1,19,,,0.7,0.8\n1,19,0.8,0.7,,\n")
    assert epoch_curves(tmp_path) == {"train/loss": {0: 1.2, 1: 0.8}, "val/loss": {0: 0.9, 1: 0.7},
                                      "train/acc": {0: 0.5, 1: 0.7}, "val/acc": {0: 0.6, 1: 0.8}}
    written = write_run_pictures(tmp_path, torch.tensor([[5, 1], [2, 7]]))
    assert [p.name for p in written] == [CURVES, CONFUSION]
    assert all(p.read_bytes().startswith(PNG) and p.stat().st_size > 5000 for p in written)
    assert write_run_pictures(tmp_path / "empty", None) == []


def test_provenance_names_this_checkout_and_the_libraries():
    origin = provenance()
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert origin["provenance/git_commit"] == head and isinstance(origin["provenance/git_dirty"], bool)
    assert origin["provenance/torch"] == torch.__version__.split("+")[0]
    assert origin["provenance/device"]
