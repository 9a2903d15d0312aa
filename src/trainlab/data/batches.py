"""Whole batches from tensors held in memory, served by a ``torch.utils.data.DataLoader``.

The loader's batch sampler yields each batch's indices as one tensor and the dataset cuts the
batch with one ``index_select`` per tensor: no per-sample Python. Being a DataLoader with a
sampler, it gets Lightning's own handling: Lightning sets the sampler's epoch, leaves the rank
shards alone (the sampler is a ``DistributedSampler``), swaps in a sequential order for
``overfit_batches``, and saves the loader's position in every checkpoint.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sized
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import BatchSampler, DataLoader, Dataset, DistributedSampler, Sampler, SequentialSampler

# Lightning advises worker processes for every DataLoader on a machine with spare cores; these
# cut a batch with one index op in the training process, which workers would only slow down.
# (The filter Lightning's docs give for this warning, advanced/warnings.rst.)
warnings.filterwarnings("ignore", message=r"The '\w+' does not have many workers")

Batch = tuple[torch.Tensor, torch.Tensor]


class ResidentTensors(Dataset):
    """``(x, y)`` held in memory or on a GPU, cut a whole batch at a time.

    Args:
        x: inputs, first dim = samples (uint8 images or float features).
        y: labels.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} samples but y has {len(y)}")
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> Batch:
        return self.x[i], self.y[i]

    def __getitems__(self, index: torch.Tensor | slice | list[int]) -> Batch:
        """The batch at ``index``, which the DataLoader passes whole (torch's ``_MapDatasetFetcher``
        calls this instead of ``__getitem__`` once per sample): a slice gives views, indices one
        ``index_select`` per tensor, on the device the tensors are on."""
        if isinstance(index, slice):
            return self.x[index], self.y[index]
        index = torch.as_tensor(index, device=self.x.device)
        return self.x.index_select(0, index), self.y.index_select(0, index)  # 6x x[index] on CPU


def whole_batch(batch: Batch) -> Batch:
    """The DataLoader's ``collate_fn``: the dataset has cut the batch already."""
    return batch


class EpochOrder(DistributedSampler):
    """The order of an epoch's samples, this rank's shard of it; it depends on ``(seed, epoch)``
    only. Lightning calls ``set_epoch`` at each epoch's start.

    A ``DistributedSampler``, so that Lightning sees that the loader shards by rank already. Unlike
    torch's, an unequal split is not padded with repeated samples: with ``drop_last=False`` (for
    evaluation) every sample is seen once and the ranks' shards differ by one sample at most.

    Args:
        dataset: the samples (only its length is used).
        num_replicas: number of processes.
        rank: this process's rank.
        shuffle: a new permutation every epoch, else the dataset's order.
        seed: base seed of the permutations.
        drop_last: cut the order to a multiple of ``num_replicas`` so that every rank gets as many
            samples (training: DDP ranks that take different numbers of steps wait on each other).
    """

    def __init__(self, dataset: Sized, num_replicas: int = 1, rank: int = 0, shuffle: bool = True,
                 seed: int = 0, drop_last: bool = False) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed,
                         drop_last=drop_last)
        n = len(dataset)
        self.total_size = n - n % num_replicas if drop_last else n
        self.num_samples = len(range(rank, self.total_size, num_replicas))

    def indices(self) -> torch.Tensor:
        """This rank's sample indices for the epoch, in order."""
        n = len(self.dataset)
        if self.shuffle:  # the factor keeps seed s at epoch e + 1 from repeating seed s + 1 at e
            generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(n, generator=generator)
        else:
            order = torch.arange(n)
        return order[self.rank : self.total_size : self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())


