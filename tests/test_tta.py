"""Test-time flip augmentation (model.tta_flip): mirror-averaged logits in val/test/predict only."""

from __future__ import annotations

import pytest
import torch
from tiny import tiny_datamodule, tiny_model, tiny_trainer

from trainlab.models import MLP, Classifier


def test_tta_logits_are_the_mean_over_the_image_and_its_mirror_and_mirror_invariant():
    model = tiny_model(tta_flip=True).eval()
    x = torch.randn(8, 1, 4, 4)
    with torch.no_grad():
        expected = (model.net(x) + model.net(x.flip(-1))) / 2
        assert torch.allclose(model._eval_logits(x), expected, atol=1e-6)
        assert torch.allclose(model._eval_logits(x.flip(-1)), model._eval_logits(x), atol=1e-6)
        plain = tiny_model(tta_flip=False).eval()
        assert not torch.allclose(plain._eval_logits(x.flip(-1)), plain._eval_logits(x), atol=1e-3)


def test_tta_changes_test_metrics_to_the_averaged_predictions_and_not_training(tmp_path):
    dm = tiny_datamodule()
    model = tiny_model(tta_flip=True)
    trainer = tiny_trainer(tmp_path, max_epochs=1)
    trainer.fit(model, datamodule=dm)
    trained = {k: v.clone() for k, v in model.state_dict().items()}
    metrics = trainer.test(model, datamodule=dm, verbose=False)[0]
    x_uint8, y = dm.splits["test"]
    x = dm.to_model_input(x_uint8)
    with torch.no_grad():
        averaged = (model.net(x) + model.net(x.flip(-1))) / 2
        plain_loss = torch.nn.functional.cross_entropy(model.net(x), y).item()
    tta_acc = (averaged.argmax(1) == y).float().mean().item()
    assert metrics["test/acc"] == pytest.approx(tta_acc, abs=1e-6)
    assert metrics["test/loss"] == pytest.approx(
        torch.nn.functional.cross_entropy(averaged, y).item(), rel=1e-5)
    # training is untouched: the same seed without TTA trains to the same weights
    plain = tiny_model(tta_flip=False)
    tiny_trainer(tmp_path / "plain", max_epochs=1).fit(plain, datamodule=tiny_datamodule())
    assert all(torch.equal(trained[k], v) for k, v in plain.state_dict().items())
    assert metrics["test/loss"] != pytest.approx(plain_loss, rel=1e-3)  # TTA did change the loss


def test_tta_on_non_image_input_is_rejected_naming_the_key():
    with pytest.raises(ValueError, match=r"model.tta_flip=true.*\[13\]"):
        Classifier(MLP([13], 3), torch.optim.SGD, num_classes=3, input_shape=[13], tta_flip=True)


def test_shift_tta_averages_the_image_and_two_diagonal_moves_with_edges_repeated():
    model = tiny_model(tta_shift=1).eval()
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    down_right = torch.tensor([[0, 0, 1, 2], [0, 0, 1, 2], [4, 4, 5, 6], [8, 8, 9, 10.0]])
    up_left = torch.tensor([[5, 6, 7, 7], [9, 10, 11, 11], [13, 14, 15, 15], [13, 14, 15, 15.0]])
    with torch.no_grad():
        views = [x, down_right.view(1, 1, 4, 4), up_left.view(1, 1, 4, 4)]
        expected = sum(model.net(v) for v in views) / 3
        assert torch.allclose(model._eval_logits(x), expected, atol=1e-6)
        both = tiny_model(tta_shift=1, tta_flip=True).eval()
        six = views + [v.flip(-1) for v in views]
        assert torch.allclose(both._eval_logits(x), sum(both.net(v) for v in six) / 6, atol=1e-6)


@pytest.mark.parametrize(("shift", "shape", "message"), [
    (2, [1, 4, 4], r"model.tta_shift must be 0 \(off\) or 1..1 pixels for 4x4 images, got 2"),
    (-1, [1, 4, 4], r"model.tta_shift must be 0 .* got -1"),
    (1, [13], r"model.tta_shift=1 moves images.*\[13\].*set model.tta_shift=0"),
])
def test_bad_shift_tta_is_rejected_naming_the_key(shift, shape, message):
    with pytest.raises(ValueError, match=message):
        Classifier(MLP(shape, 3), torch.optim.SGD, num_classes=3, input_shape=shape, tta_shift=shift)


