"""The DataModule base for splits held in memory as tensors and served as whole batches."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from typing_extensions import override

from trainlab.data.batches import TensorBatchLoader


class InMemoryDataModule(pl.LightningDataModule):
    """``self.splits`` maps ``train``/``val``/``test`` to ``(x, y)`` tensors, filled by ``setup``.

    Batches are cut by a :class:`TensorBatchLoader` (per-epoch order from ``shuffle_seed`` and
    the epoch, DDP shards by rank, the position inside an epoch saved in checkpoints). Training
    on a GPU, each split is copied there once and batches are cut there, so nothing crosses the
    bus per step. Subclasses set ``batch_size``, ``shuffle_seed`` and ``eval_batch_size`` (None:
    a split is one batch).
    """

    batch_size: int
    shuffle_seed: int
    eval_batch_size: int | None = None
    drop_last_train: bool = True

    def __init__(self) -> None:
        super().__init__()
        self.splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        # (split, device) -> (the CPU tensor copied, x on the device, y on the device)
        self._on_device: dict[tuple[str, str], tuple[torch.Tensor, ...]] = {}

    def _resident(self, split: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The split's tensors on ``device``, copied there once (again when the splits change)."""
        x, y = self.splits[split]
        if device.type == "cpu":
            return x, y
        key = (split, str(device))
        cached = self._on_device.get(key)
        if cached is None or cached[0] is not x:
            cached = self._on_device[key] = (x, x.to(device), y.to(device))
        return cached[1], cached[2]

    def _loader(self, split: str, train: bool) -> TensorBatchLoader:
        trainer = self.trainer
        device = trainer.strategy.root_device if trainer is not None else torch.device("cpu")
        x, y = self._resident(split, device)
        return TensorBatchLoader.from_tensors(
            x, y, batch_size=self.batch_size if train else self.eval_batch_size or len(x),
            shuffle=train, drop_last=train and self.drop_last_train, seed=self.shuffle_seed,
            rank=trainer.global_rank if trainer is not None else 0,
            world_size=trainer.world_size if trainer is not None else 1,
        )

    @override
    def train_dataloader(self) -> TensorBatchLoader:
        return self._loader("train", train=True)

    @override
    def val_dataloader(self) -> TensorBatchLoader:
        return self._loader("val", train=False)

    @override
    def test_dataloader(self) -> TensorBatchLoader:
        return self._loader("test", train=False)

    @override
    def predict_dataloader(self) -> TensorBatchLoader:
        return self._loader("test", train=False)
