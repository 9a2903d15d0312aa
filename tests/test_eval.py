"""``python eval.py``: test a run's checkpoint, predict new images, never touch the run."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from conftest import ROOT, run_cli
from hydra.utils import instantiate
from omegaconf import OmegaConf
from tiny import tiny_datamodule, tiny_model, tiny_trainer

from trainlab.data.sources import digits, save_png
from trainlab.errors import RunDirError
from trainlab.evaluation import EvalError, load_weights, predict_proba, read_inputs, run_config
from trainlab.rundir import run_of_checkpoint


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A one-epoch digits run tested with ten views of each image (its best checkpoint is the one
    its test used)."""
    run = tmp_path_factory.mktemp("train") / "run"
    proc = run_cli("data=digits", "trainer.max_epochs=1", "callbacks.progress_bar=null",
                   "model.tta_flip=true", "model.tta_shift=1", "model.tta_shift_dirs=axes",
                   f"hydra.run.dir={run}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run


@pytest.mark.e2e
def test_eval_reproduces_the_runs_test_and_predicts_into_its_own_dir(trained_run, tmp_path):
    results = json.loads((trained_run / "results.json").read_text())
    ckpt = trained_run / "checkpoints" / results["tested_checkpoint"]
    split = digits()
    torch.save(split.test_x, tmp_path / "test_x.pt")
    before = snapshot(trained_run)
    out = tmp_path / "eval"
    proc = run_cli(f"ckpt_path={ckpt}", f"predict_path={tmp_path / 'test_x.pt'}",
                   f"hydra.run.dir={out}", script="eval.py")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert snapshot(trained_run) == before  # nothing in the training run changed
    assert {p.name for p in out.iterdir()} == {".hydra_eval", "eval.log", "eval.json",
                                               "predictions.csv"}
    evaluated = json.loads((out / "eval.json").read_text())
    assert evaluated["test/acc"] == pytest.approx(results["test/acc"], abs=1e-6)
    assert evaluated["test/loss"] == pytest.approx(results["test/loss"], abs=1e-5)
    assert evaluated["run_dir"] == str(trained_run.resolve()) and evaluated["n_predictions"] == 450
    with (out / "predictions.csv").open() as predictions:
        rows = list(csv.DictReader(predictions))
    probs = torch.tensor([[float(r[f"p_{k}"]) for k in range(10)] for r in rows])
    assert torch.allclose(probs.sum(dim=1), torch.ones(len(rows)), atol=1e-4)
    preds = torch.tensor([int(r["pred"]) for r in rows])
    assert torch.equal(preds, probs.argmax(dim=1))
    # the same images through the same weights, normalization and test-time views: the test
    # accuracy again, exactly
    assert (preds == split.test_y).double().mean().item() == pytest.approx(evaluated["test/acc"],
                                                                           abs=1e-6)
    assert "test/acc" in proc.stdout


@pytest.mark.e2e
def test_png_folder_and_float_tensor_give_the_same_probabilities(trained_run, tmp_path):
    images = digits().test_x[:3]
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i, image in enumerate(images):
        save_png(image, folder / f"img{i}.png")
    torch.save(images.float() / 255, tmp_path / "x01.pt")
    from_png, names = read_inputs(folder, (1, 8, 8))
    from_pt, _ = read_inputs(tmp_path / "x01.pt", (1, 8, 8))
    assert names == ["img0.png", "img1.png", "img2.png"] and torch.equal(from_png, images)
    eval_trainer = OmegaConf.load(ROOT / "conf" / "eval.yaml").trainer  # eval.py's trainer keys
    cfg = run_config(trained_run, eval_trainer, [f"paths.output_dir={tmp_path}"])
    datamodule, model = instantiate(cfg.data), instantiate(cfg.model)
    load_weights(model, datamodule, trained_run / "checkpoints" / "last.ckpt")
    trainer = instantiate(cfg.trainer, callbacks=[], logger=False)
    p_png = predict_proba(trainer, model, datamodule, from_png, 2)
    p_pt = predict_proba(trainer, model, datamodule, from_pt, 2)
    assert p_png.shape == (3, 10) and torch.allclose(p_png, p_pt, atol=1e-6)


@pytest.mark.e2e
def test_missing_checkpoint_fails_with_the_key_and_writes_nothing(tmp_path):
    out = tmp_path / "eval"
    proc = run_cli(f"ckpt_path={tmp_path / 'nope.ckpt'}", f"hydra.run.dir={out}", script="eval.py")
    assert proc.returncode != 0
    assert f"ckpt_path={tmp_path / 'nope.ckpt'} does not exist" in proc.stderr + proc.stdout
    assert not (out / "eval.json").exists()


@pytest.mark.e2e
def test_checkpoint_errors_say_what_to_pass(trained_run, tmp_path):
    with pytest.raises(RunDirError, match=r"is a directory, not a checkpoint file; it holds \["):
        run_of_checkpoint(trained_run)
    loose = tmp_path / "loose" / "checkpoints" / "x.ckpt"
    loose.parent.mkdir(parents=True)
    loose.write_bytes(b"")
    with pytest.raises(RunDirError, match="has no .hydra/config.yaml"):
        run_of_checkpoint(loose)
    assert run_of_checkpoint(trained_run / "checkpoints" / "last.ckpt") == trained_run.resolve()


@pytest.mark.parametrize(("tensor", "message"), [
    (torch.zeros(2, 1, 9, 9, dtype=torch.uint8), r"must hold a tensor \(N, 1, 8, 8\), got \[2, 1, 9, 9\]"),
    (torch.full((2, 1, 8, 8), 2.0), r"float images must lie in \[0, 1\]"),
    (torch.zeros(2, 1, 8, 8, dtype=torch.int64), "must be uint8 .* or float"),
])
def test_bad_prediction_inputs_are_refused(tmp_path, tensor, message):
    torch.save(tensor, tmp_path / "x.pt")
    with pytest.raises(EvalError, match=message):
        read_inputs(tmp_path / "x.pt", (1, 8, 8))


# --- the network is registered once: checkpoints load across model.compile ----------------------

def perturbed(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """``model`` with weights of its own (tiny_model always starts from the same ones)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g))
    return model


def test_checkpoints_hold_the_network_once_compiled_or_not():
    plain, compiled = tiny_model(), tiny_model(compile=True)
    net_keys = [f"net.{key}" for key in plain.net.state_dict()]
    assert list(plain.state_dict()) == net_keys == list(compiled.state_dict())
    assert net_keys == ["net.layers.1.weight", "net.layers.1.bias", "net.layers.3.weight",
                        "net.layers.3.bias"]  # the metrics keep no state in checkpoints


@pytest.mark.parametrize(("save_compiled", "load_compiled"), [(True, False), (False, True)])
def test_weights_saved_with_or_without_compile_load_into_the_other_with_equal_outputs(
        tmp_path, save_compiled, load_compiled):
    saved = perturbed(tiny_model(compile=save_compiled), seed=1).eval()
    x = torch.randn(5, 1, 4, 4)
    with torch.no_grad():
        expected = saved(x)  # through the compiled network where it is compiled
    ckpt = tmp_path / "last.ckpt"
    torch.save({"state_dict": saved.state_dict()}, ckpt)
    loaded = tiny_model(compile=load_compiled)
    load_weights(loaded, tiny_datamodule(), ckpt)  # eval.py's path: torch.load(weights_only=True)
    with torch.no_grad():
        assert torch.allclose(loaded.eval()(x), expected, atol=1e-6)
    again = tiny_model(compile=load_compiled)
    again.load_state_dict(torch.load(ckpt, weights_only=True)["state_dict"])  # strict
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(),
                                                 saved.state_dict().values(), strict=True))


@pytest.mark.parametrize("alias", ["forward_fn.", "forward_fn._orig_mod."])
def test_a_checkpoint_holding_the_network_twice_still_loads_and_resumes(tmp_path, alias):
    """Checkpoints written before the network was registered once also hold it as ``forward_fn.*``
    (``forward_fn._orig_mod.*`` with model.compile=true)."""
    dm = tiny_datamodule()
    model = tiny_model()
    trainer = tiny_trainer(tmp_path, max_epochs=1)
    trainer.fit(model, datamodule=dm)
    ckpt = tmp_path / "old.ckpt"
    trainer.save_checkpoint(ckpt)
    checkpoint = torch.load(ckpt, weights_only=True)
    state = checkpoint["state_dict"]
    checkpoint["state_dict"] = {**state, **{alias + key[len("net."):]: value.clone()
                                            for key, value in state.items()}}
    torch.save(checkpoint, ckpt)
    loaded = tiny_model()
    load_weights(loaded, tiny_datamodule(), ckpt)
    assert all(torch.equal(loaded.state_dict()[key], value) for key, value in state.items())
    resumed = tiny_model()
    tiny_trainer(tmp_path / "resumed", max_epochs=2).fit(resumed, datamodule=tiny_datamodule(),
                                                         ckpt_path=ckpt)
    assert list(resumed.state_dict()) == list(state) and resumed.trainer.global_step == 10
