"""``results.json``: the flat record of a run that reports and sweepers read."""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

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


def metrics_files(run_dir: str | Path) -> list[Path]:
    """The ``metrics.csv`` of every attempt of a run, oldest first.

    Lightning's CSVLogger (``logger=csv``) writes ``csv/version_N/metrics.csv``, a new version
    for each attempt (the first run, then each resume or requeue). A run dir with a plain
    ``metrics.csv`` (LightningCLI's layout, or hand-made) gives that one file.
    """
    run_dir = Path(run_dir)
    if (run_dir / "metrics.csv").is_file():
        return [run_dir / "metrics.csv"]
    return sorted(run_dir.glob("csv/version_*/metrics.csv"),
                  key=lambda p: int(p.parent.name.rpartition("_")[2] or 0))


def read_metrics(run_dir: str | Path) -> list[dict[str, str]]:
    """The rows of every attempt's ``metrics.csv`` joined in order (empty if none)."""
    rows: list[dict[str, str]] = []
    for path in metrics_files(run_dir):
        with path.open(newline="") as handle:
            rows += list(csv.DictReader(handle))
    return rows


def read_results(path: str | Path) -> dict[str, Any]:
    """Load a results.json."""
    return json.loads(Path(path).read_text())
