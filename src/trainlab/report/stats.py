"""Group trials into options and summarize each as mean +- std over its ok seeds.

An *option* is a trial's overrides without the seed. Diverged, failed, pruned and interrupted
trials are counted per option and listed apart, never averaged.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from trainlab.report.load import CURVE_METRIC, SEED_KEY, Trials, read_curve

CORE_METRICS = ("test/acc", "test/loss", "val/acc", "gap/acc", "wall_s")
GROUPED_PREFIXES = ("weights/", "grad/", "memory/")  # reported whenever a trial has them
DEFAULT_OPTION = "default"  # label when no override key varies across the sweep
# the statuses counted apart; any other (a run stopped while testing, or unknown) counts as
# interrupted when it is trainlab's "testing", else as failed
COUNTED = ("ok", "diverged", "failed", "pruned", "interrupted")
AS_INTERRUPTED = ("testing",)


def counted_status(status: pd.Series) -> pd.Series:
    """Each trial's status as one of :data:`COUNTED`."""
    status = status.where(~status.isin(AS_INTERRUPTED), "interrupted")
    return status.where(status.isin(COUNTED), "failed")


def default_metrics(results: pd.DataFrame, optimized: str | None = None) -> list[str]:
    """The metric a search optimizes, then the core metrics present, then any ``weights/*``,
    ``grad/*``, ``memory/*`` in column order."""
    core = [m for m in (optimized, *CORE_METRICS) if m and m in results]
    return list(dict.fromkeys(core)) + [m for m in results if m.startswith(GROUPED_PREFIXES)]


def option_settings(trials: Trials, option_keys: Sequence[str] | None = None) -> pd.DataFrame:
    """Each trial's option: one column per option key, NaN where the trial does not set it.

    Args:
        trials: From :func:`~trainlab.report.load.load_trials`.
        option_keys: The keys that define an option. Default: every override key but the seed
            whose value differs between trials (a shared ``trainer.max_epochs=3`` would only
            lengthen labels), in order of first appearance.
    """
    if option_keys is None:
        candidates = trials.overrides.drop(columns=SEED_KEY, errors="ignore")
        option_keys = [k for k in candidates if candidates[k].nunique(dropna=False) > 1]
    return trials.overrides.reindex(columns=list(option_keys))


def option_labels(trials: Trials, option_keys: Sequence[str] | None = None) -> pd.Series:
    """Each trial's option as ``"key=value,key=value"`` (see :func:`option_settings`), ``"default"``
    when it sets none of the option keys."""
    settings = option_settings(trials, option_keys)
    labels = [",".join(f"{k}={v}" for k, v in row.dropna().items()) or DEFAULT_OPTION
              for _, row in settings.iterrows()]
    return pd.Series(labels, index=settings.index, name="option", dtype=object)


def summarize(trials: Trials, metrics: Sequence[str] | None = None,
              labels: pd.Series | None = None) -> pd.DataFrame:
    """Per-option statistics over the seeds of the ok trials.

    Args:
        trials: From :func:`~trainlab.report.load.load_trials`.
        metrics: Result keys to aggregate; default :func:`default_metrics`.
        labels: Each trial's option; default :func:`option_labels` with its default keys.

    Returns:
        One row per option (indexed by its label, in order of first appearance). Columns
        ``("n", status)`` count its trials of each status of :data:`COUNTED`; ``(metric, "mean")``,
        ``(metric, "std")`` (sample std, ddof=1: NaN for one value) and ``(metric, "count")``
        (ok trials that report it) summarize each metric.
    """
    metrics = default_metrics(trials.results) if metrics is None else list(metrics)
    labels = option_labels(trials) if labels is None else labels
    status = counted_status(trials.info["status"])
    counts = pd.crosstab(labels, status).reindex(index=labels.unique(), columns=COUNTED, fill_value=0)
    stats = pd.concat({"n": counts}, axis=1)
    if not metrics:
        return stats
    ok_results = trials.results.reindex(columns=metrics).astype(float).where(status == "ok", axis=0)
    return stats.join(ok_results.groupby(labels, sort=False).agg(["mean", "std", "count"]))


def failed_trials(trials: Trials, labels: pd.Series | None = None) -> pd.DataFrame:
    """``job``, ``option``, ``seed``, ``status`` and ``error`` of every trial that is not ok.

    ``labels`` are each trial's option, as in :func:`summarize`.
    """
    labels = option_labels(trials) if labels is None else labels
    listed = trials.info.assign(option=labels)[trials.info["status"] != "ok"]
    return listed.reset_index()[["job", "option", "seed", "status", "error"]]


def mean_curves(trials: Trials, labels: pd.Series | None = None,
                metric: str = CURVE_METRIC) -> pd.DataFrame:
    """The mean learning curve of each option over its ok trials (:func:`read_curve`).

    ``labels`` are each trial's option, as in :func:`summarize`.

    Returns:
        One column per option with data (order of first appearance), indexed by epoch; each epoch
        averages the trials that logged it.
    """
    labels = option_labels(trials) if labels is None else labels
    ok = trials.info.index[trials.info["status"] == "ok"]
    curves = pd.DataFrame({job: read_curve(trials.info.at[job, "path"], metric) for job in ok})
    if curves.empty:
        return curves
    means = curves.T.groupby(labels[curves.columns], sort=False).mean().T
    return means.sort_index().dropna(axis=1, how="all")