def test_shift_tta_along_the_axes_averages_the_image_and_four_one_pixel_moves():
    model = tiny_model(tta_shift=1, tta_shift_dirs="axes").eval()
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    down = torch.tensor([[0, 1, 2, 3], [0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11.0]])
    up = torch.tensor([[4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15], [12, 13, 14, 15.0]])
    right = torch.tensor([[0, 0, 1, 2], [4, 4, 5, 6], [8, 8, 9, 10], [12, 12, 13, 14.0]])
    left = torch.tensor([[1, 2, 3, 3], [5, 6, 7, 7], [9, 10, 11, 11], [13, 14, 15, 15.0]])
    with torch.no_grad():
        views = [x] + [v.view(1, 1, 4, 4) for v in (down, up, right, left)]
        assert torch.allclose(model._eval_logits(x), sum(model.net(v) for v in views) / 5, atol=1e-6)
        both = tiny_model(tta_shift=1, tta_shift_dirs="axes", tta_flip=True).eval()
        ten = views + [v.flip(-1) for v in views]
        assert torch.allclose(both._eval_logits(x), sum(both.net(v) for v in ten) / 10, atol=1e-6)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"tta_shift": 1, "tta_shift_dirs": "round"},
     r"model.tta_shift_dirs must be one of \['diagonal', 'axes'\], got 'round'"),
    ({"tta_shift_dirs": "axes"}, r"model.tta_shift_dirs=axes moves the copies .* model.tta_shift is 0: "
                                 r"set model.tta_shift=1"),
])
def test_bad_shift_directions_are_rejected_naming_the_key(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Classifier(MLP([1, 4, 4], 3), torch.optim.SGD, num_classes=3, input_shape=[1, 4, 4], **kwargs)


def test_tta_views_script_retests_a_runs_final_weights_under_each_view_set(cfg_factory):
    from pathlib import Path

    from conftest import load_script
    from omegaconf import OmegaConf

    from trainlab.pipeline import build, fit_and_test

    script = load_script("tta_views")
    cfg = cfg_factory("data=digits", "trainer.max_epochs=2", "callbacks.model_checkpoint.monitor=null")
    run = Path(cfg.paths.output_dir)
    datamodule, module, trainer = build(cfg)
    results = fit_and_test(cfg, datamodule, module, trainer, None)
    (run / ".hydra").mkdir(parents=True)
    OmegaConf.save(cfg, run / ".hydra" / "config.yaml")
    found = script.test_accuracies(run)
    assert list(found) == ["none", "flip", "diagonal", "axes"]
    assert found["none"] == pytest.approx(100 * results["test/acc"], abs=1e-4)  # the run tested no views
    assert len(set(found.values())) > 1 and all(0 <= v <= 100 for v in found.values())


def test_predictions_are_the_probabilities_of_the_logits_the_test_scored(tmp_path):
    """eval.py's ``predict_proba`` and Lightning's ``trainer.predict`` go through the test's views:
    their argmax over the test split is the run's test/acc, exactly."""
    from trainlab.evaluation import predict_proba

    dm = tiny_datamodule()
    model = tiny_model(tta_flip=True, tta_shift=1, tta_shift_dirs="axes")
    trainer = tiny_trainer(tmp_path, max_epochs=1)
    trainer.fit(model, datamodule=dm)
    test_acc = trainer.test(model, datamodule=dm, verbose=False)[0]["test/acc"]
    x_uint8, y = dm.splits["test"]
    probs = predict_proba(trainer, model, dm, x_uint8, batch_size=5)
    with torch.no_grad():
        expected = model._eval_logits(dm.to_model_input(x_uint8)).softmax(dim=1)
        plain = model.net(dm.to_model_input(x_uint8)).softmax(dim=1)
    assert torch.allclose(probs, expected, atol=1e-6)
    assert not torch.allclose(probs, plain, atol=1e-3)  # the views did change the predictions
    assert (probs.argmax(dim=1) == y).double().mean().item() == pytest.approx(test_acc, abs=1e-6)
    from_predict_step = torch.cat(trainer.predict(model, datamodule=dm))  # the test split
    assert torch.allclose(from_predict_step, probs, atol=1e-6)
