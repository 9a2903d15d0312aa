"""Write the report files: ``summary.csv``, ``summary.md`` and the plots.

matplotlib is imported only when a plot is drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from trainlab.report.load import CURVE_METRIC, Trials
from trainlab.report.stats import DEFAULT_OPTION

STD_DIGITS = 2  # significant digits of a std in summary.md: 3 seeds do not pin down more
MAX_ERROR_CHARS = 200  # error messages are truncated in summary.md, not in summary.csv
FIGSIZE = (6.0, 3.5)  # inches
DPI = 100
LOG_SCALE_RATIO = 1e3  # plot on a log axis when positive values span more than this factor
TICK_CHAR_PX = 4.5  # rough width of one 7-pt tick-label character at DPI, to detect crowding


def write_csv(trials: Trials, path: Path) -> None:
    """One row per trial: ``job``, every override key, ``status``, ``error``, then every numeric
    result not already a column (a ``seed`` in both the overrides and the results is one column;
    the override wins)."""
    shared = trials.overrides.columns.intersection(trials.results.columns)
    overrides = trials.overrides.astype(object).fillna(trials.results[shared])
    fixed = [*overrides, "status", "error"]
    results = trials.results.drop(columns=[c for c in trials.results if c in fixed])
    table = pd.concat([overrides, trials.info[["status", "error"]], results], axis=1)
    table.to_csv(path, lineterminator="\r\n")  # CRLF, as RFC 4180 and the csv module write


def _cell(text: Any) -> str:
    """Text safe inside a markdown table cell: one line, at most MAX_ERROR_CHARS, ``|`` escaped."""
    text = " ".join(str(text).split())
    if len(text) > MAX_ERROR_CHARS:
        text = text[: MAX_ERROR_CHARS - 3] + "..."
    return text.replace("|", "\\|")


NOT_OK = ("diverged", "failed", "pruned", "interrupted")


def not_ok(counts: pd.Series) -> str:
    """``"2 diverged, 1 pruned"`` from an option's ``n`` counts; ``""`` when all are ok."""
    return ", ".join(f"{counts[k]} {k}" for k in NOT_OK if counts[k])


def _mean_std(stats: pd.DataFrame, metric: str) -> list[str]:
    """``mean ± std`` per option, just the mean for one value, ``-`` for none."""
    return ["-" if n == 0 else f"{mean:.4g}" if n == 1 else f"{mean:.4g} ± {std:.{STD_DIGITS}g}"
            for mean, std, n in stats[metric][["mean", "std", "count"]].itertuples(index=False)]


def _table(frame: pd.DataFrame, right: Sequence[str] = ()) -> str:
    frame = frame.map(_cell)
    align = ["right" if c in right else "left" for c in frame]
    return frame.to_markdown(index=False, disable_numparse=True, colalign=align)


def format_markdown(stats: pd.DataFrame, failed: pd.DataFrame, metrics: Sequence[str],
                    title: str = "Sweep report", optimized: str | None = None) -> str:
    """``summary.md``: a table of ``mean ± std`` per option and a list of the trials not ok.

    Args:
        stats: From :func:`~trainlab.report.stats.summarize`, with ``metrics``.
        failed: From :func:`~trainlab.report.stats.failed_trials`.
        metrics: Metric columns, in order.
        title: First heading.
        optimized: The metric the sweep's search optimizes, named under the title.

    Returns:
        Markdown; the table has a ``not ok`` column counting each option's diverged, failed,
        pruned and interrupted trials when the sweep has any.
    """
    n = stats["n"].sum()
    table = pd.DataFrame({"option": stats.index, "n": stats["n", "ok"].to_numpy()})
    if n[list(NOT_OK)].sum():
        table["not ok"] = [not_ok(counts) for _, counts in stats["n"].iterrows()]
    for metric in metrics:
        table[metric] = _mean_std(stats, metric)
    failed_md = _table(failed) if len(failed) else "None."
    stopped = "".join(f", {n[k]} {k}" for k in ("pruned", "interrupted") if n[k])
    search = f"The search optimizes `{optimized}`. " if optimized else ""
    return (f"# {title}\n\n{n.sum()} trials: {n['ok']} ok, {n['diverged']} diverged, "
            f"{n['failed']} failed{stopped}; {len(stats)} options. {search}Cells are mean ± sample "
            "std (ddof=1) over the ok seeds; the other trials are counted, never averaged.\n\n"
            f"{_table(table, right=['n', *metrics])}\n\n"
            f"## Failed or diverged trials\n\n{failed_md}\n")


