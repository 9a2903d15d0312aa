"""Whole-batch loading from in-memory tensors: one index op per batch, no per-sample Python."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch


class TensorBatchLoader:
    """Iterate over ``(x, y)`` batches of tensors held in memory.

    The order of an epoch depends only on ``(seed, epoch)``, and the loader is resumable: its
    ``state_dict`` (which Lightning saves in every checkpoint) holds the epoch and the number of
    its batches already trained on, and after ``load_state_dict`` the next iteration of that
    epoch starts at the following batch. So a run resumed from a checkpoint taken at any step
    sees exactly the batches an uninterrupted run would. Under DDP each rank takes its own shard
    of the permutation (the ranks stand at the same batch).

    Args:
        x: inputs, first dim = samples (uint8 images or float features).
        y: labels.
        batch_size: samples per batch (per rank).
        shuffle: draw a new permutation every epoch.
        drop_last: drop the last incomplete batch (training) or keep it (evaluation).
        seed: base seed of the permutations.
        epoch_fn: returns the current epoch (the Trainer's), read at the start of iteration.
        rank: this process's rank.
        world_size: number of processes; shuffled (training) shards are cut to equal length
            so every rank takes the same number of steps.
        batches_done: returns how many batches of the current epoch have been trained on (the
            Trainer's count), read by ``state_dict``.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool,
                 drop_last: bool, seed: int = 0, epoch_fn: Callable[[], int] | None = None,
                 rank: int = 0, world_size: int = 1,
                 batches_done: Callable[[], int] | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.shuffle, self.drop_last = shuffle, drop_last
        self.seed = seed
        self.epoch_fn = epoch_fn or (lambda: 0)
        self.rank, self.world_size = rank, world_size
        self.batches_done = batches_done or (lambda: 0)
        self.resume_at: tuple[int, int] | None = None  # (epoch, first batch) after load_state_dict

    def state_dict(self) -> dict[str, int]:
        """The epoch and how many of its batches are done (saved by Lightning in checkpoints)."""
        return {"epoch": self.epoch_fn(), "batches_done": self.batches_done()}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Start the next iteration of ``state['epoch']`` after its ``batches_done`` batches."""
        self.resume_at = (int(state["epoch"]), int(state["batches_done"]))

    def _indices(self) -> torch.Tensor:
        n = len(self.x)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch_fn())
            order = torch.randperm(n, generator=g)
        else:
            order = torch.arange(n)
        if self.world_size > 1:
            if self.shuffle:  # training: equal shards, or DDP ranks would wait on each other
                order = order[: n - n % self.world_size]
            order = order[self.rank :: self.world_size]
        return order

    def __len__(self) -> int:
        n = len(self.x)
        if self.world_size > 1:
            n = n // self.world_size if self.shuffle else -(-(n - self.rank) // self.world_size)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self._indices()
        stop = len(order) - len(order) % self.batch_size if self.drop_last else len(order)
        first = 0
        if self.resume_at is not None:  # once, and only in the epoch the checkpoint was taken in
            epoch, done = self.resume_at
            self.resume_at = None
            first = done * self.batch_size if epoch == self.epoch_fn() else 0
        if not self.shuffle and self.world_size == 1:  # contiguous slices: views, no copies
            for i in range(first, stop, self.batch_size):
                yield self.x[i : i + self.batch_size], self.y[i : i + self.batch_size]
            return
        order = order.to(self.x.device)  # data resident on a GPU: cut the batches there
        for i in range(first, stop, self.batch_size):
            idx = order[i : i + self.batch_size]
            yield self.x.index_select(0, idx), self.y.index_select(0, idx)  # 6x x[idx] on CPU
