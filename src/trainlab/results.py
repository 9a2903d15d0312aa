"""``results.json``: the flat record of a run that reports and sweepers read."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

STATUSES = ("ok", "diverged", "failed", "interrupted")


def as_number(value: Any) -> float | int | None:
    """A metric as a plain Python number (tensors included); None if it is not one."""
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
    """Numeric entries of a metrics mapping, step-level ``*_step`` keys dropped."""
    out = {}
    for key, value in metrics.items():
        number = as_number(value)
        if number is not None and not key.endswith("_step"):
            out[key] = number
    return out


def add_gaps(results: dict[str, Any]) -> dict[str, Any]:
    """Generalization gaps: ``gap/acc = train/acc - test/acc``, ``gap/loss = test/loss - train/loss``."""
    if "train/acc" in results and "test/acc" in results:
        results["gap/acc"] = results["train/acc"] - results["test/acc"]
    if "train/loss" in results and "test/loss" in results:
        results["gap/loss"] = results["test/loss"] - results["train/loss"]
    return results


def write_results(path: str | Path, results: Mapping[str, Any]) -> Path:
    """Write ``results`` as sorted JSON atomically (temp file + rename); NaN/inf become null."""
    path = Path(path)
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
             for k, v in results.items()}
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(clean, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


def read_results(path: str | Path) -> dict[str, Any]:
    """Load a results.json."""
    return json.loads(Path(path).read_text())
