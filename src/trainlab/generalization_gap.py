"""The generalization gap: the tested weights on a fixed part of the training split, in eval mode.

``train/acc`` and ``train/loss`` are running means over an epoch's training batches as they were
trained on: dropout and augmentation on, the weights changing from batch to batch. Their
difference from the test metrics mixes those effects into the gap. Here the weights the test
used score the first :data:`TRAIN_EVAL_SIZE` images of the training split (at most as many as
the test split has) through the same prediction path as the test (eval mode, the run's
test-time views, no augmentation): ``train_eval/acc`` and ``train_eval/loss``, and
``gap/acc = train_eval/acc - test/acc``, ``gap/loss = test/loss - train_eval/loss``.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from trainlab.data.batches import TensorBatchLoader
from trainlab.data.in_memory import InMemoryDataModule

TRAIN_EVAL_SIZE = 10_000  # images: as many as Fashion-MNIST's test split


def train_split_metrics(trainer: pl.Trainer, model: pl.LightningModule,
                        datamodule: pl.LightningDataModule) -> dict[str, float]:
    """``train_eval/acc`` and ``train_eval/loss`` of ``model`` as it is now; empty for a data
    module that does not hold its splits in memory (a user's own). Every rank must call it
    (DDP: each rank predicts its shard, and the ranks' counts are summed)."""
    if not isinstance(datamodule, InMemoryDataModule):
        return {}
    x, y = datamodule.splits["train"]
    n = min(TRAIN_EVAL_SIZE, len(x), len(datamodule.splits["test"][0]))
    # the DataModule's own transfer hook (normalization; no augmentation outside training),
    # which Lightning applies only to loaders it takes from the DataModule
    x, y = datamodule.on_after_batch_transfer((x[:n].to(model.device), y[:n].to(model.device)), 0)
    loader = TensorBatchLoader.from_tensors(x, y, batch_size=datamodule.eval_batch_size or n,
                                            shuffle=False, drop_last=False, rank=trainer.global_rank,
                                            world_size=trainer.world_size)
    predicted = trainer.predict(model, dataloaders=loader, return_predictions=True) or []
    labels = torch.cat([labels for _, labels in loader]).cpu()  # this rank's, in the same order
    probs = torch.cat([p.float().cpu() for p in predicted]) if predicted else torch.empty(0, 0)
    smoothing = float(getattr(model, "label_smoothing", 0.0))
    sums = torch.zeros(3, dtype=torch.float64)
    if len(labels):
        log_probs = probs.clamp_min(torch.finfo(probs.dtype).tiny).log()
        sums[0] = (probs.argmax(dim=1) == labels).sum()
        sums[1] = F.cross_entropy(log_probs, labels, label_smoothing=smoothing, reduction="sum")
        sums[2] = len(labels)
    sums = model.all_gather(sums.to(model.device)).reshape(-1, 3).sum(dim=0).cpu()
    if sums[2] == 0:
        return {}
    return {"train_eval/acc": float(sums[0] / sums[2]), "train_eval/loss": float(sums[1] / sums[2])}


def add_gaps(results: dict[str, Any]) -> dict[str, Any]:
    """``gap/acc = train_eval/acc - test/acc`` and ``gap/loss = test/loss - train_eval/loss``,
    where the run has both sides."""
    if "train_eval/acc" in results and "test/acc" in results:
        results["gap/acc"] = results["train_eval/acc"] - results["test/acc"]
    if "train_eval/loss" in results and "test/loss" in results:
        results["gap/loss"] = results["test/loss"] - results["train_eval/loss"]
    return results
