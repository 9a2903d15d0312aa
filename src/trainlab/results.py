"""``results.json``: the flat record of a run that reports and sweepers read."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trainlab.atomic_files import write_text_atomically

STATUSES = ("ok", "diverged", "failed", "interrupted")


def as_number(value: Any) -> float | int | None:
    """A metric as a plain Python number (tensors included); None if it is not one."""
    import torch  # here, so that reports read results without loading torch

    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            return None
        value = value.item()
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        return value
    return None


def flat_metrics(metrics: Mapping[str, Any]) -> dict[str, float | int]:
    """Numeric entries of a metrics mapping. Lightning's ``*_step`` / ``*_epoch`` copies of a
    metric logged both per step and per epoch are dropped: the plain key holds the epoch's."""
    out = {}
    for key, value in metrics.items():
        number = as_number(value)
        copy = key.endswith("_step") or (key.endswith("_epoch") and key[:-len("_epoch")] in metrics)
        if number is not None and not copy:
            out[key] = number
    return out


def write_results(path: str | Path, results: Mapping[str, Any]) -> Path:
    """Write ``results`` as sorted JSON atomically (:mod:`trainlab.atomic_files`); NaN/inf become null."""
    path = Path(path)
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
             for k, v in results.items()}
    text = json.dumps(clean, indent=2, sort_keys=True) + "\n"
    return write_text_atomically(path, text)
