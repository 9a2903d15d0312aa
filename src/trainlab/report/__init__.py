"""Sweep report: turn a Hydra multirun dir into ``summary.csv``, ``summary.md`` and plots.

Trials are grouped into *options*, their overrides without the seed; each option is reported
as mean +- sample std over its ok seeds, and its diverged and failed trials are counted, listed
apart and never averaged. :mod:`~trainlab.report.load` reads the sweep into frames,
:mod:`~trainlab.report.stats` groups and summarizes them, :mod:`~trainlab.report.render`
writes the files.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from trainlab.report.load import Trials, configured_report, load_trials, optimized_metric
from trainlab.report.render import format_markdown, plot_curves, plot_metric, write_csv
from trainlab.report.stats import (
    CORE_METRICS,
    default_metrics,
    failed_trials,
    mean_curves,
    option_labels,
    option_settings,
    summarize,
)

# the learning curves of a sweep, mean per option: accuracy shows what was learned, loss shows
# overfitting (it rises while accuracy still holds)
CURVE_FILES = {"val/acc": "curves.png", "val/loss": "curves_val_loss.png"}

__all__ = ["Trials", "configured_report", "load_trials", "summarize", "write_report"]


def write_report(sweep_dir: str | Path, metrics: Sequence[str] | None = None,
                 option_keys: Sequence[str] | None = None) -> dict[str, Path]:
    """Write ``summary.csv``, ``summary.md``, ``plot_<metric>.png`` and the curves of
    :data:`CURVE_FILES` (``curves.png``: val/acc, ``curves_val_loss.png``).

    Args:
        sweep_dir: The multirun dir; the files go there.
        metrics: Metrics for the table and plots. Default: the table gets
            :func:`~trainlab.report.stats.default_metrics` (the metric the sweep's search
            optimizes first, from its ``multirun.yaml``) and plots the core metrics present.
        option_keys: See :func:`~trainlab.report.stats.option_settings`.

    Returns:
        ``{file name: path}`` of the files written.

    Raises:
        FileNotFoundError: ``sweep_dir`` is not a directory.
        ValueError: It holds no trial.
    """
    sweep = Path(sweep_dir)
    if not sweep.is_dir():
        raise FileNotFoundError(f"sweep dir {sweep} does not exist")
    trials = load_trials(sweep)
    if trials.info.empty:
        raise ValueError(f"no trials in {sweep}: no sub-dir has .hydra/overrides.yaml")
    optimized = optimized_metric(sweep)
    table_metrics = default_metrics(trials.results, optimized) if metrics is None else list(metrics)
    plot_metrics = [m for m in CORE_METRICS if m in table_metrics] if metrics is None else table_metrics
    labels = option_labels(trials, option_keys)
    option_setting = option_settings(trials, option_keys).groupby(labels, sort=False).first()
    stats = summarize(trials, table_metrics, labels)
    files = {name: sweep / name for name in ("summary.csv", "summary.md")}
    write_csv(trials, files["summary.csv"])
    markdown = format_markdown(stats, failed_trials(trials, labels), table_metrics, f"Sweep {sweep.name}",
                               optimized)
    files["summary.md"].write_text(markdown)

    ok = trials.info["status"] == "ok"
    for metric in plot_metrics:
        name = f"plot_{metric.replace('/', '_')}.png"
        points = trials.results.reindex(columns=[metric])[metric][ok].astype(float).set_axis(labels[ok])
        if plot_metric(stats, points, option_setting, sweep / name):
            files[name] = sweep / name
    for metric, name in CURVE_FILES.items():
        if plot_curves(mean_curves(trials, labels, metric), option_setting, sweep / name, metric):
            files[name] = sweep / name
    return files
