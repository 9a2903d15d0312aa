"""``trainlab-cli``: LightningCLI over the Hydra path's Classifier and DataModules."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import ROOT
from torch.optim.lr_scheduler import OneCycleLR

from trainlab.callbacks import LRSchedule
from trainlab.cli import build_cli
from trainlab.data import ImageDataModule
from trainlab.data.cli_sources import FashionMNIST
from trainlab.models import CNN, Classifier

CLI = Path(sys.executable).parent / "trainlab-cli"
DIGITS = str(ROOT / "cli" / "digits.yaml")


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(CLI), *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


@pytest.mark.e2e
def test_fit_writes_config_checkpoints_and_obeys_optimizer_and_scheduler_flags(tmp_path):
    proc = cli("fit", "--config", DIGITS, "--trainer.max_epochs=2",
               f"--trainer.default_root_dir={tmp_path / 'root'}", "--trainer.enable_progress_bar=false",
               "--model.optimizer=SGD", "--model.optimizer.lr=0.05", "--model.optimizer.momentum=0.9",
               "--trainer.callbacks.scheduler=StepLR", "--trainer.callbacks.scheduler.step_size=1",
               "--trainer.callbacks.scheduler.gamma=0.5", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "root" / "version_0"  # the logger followed --trainer.default_root_dir
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best-epoch01.ckpt",
                                                                        "last.ckpt"]
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"]["optimizer"]["class_path"] == "torch.optim.SGD"
    assert saved["model"]["optimizer"]["init_args"]["lr"] == 0.05
    with (run / "metrics.csv").open() as metrics:
        rows = list(csv.DictReader(metrics))
    lrs = [float(r["train/lr"]) for r in rows if r.get("train/lr")]
    # the LR each epoch's steps used: StepLR(step_size=1, gamma=0.5) halves it after each epoch
    assert lrs == pytest.approx([0.05, 0.025])
    val_acc = [float(r["val/acc"]) for r in rows if r.get("val/acc")]
    assert val_acc[-1] > 0.8
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == 1 and "ImageDataModule" in ckpt  # normalization stats travel along


@pytest.mark.e2e
def test_print_config_loads_back(tmp_path):
    printed = cli("fit", "--config", DIGITS, "--model.optimizer=AdamW", "--print_config",
                  cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr[-3000:]
    (tmp_path / "printed.yaml").write_text(printed.stdout)
    again = cli("fit", "--config", str(tmp_path / "printed.yaml"), "--print_config", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout == printed.stdout
    cfg = yaml.safe_load(printed.stdout)
    assert cfg["model"]["optimizer"]["class_path"] == "torch.optim.AdamW"
    assert cfg["data"]["init_args"]["source"]["class_path"] == "trainlab.data.cli_sources.Digits"


def test_fashion_mnist_config_builds_the_hydra_paths_classes(tmp_path):
    built = build_cli(["--config", str(ROOT / "cli" / "fashion_mnist.yaml"),
                       f"--trainer.default_root_dir={tmp_path}"], run=False)
    assert type(built.model) is Classifier and isinstance(built.model.net, CNN)
    assert type(built.datamodule) is ImageDataModule
    assert built.datamodule.source == FashionMNIST(root=None) and built.datamodule.val_size == 5000
    assert built.model.example_input_array.shape == (2, 1, 28, 28)
    optimizer = built.model.configure_optimizers()
    assert type(optimizer) is torch.optim.Adam and optimizer.param_groups[0]["lr"] == 0.001
    assert built.trainer.logger.save_dir == str(tmp_path)


@pytest.fixture(autouse=True)
def _no_pytest_argv(monkeypatch):
    """LightningCLI warns when given ``args`` while sys.argv holds pytest's arguments."""
    monkeypatch.setattr(sys, "argv", ["trainlab-cli"])


# torch's ReduceLROnPlateau by full path: Lightning exports a subclass of the same name
@pytest.mark.parametrize(("scheduler", "plateau"), [
    ("OneCycleLR", False), ("torch.optim.lr_scheduler.ReduceLROnPlateau", True)])
def test_lr_schedule_from_the_cli_knows_its_scheduler(tmp_path, scheduler, plateau):
    args = ["--config", DIGITS, f"--trainer.default_root_dir={tmp_path}",
            f"--trainer.callbacks.scheduler={scheduler}"]
    args += (["--trainer.callbacks.monitor=val/loss"] if plateau
             else ["--trainer.callbacks.scheduler.max_lr=0.1", "--trainer.callbacks.interval=step"])
    built = build_cli(args, run=False)
    callback = next(c for c in built.trainer.callbacks if isinstance(c, LRSchedule))
    assert callback.plateau is plateau
    if not plateau:  # total_steps filled in from the Trainer, as for Hydra's partial
        built_scheduler = callback.build(built.model.configure_optimizers(), total_steps=40)
        assert isinstance(built_scheduler, OneCycleLR) and built_scheduler.total_steps == 40


@pytest.mark.parametrize("epochs", [2, 5])
def test_the_cosine_schedule_spans_the_max_epochs_given_on_the_command_line(tmp_path, epochs):
    built = build_cli(["--config", DIGITS, f"--trainer.default_root_dir={tmp_path}",
                       f"--trainer.max_epochs={epochs}"], run=False)
    callback = next(c for c in built.trainer.callbacks if isinstance(c, LRSchedule))
    scheduler = callback.build(built.model.configure_optimizers(), total_steps=epochs)
    assert scheduler.T_max == epochs == built.trainer.max_epochs  # as train.py's cosine.yaml


def test_classes_and_input_shape_come_from_the_data(tmp_path):
    """One place for data-derived values: the model and its net take the DataModule's."""
    built = build_cli(["--config", DIGITS, f"--trainer.default_root_dir={tmp_path}"], run=False)
    assert built.model.hparams.num_classes == 10 and list(built.model.hparams.input_shape) == [1, 8, 8]
    assert built.model.net.head[-1].out_features == 10
    with pytest.raises(SystemExit):  # a linked key is not the user's to set
        build_cli(["--config", DIGITS, "--model.num_classes=5"], run=False)