class TensorBatchSampler(BatchSampler):
    """Batches of a sampler's order, each one tensor of indices, resumable inside an epoch.

    An :class:`EpochOrder` is cut into index tensors (slices, i.e. views, when it is the data's own
    order on one process). A ``SequentialSampler`` (Lightning's for ``overfit_batches``) becomes
    the unshuffled ``EpochOrder`` of the process group, which has an epoch to resume by; any other
    sampler's order is read into a tensor once per epoch.

    ``state_dict`` holds the epoch and how many of its batches were handed out. Lightning fetches
    no batch ahead of the one it trains when the loader has a length (its ``_PrefetchDataFetcher``
    prefetches only to find the end of a loader without one), so at a checkpoint that is the
    number trained on. After ``load_state_dict``, the next iteration of that epoch starts at the
    following batch: a run resumed from a checkpoint taken at any step sees exactly the batches an
    uninterrupted run would.

    Args:
        sampler: the order of the samples.
        batch_size: samples per batch.
        drop_last: drop the last incomplete batch (training) or keep it (evaluation).
        device: where the index tensors are made: the device the data lives on, so that a batch
            is cut there without moving its indices at every step.
    """

    def __init__(self, sampler: Sampler[int], batch_size: int, drop_last: bool,
                 device: torch.device | str | None = None) -> None:
        if type(sampler) is SequentialSampler:
            grouped = dist.is_available() and dist.is_initialized()
            world, rank = (dist.get_world_size(), dist.get_rank()) if grouped else (1, 0)
            sampler = EpochOrder(sampler.data_source, world, rank, shuffle=False, drop_last=drop_last)
        super().__init__(sampler, batch_size, drop_last)
        self.device = torch.device(device or "cpu")
        self.position = (self.epoch, 0)  # (epoch, batches handed out) of the latest iteration
        self.resume_at: tuple[int, int] | None = None  # the position loaded, until iterated

    @property
    def epoch(self) -> int:
        """The sampler's epoch (set by Lightning); 0 for a sampler without one."""
        return getattr(self.sampler, "epoch", 0)

    def state_dict(self) -> dict[str, int]:
        """The epoch and how many of its batches are done (saved by Lightning in checkpoints)."""
        epoch, done = self.position
        return {"epoch": epoch, "batches_done": done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Start the next iteration of ``state['epoch']`` after its ``batches_done`` batches."""
        self.resume_at = self.position = (int(state["epoch"]), int(state["batches_done"]))

    def _order(self) -> torch.Tensor | None:
        """The epoch's indices on ``device``; None for the data's own order (cut into slices)."""
        if isinstance(self.sampler, EpochOrder):
            if not self.sampler.shuffle and self.sampler.num_replicas == 1:
                return None
            return self.sampler.indices().to(self.device)
        return torch.as_tensor(list(self.sampler), dtype=torch.long, device=self.device)

    def __iter__(self) -> Iterator[torch.Tensor | slice]:
        # a generator: this runs at the first batch, after Lightning has set the epoch
        epoch, first = self.epoch, 0
        if self.resume_at is not None:  # once, and only in the epoch the checkpoint was taken in
            if self.resume_at[0] == epoch:
                first = self.resume_at[1]
            self.resume_at = None
        self.position = (epoch, first)
        order, size = self._order(), self.batch_size
        n = len(self.sampler)
        stop = n - n % size if self.drop_last else n
        for done, start in enumerate(range(first * size, stop, size), start=first + 1):
            self.position = (epoch, done)
            yield slice(start, start + size) if order is None else order[start : start + size]


class TensorBatchLoader(DataLoader):
    """A DataLoader of ``(x, y)`` batches from tensors in memory; make one with :meth:`from_tensors`.

    Its ``sampler`` is its batch sampler's order, which is where Lightning looks for the order: a
    DataLoader given a ``batch_sampler`` otherwise reports a ``SequentialSampler`` it never uses.
    Its ``state_dict`` is the batch sampler's: Lightning saves it in every checkpoint and loads
    it on resume.
    """

    @property
    def sampler(self) -> Sampler[int]:
        return self.batch_sampler.sampler

    @sampler.setter
    def sampler(self, unused: Sampler[int]) -> None:
        """``DataLoader.__init__`` stores the sampler it makes beside a batch sampler: not used."""

    def state_dict(self) -> dict[str, Any]:
        return self.batch_sampler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.batch_sampler.load_state_dict(state)

    @classmethod
    def from_tensors(cls, x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool,
                     drop_last: bool, seed: int = 0, rank: int = 0,
                     world_size: int = 1) -> TensorBatchLoader:
        """Batches of ``(x, y)`` in an order of ``(seed, epoch)``, this rank's shard of it.

        Args:
            x: inputs, first dim = samples; batches are cut on the device it is on.
            y: labels.
            batch_size: samples per batch (per rank).
            shuffle: draw a new permutation every epoch.
            drop_last: drop the last incomplete batch (training) or keep it (evaluation).
            seed: base seed of the permutations.
            rank: this process's rank.
            world_size: number of processes; shuffled (training) shards are cut to equal length
                so every rank takes the same number of steps.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        data = ResidentTensors(x, y)
        order = EpochOrder(data, world_size, rank, shuffle=shuffle, seed=seed, drop_last=shuffle)
        # a generator of its own: each iterator draws its workers' base seed from it, which from
        # the global RNG would shift the dropout masks and augmentations after it (a run resumed
        # at an epoch's end makes one iterator fewer after the epoch's seeding than the straight one)
        return cls(data, batch_sampler=TensorBatchSampler(order, batch_size, drop_last, x.device),
                   collate_fn=whole_batch, generator=torch.Generator())
