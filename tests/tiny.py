"""Tiny real-shaped pieces for tests that need a Trainer (seconds, not minutes)."""

from __future__ import annotations

from functools import partial

import pytorch_lightning as pl
import torch

from trainlab.data import ImageDataModule
from trainlab.data.sources import ImageSplits
from trainlab.models import MLP, Classifier


def tiny_splits(n_train: int = 96, n_test: int = 32, seed: int = 0) -> ImageSplits:
    """Two-class 1x4x4 images whose class is the brightness of the left half: learnable."""
    g = torch.Generator().manual_seed(seed)

    def make(n):
        y = torch.arange(n) % 2
        x = torch.randint(0, 128, (n, 1, 4, 4), generator=g)
        x[:, :, :, :2] += (y * 127).view(-1, 1, 1, 1)
        return x.to(torch.uint8), y

    (a, b), (c, d) = make(n_train), make(n_test)
    return ImageSplits(a, b, c, d)


def tiny_datamodule(batch_size: int = 16, **kwargs) -> ImageDataModule:
    return ImageDataModule(tiny_splits, [1, 4, 4], 2, val_size=16, batch_size=batch_size,
                           eval_batch_size=32, **kwargs)


def tiny_model(lr: float = 0.1, optimizer=torch.optim.SGD, **kwargs) -> Classifier:
    torch.manual_seed(0)
    return Classifier(MLP([1, 4, 4], 2, hidden=(8,)), partial(optimizer, lr=lr), num_classes=2,
                      input_shape=[1, 4, 4], **kwargs)


def tiny_trainer(tmp_path, max_epochs: int = 3, callbacks=(), **kwargs) -> pl.Trainer:
    return pl.Trainer(default_root_dir=tmp_path, max_epochs=max_epochs, accelerator="cpu",
                      devices=1, logger=kwargs.pop("logger", False),
                      enable_progress_bar=kwargs.pop("enable_progress_bar", False),
                      enable_model_summary=False, enable_checkpointing=kwargs.pop("ckpt", False),
                      num_sanity_val_steps=0, callbacks=list(callbacks),
                      log_every_n_steps=kwargs.pop("log_every_n_steps", 1),
                      **kwargs)


class LRRecorder(pl.Callback):
    """The LR in use at every training step (before the optimizer step)."""

    def __init__(self) -> None:
        self.by_step: list[float] = []
        self.by_epoch: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.by_epoch.append(trainer.optimizers[0].param_groups[0]["lr"])

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.by_step.append(trainer.optimizers[0].param_groups[0]["lr"])
