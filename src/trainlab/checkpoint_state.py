"""What trainlab adds to a checkpoint so that a run resumed at any step continues exactly:
every rank's RNG states and its running train metrics, gathered from all ranks at save time
(Lightning writes rank 0's checkpoint, so values that differ per rank are gathered first)."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
import torch.distributed as dist


def from_every_rank(value: Any, world_size: int) -> list[Any]:
    """``value`` of each rank, in rank order (a collective: every rank must call it)."""
    if world_size > 1 and dist.is_available() and dist.is_initialized():
        gathered: list[Any] = [None] * world_size
        dist.all_gather_object(gathered, value)
        return gathered
    return [value]


def rng_states() -> dict[str, Any]:
    """This process's torch (CPU and CUDA), numpy and Python RNG states, as tensors and plain
    values (checkpoints load with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
            "numpy": [kind, keys.tolist(), pos, has_gauss, gauss],
            "python": random.getstate()}


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore what :func:`rng_states` returned."""
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
    random.setstate(states["python"])
