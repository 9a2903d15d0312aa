"""End to end through ``python train.py``: outputs contract, sweeps, errors."""

from __future__ import annotations

import csv
import io
import json
import os
import re
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from conftest import run_cli
from pytorch_lightning.callbacks import RichProgressBar, TQDMProgressBar
from pytorch_lightning.loggers import CSVLogger
from tiny import tiny_datamodule, tiny_model, tiny_trainer

from trainlab.models import classifier

RESULT_KEYS = {"test/acc", "test/loss", "val/acc", "val/loss", "train/acc", "train/loss", "epoch",
               "seed", "wall_s", "status", "train_eval/acc", "train_eval/loss", "gap/acc", "gap/loss",
               "process/openmp", "process/malloc",
               "process/nvml_check", "process/threads"}


@pytest.mark.e2e
def test_digits_run_writes_the_outputs_contract(tmp_path):
    run = tmp_path / "run"
    proc = run_cli("data=digits", "trainer.max_epochs=3", f"hydra.run.dir={run}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((run / "results.json").read_text())
    assert RESULT_KEYS <= set(results)
    assert results["test/acc"] > 0.85 and results["status"] == "ok" and results["epoch"] == 3
    assert results["seed"] == 42
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert [p.name for p in (run / "checkpoints").glob("best-*.ckpt")]
    metrics = run / "csv" / "version_0" / "metrics.csv"  # Lightning's CSVLogger, first attempt
    assert (run / ".hydra" / "config.yaml").is_file() and metrics.is_file()
    header = metrics.read_text().splitlines()[0].split(",")
    assert {"epoch", "train/loss", "train/loss_step", "val/acc"} <= set(header)
    assert results["process/openmp"] == "threads spin (process.openmp_wait=launcher)"
    chosen = os.environ.get("OMP_NUM_THREADS")  # this process's threads are the child's
    source = f"OMP_NUM_THREADS={chosen}" if chosen else "PyTorch's default"
    assert results["process/threads"] == f"{torch.get_num_threads()} ({source})"
    assert "Process settings: openmp: threads spin" in proc.stdout + proc.stderr
    assert "Conv2d" in proc.stdout and "[-1, 32, 8, 8]" in proc.stdout  # summary with input size


@pytest.mark.e2e
def test_multirun_over_optimizers_writes_one_result_each(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli("-m", "data=digits", "trainer.max_epochs=1",
                   "optimizer=sgd,adam,adagrad,adadelta", f"hydra.sweep.dir={sweep}",
                   "callbacks.progress_bar=null")
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = sorted(sweep.glob("*/results.json"))
    assert len(files) == 4
    optimizers = {json.loads(f.read_text())["status"] for f in files}
    assert optimizers == {"ok"}
    assert (sweep / "summary.csv").is_file() and (sweep / "summary.md").is_file()


@pytest.mark.e2e
def test_bad_value_exits_nonzero_before_training_with_key_and_allowed(tmp_path):
    proc = run_cli("data=digits", "model.net.dropout=1.5", f"hydra.run.dir={tmp_path / 'r'}")
    assert proc.returncode != 0
    assert "model.net.dropout must be in [0, 1), got 1.5" in proc.stderr + proc.stdout
    assert not (tmp_path / "r" / "checkpoints").exists()


@pytest.mark.e2e
def test_run_dir_holding_a_run_is_never_overwritten(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"precious")
    (run / "results.json").write_text('{"test/acc": 0.9}')
    proc = run_cli("data=digits", "trainer.max_epochs=1", f"hydra.run.dir={run}")
    assert proc.returncode != 0 and "already holds a run" in proc.stderr + proc.stdout
    assert (run / "checkpoints" / "last.ckpt").read_bytes() == b"precious"
    assert json.loads((run / "results.json").read_text()) == {"test/acc": 0.9}


def test_float64_run_keeps_float64_end_to_end(tmp_path):
    model = tiny_model()
    seen = []
    model.register_forward_hook(lambda m, a, out: seen.append((a[0].dtype, out.dtype)))
    trainer = tiny_trainer(tmp_path, max_epochs=1, precision="64-true")
    trainer.fit(model, datamodule=tiny_datamodule())
    assert {p.dtype for p in model.parameters()} == {torch.float64}
    assert set(seen) == {(torch.float64, torch.float64)}


def test_bf16_mixed_feeds_the_net_float32_batches_that_autocast_runs_in_bf16(tmp_path):
    model = tiny_model()
    seen = []
    model.net.register_forward_hook(lambda m, a, out: seen.append((a[0].dtype, out.dtype)))
    trainer = tiny_trainer(tmp_path, max_epochs=1, precision="bf16-mixed")
    trainer.fit(model, datamodule=tiny_datamodule())
    # the DataModule normalizes into the module's dtype (float32), not the autocast dtype
    assert set(seen) == {(torch.float32, torch.bfloat16)}
    assert {p.dtype for p in model.parameters()} == {torch.float32}  # master weights stay fp32
    assert torch.isfinite(trainer.callback_metrics["train/loss"]) and model.status == "ok"


@pytest.mark.parametrize(("override", "message"), [
    ("model.optimizer.lr=-0.1", "model.optimizer.lr=-0.1 is not allowed: a number > 0"),
    ("trainer.max_epochs=-3", "trainer.max_epochs=-3 is not allowed"),
    ("trainer.precision=8-true", "trainer.precision='8-true' is not allowed: one of"),
    ("data.batch_size=0", "data.batch_size must be an integer >= 1, got 0"),
    # the key each message names is the override the user typed, not a shorthand
    ("model.net.dropout=1.5", "model.net.dropout must be in [0, 1), got 1.5"),
    ("model.net.activation=Swoosh", "model.net.activation must name a torch.nn activation"),
    ("model.net.kernel_size=2", "model.net.kernel_size must be a positive odd integer, got 2"),
    ("net=mlp model.net.hidden=[0]", "model.net.hidden widths must be >= 1, got [0]"),
    ("grad_clip=norm trainer.gradient_clip_val=abc",
     "trainer.gradient_clip_val='abc' is not allowed: a number or null"),
    ("optimizer=sgd regularization=decoupled",
     "model.optimizer.decoupled_weight_decay is not a parameter of torch.optim.SGD"),
    ("+model.net.widht=3", "model.net.widht is not a parameter of trainlab.models.CNN"),
    ("scheduler=step callbacks.lr_schedule.warmup=-1", "callbacks.lr_schedule.warmup must be"),
    ("grad_clip=norm", None),
])
def test_bad_values_fail_in_build_with_key(override, message, cfg_factory):
    from trainlab.pipeline import build

    if message is None:  # control: a good override builds and takes effect
        from trainlab.callbacks import GradientClipping

        _, _, trainer = build(cfg_factory("data=digits", *override.split()))
        (clip,) = [c for c in trainer.callbacks if isinstance(c, GradientClipping)]
        assert (clip.gradient_clip_val, clip.gradient_clip_algorithm) == (0.1, "norm")
        return
    with pytest.raises(Exception, match=re.escape(message)):
        build(cfg_factory("data=digits", *override.split()))


def test_epoch_train_metrics_equal_the_loss_accuracy_and_penalty_over_the_split(tmp_path):
    from trainlab.regularization import Regularization

    # lr=0: the weights stay put, so the epoch means can be recomputed on the whole split
    model = tiny_model(lr=0.0, regularization=Regularization(l2=0.01))
    datamodule = tiny_datamodule()
    trainer = tiny_trainer(tmp_path, max_epochs=1)
    trainer.fit(model, datamodule=datamodule)
    x, y = datamodule.splits["train"]
    with torch.no_grad():
        logits = model(datamodule.to_model_input(x))
        loss = torch.nn.functional.cross_entropy(logits, y)
        penalty = model.regularization.penalty(model.net)
    logged = trainer.callback_metrics
    assert logged["train/loss"].item() == pytest.approx(loss.item(), rel=1e-5)
    assert logged["train/acc"].item() == pytest.approx((logits.argmax(1) == y).double().mean().item())
    assert logged["train/reg_loss"].item() == pytest.approx(penalty.item(), rel=1e-5)


class BarProbe(pl.Callback):
    """What the progress bar shows after each training batch, beside that batch's own loss."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, float, float, float]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        x, y = batch
        with torch.no_grad():
            acc = (pl_module(x).argmax(1) == y).double().mean().item()  # weights after the step
        bar = trainer.progress_bar_metrics
        self.seen.append((bar["train/loss_step"], outputs["loss"].item(), bar["train/acc_step"], acc))


def test_the_progress_bar_shows_this_steps_training_loss_and_accuracy(tmp_path):
    probe = BarProbe()
    model = tiny_model(lr=0.0)  # lr 0: the accuracy after the step is the step's own
    trainer = tiny_trainer(tmp_path, max_epochs=2, callbacks=[TQDMProgressBar(), probe],
                           log_every_n_steps=50, enable_progress_bar=True)
    trainer.fit(model, datamodule=tiny_datamodule())
    assert len(probe.seen) == 10
    for bar_loss, loss, bar_acc, acc in probe.seen:
        assert bar_loss == pytest.approx(loss, rel=1e-6) and bar_acc == pytest.approx(acc)
    assert len({round(loss, 6) for loss, _, _, _ in probe.seen}) > 1  # it moves: not frozen


class RichBarProbe(pl.Callback):
    """At each batch's start: what the bar holds, beside the previous batch's loss and accuracy."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, float, float, float]] = []
        self.previous: tuple[float, float] | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.previous is not None:
            bar = trainer.progress_bar_metrics
            self.seen.append((bar["train/loss_step"], self.previous[0], bar["train/acc_step"],
                              self.previous[1]))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        x, y = batch
        with torch.no_grad():
            acc = (pl_module(x).argmax(1) == y).double().mean().item()  # lr 0: the step's own
        self.previous = (outputs["loss"].item(), acc)


@pytest.mark.parametrize(("refresh_rate", "fresh"), [(100, 9), (1, 3)])
def test_a_rich_bar_gets_the_step_values_as_often_as_it_redraws(tmp_path, monkeypatch, refresh_rate,
                                                                 fresh):
    """Lightning's RichProgressBar redraws refresh_rate times a second. With a clock that moves
    0.25 s a batch: at 100 redraws a second every step's values reach it; at 1 a second every
    fourth step's (batches 1, 5 and 9 of 10), and the steps in between skip self.log."""
    ticks = iter(range(1000))
    monkeypatch.setattr(classifier, "monotonic", lambda: next(ticks) * 0.25)
    probe = RichBarProbe()
    bar = RichProgressBar(refresh_rate=refresh_rate, console_kwargs={"file": io.StringIO()})
    trainer = tiny_trainer(tmp_path, max_epochs=2, callbacks=[bar, probe], log_every_n_steps=50,
                           enable_progress_bar=True)
    trainer.fit(tiny_model(lr=0.0), datamodule=tiny_datamodule())
    assert len(probe.seen) == 9
    now = [bar_loss == pytest.approx(loss, rel=1e-6) and bar_acc == pytest.approx(acc)
           for bar_loss, loss, bar_acc, acc in probe.seen]
    assert sum(now) == fresh


def step_rows(tmp_path, bar: pl.Callback | None) -> list[list[str]]:
    """metrics.csv's step, train/loss_step and train/acc_step rows of a 2-epoch tiny run."""
    logger = CSVLogger(tmp_path, name=type(bar).__name__)
    trainer = tiny_trainer(tmp_path, max_epochs=2, callbacks=[bar] if bar else [],
                           log_every_n_steps=4, logger=logger, enable_progress_bar=bar is not None)
    trainer.fit(tiny_model(), datamodule=tiny_datamodule())
    with open(Path(logger.log_dir) / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    return [[r["step"], r["train/loss_step"], r["train/acc_step"]] for r in rows if r["train/loss_step"]]


def test_the_logger_gets_the_same_step_values_with_any_bar_or_none(tmp_path):
    """Skipping self.log on the steps the logger does not write loses nothing: the same rows
    as with TQDM's bar, which has them logged every step."""
    every_step = step_rows(tmp_path, TQDMProgressBar())
    rich = step_rows(tmp_path, RichProgressBar(refresh_rate=1, console_kwargs={"file": io.StringIO()}))
    none = step_rows(tmp_path, None)
    assert [int(step) for step, _, _ in none] == [3, 7]  # 10 steps, every 4th written
    assert none == rich == every_step


@pytest.mark.parametrize("value", ["abc", "[1,2]", "{a:1}", "true"])
@pytest.mark.parametrize(("key", "allowed"), [
    ("model.net.dropout", "a number"), ("model.optimizer.weight_decay", "a number"),
    ("model.label_smoothing", "a number"), ("data.batch_size", "an integer"),
    ("data.val_size", "an integer"), ("callbacks.lr_schedule.scheduler.eta_min", "a number"),
    ("trainer.gradient_clip_val", "a number or null"),
])
def test_a_wrong_type_for_a_numeric_key_gets_one_message_naming_key_value_and_allowed(
        cfg_factory, key, allowed, value):
    from trainlab.errors import ConfigError
    from trainlab.validate import validate

    cfg = cfg_factory("data=digits", f"{key}={value}")
    message = rf"^{re.escape(key)}=.* is not allowed: {allowed} \(a parameter of "
    with pytest.raises(ConfigError, match=message):
        validate(cfg)
