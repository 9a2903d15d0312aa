"""Read a sweep dir into frames: one row per trial, indexed by its job (path below the sweep dir).

A trial is a run dir of the sweep (see :mod:`trainlab.rundir`); everything here reads through that
module. Only the numeric entries of ``results.json`` are results; its ``status`` and ``error`` go to
:attr:`Trials.info`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from trainlab import rundir

SEED_KEY = "seed"
CURVE_METRIC = "val/acc"


@dataclass(frozen=True)
class Trials:
    """A sweep's trials in natural job order (job 10 after job 9), three frames on one index.

    Attributes:
        info: ``path``, ``status`` (``ok``, ``diverged``, ``failed``, ...), ``error`` (why it is not
            ok, ``""`` if it is) and ``seed`` (text: the override, else the results' seed, else ``""``).
        overrides: One text column per override key, NaN where a trial does not set it.
        results: One column per numeric ``results.json`` key, NaN where a trial lacks it. The
            values are as the file holds them (object dtype, so summary.csv writes an epoch as
            ``3``, not ``3.0``); take ``.astype(float)`` to compute.
    """

    info: pd.DataFrame
    overrides: pd.DataFrame
    results: pd.DataFrame


def parse_overrides(overrides: Iterable[str]) -> dict[str, str]:
    """``{key: value}`` of Hydra override strings, keys without ``+``/``++``/``~`` (``~key`` -> ``""``)."""
    parsed = (str(o).partition("=") for o in overrides)
    return {key.strip().lstrip("+~"): value.strip() for key, _, value in parsed}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _read_results(run_dir: Path) -> tuple[dict[str, Any], str]:
    """The run's ``results.json`` and ``""``, or ``{}`` and why it cannot be read."""
    try:
        results = rundir.read_results(run_dir)
    except FileNotFoundError:
        return {}, f"no {rundir.RESULTS}"
    except (OSError, ValueError) as exc:  # rundir.RunDirError: not JSON, or not an object
        return {}, f"unreadable {rundir.RESULTS}: {exc}"
    return results, ""


def _trial_info(overrides: dict[str, str], raw: dict[str, Any], numbers: dict[str, float],
                unreadable: str) -> dict[str, str]:
    status = str(raw.get("status", "ok")) if not unreadable else "failed"
    error = unreadable or str(raw.get("error") or "")
    if status == "diverged" and not error:  # say where it stopped
        steps = numbers.get("global_step")
        error = "non-finite loss" + ("" if steps is None else f" after {int(steps)} optimizer steps")
    seed = overrides.get(SEED_KEY, numbers.get(SEED_KEY, ""))
    if isinstance(seed, float) and seed.is_integer():
        seed = int(seed)
    return {"status": status, "error": error, "seed": str(seed)}


def load_trials(sweep_dir: str | Path) -> Trials:
    """Read every trial of a sweep (:func:`trainlab.rundir.trial_dirs`).

    A trial without a readable ``results.json`` is ``failed``, with the reason as its error.
    """
    sweep = Path(sweep_dir)
    dirs = rundir.trial_dirs(sweep)
    jobs = pd.Index([d.relative_to(sweep).as_posix() for d in dirs], name="job")
    info, overrides, results = [], [], []
    for run_dir in dirs:
        overrides.append(parse_overrides(rundir.saved_overrides(run_dir)))
        raw, unreadable = _read_results(run_dir)
        results.append({k: v for k, v in raw.items() if _is_number(v)})
        info.append({"path": run_dir, **_trial_info(overrides[-1], raw, results[-1], unreadable)})
    return Trials(pd.DataFrame(info, index=jobs, columns=["path", "status", "error", "seed"]),
                  pd.DataFrame(overrides, index=jobs), pd.DataFrame(results, index=jobs, dtype=object))


def read_curve(run_dir: str | Path, metric: str = CURVE_METRIC) -> pd.Series:
    """One metric by epoch from every attempt's ``metrics.csv`` (:func:`trainlab.rundir.read_metrics`).

    Returns:
        Values indexed by epoch, sorted; the last row wins when an epoch logs the metric twice.
        Empty when there is no file or column.
    """
    rows = pd.DataFrame(rundir.read_metrics(run_dir))
    if metric not in rows or "epoch" not in rows:
        return pd.Series(dtype=float, name=metric)
    curve = rows[["epoch", metric]].apply(pd.to_numeric, errors="coerce").dropna()
    return curve.groupby(curve["epoch"].astype(int))[metric].last()


def configured_report(sweep_dir: str | Path) -> dict[str, list[str] | None]:
    """The arguments the sweep's own report callback was given, to regenerate the same report.

    Returns:
        ``{"metrics": ..., "option_keys": ...}`` from ``hydra.callbacks.report`` of the sweep's
        ``multirun.yaml``, None for each one not set (or when the file is missing or unreadable).
    """
    found: dict[str, list[str] | None] = {"metrics": None, "option_keys": None}
    try:
        config = yaml.safe_load((Path(sweep_dir) / rundir.SWEEP_CONFIG).read_text()) or {}
        report = config["hydra"]["callbacks"]["report"] or {}
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return found
    for key in found:
        if isinstance(report.get(key), list):
            found[key] = [str(v) for v in report[key]]
    return found


def optimized_metric(sweep_dir: str | Path) -> str | None:
    """The metric the sweep's search optimizes (``optimized_metric`` of its ``multirun.yaml``;
    ``val/acc`` for ``hparams_search=optuna``), or None."""
    try:
        config = yaml.safe_load((Path(sweep_dir) / rundir.SWEEP_CONFIG).read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None
    metric = config.get("optimized_metric") if isinstance(config, dict) else None
    return str(metric) if metric else None