def short_labels(settings: Sequence[dict[str, str]]) -> tuple[list[str], str]:
    """Compact plot labels for options, from each option's ``{key: value}``.

    Returns:
        ``(labels, axis_label)``. When every option sets the same keys the labels are the values
        alone, one line per key, and ``axis_label`` names the keys (``"a / b"``); otherwise the
        labels are ``key=value`` lines and ``axis_label`` is ``""``.
    """
    keys = [list(s) for s in settings]
    if keys and keys[0] and all(k == keys[0] for k in keys):
        return ["\n".join(s.values()) for s in settings], " / ".join(keys[0])
    return ["\n".join(f"{k}={v}" for k, v in s.items()) or DEFAULT_OPTION for s in settings], ""


def y_scale(values: Sequence[float]) -> tuple[str, dict[str, float]]:
    """Matplotlib y scale for values that may span many decades (vanishing gradients: 1e-10 next
    to 1): ``log`` when all are positive and span more than LOG_SCALE_RATIO, ``symlog`` from the
    smallest positive one when the rest are exactly 0 (dead units), else ``linear``."""
    positive = [v for v in values if v > 0]
    if not positive or min(values) < 0 or max(positive) <= LOG_SCALE_RATIO * min(positive):
        return "linear", {}
    if len(positive) == len(values):
        return "log", {}
    return "symlog", {"linthresh": min(positive)}


def _axes() -> Any:
    """Axes on an Agg canvas, outside pyplot so no global backend state is touched."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    FigureCanvasAgg(fig)
    return fig.subplots()


def _settings(settings: pd.DataFrame, options: Sequence[str]) -> list[dict[str, str]]:
    return [settings.loc[o].dropna().to_dict() for o in options]


def plot_metric(stats: pd.DataFrame, points: pd.Series, settings: pd.DataFrame, path: Path) -> bool:
    """Plot one metric by option: each ok trial as a dot, the mean with std error bars.

    Ticks of options with diverged or failed trials say how many; an option with no ok trial
    gets a tick and no point. The y axis follows :func:`y_scale`.

    Args:
        stats: From :func:`~trainlab.report.stats.summarize`, with the metric.
        points: The metric of each ok trial, indexed by option label and named by the metric.
        settings: Each option's settings, indexed by option label.
        path: PNG file to write.

    Returns:
        Whether a file was written (False when no option has a value).
    """
    metric, points = points.name, points.dropna()
    if points.empty:
        return False
    counts = stats["n"]
    shown = [o for o in stats.index
             if o in points.index or (counts.at[o, "ok"] == 0 and not_ok(counts.loc[o]))]
    x = pd.Series(range(len(shown)), index=shown)
    with_values = stats.loc[[o for o in shown if o in points.index], metric]
    ax = _axes()
    ax.plot(x.loc[points.index], points, ".", color="0.6")
    ax.errorbar(x.loc[with_values.index], with_values["mean"], yerr=with_values["std"].fillna(0.0),
                fmt="o", capsize=4)
    labels, axis_label = short_labels(_settings(settings, shown))
    labels = [label + (f"\n({not_ok(counts.loc[o])})" if not_ok(counts.loc[o]) else "")
              for label, o in zip(labels, shown, strict=True)]
    widest = max(len(line) for label in labels for line in label.split("\n"))
    crowded = len(shown) * widest * TICK_CHAR_PX > FIGSIZE[0] * DPI * 0.8
    ax.set_xticks(range(len(shown)), labels, fontsize=7, rotation=30 if crowded else 0,
                  ha="right" if crowded else "center")
    ax.set_xlim(-0.5, len(shown) - 0.5)
    scale, kwargs = y_scale(points.tolist())
    ax.set_yscale(scale, **kwargs)
    if scale == "symlog":
        ax.set_ylim(bottom=0)  # a mean - std below 0 would open an empty negative half
    ax.set_xlabel(axis_label, fontsize=8)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric}: mean ± std over seeds", fontsize=9)
    ax.figure.tight_layout()
    ax.figure.savefig(path)
    return True


def plot_curves(curves: pd.DataFrame, settings: pd.DataFrame, path: Path,
                metric: str = CURVE_METRIC) -> bool:
    """Plot one mean learning curve per option (a column of ``curves``, indexed by epoch).

    Returns:
        Whether a file was written (False when there are no curves).
    """
    if curves.empty:
        return False
    names, title = short_labels(_settings(settings, curves.columns))
    ax = _axes()
    for name, (_, curve) in zip(names, curves.items(), strict=True):
        curve = curve.dropna()
        ax.plot(curve.index, curve, marker="o", markersize=3, label=name.replace("\n", ", "))
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} by epoch, mean over seeds", fontsize=9)
    many = len(names) > 5
    ax.legend(fontsize=6 if many else 7, ncol=2 if many else 1, title=title or None,
              title_fontsize=7)
    ax.figure.tight_layout()
    ax.figure.savefig(path)
    return True
