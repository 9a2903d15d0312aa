"""Sweep report: turn a Hydra multirun dir into a table, a markdown summary and plots.

A sweep dir holds one job dir per trial: any sub-dir with ``.hydra/overrides.yaml``. A job
dir has ``results.json`` (flat metrics plus ``status`` and, on failure, ``error``) and
optionally Lightning's ``metrics.csv``. Trials are grouped into *options*: their overrides
with the seed removed. Each option is reported as mean +- sample std over its ok seeds;
diverged and failed trials are counted per option, listed apart and never enter a mean.

Past the loaders (``load_*``, :func:`read_curve`, :func:`configured_report`) everything is a
pure function of the trials except :func:`write_report` and the two ``plot_*`` functions,
which write files. matplotlib is imported only when plotting.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from trainlab.rundir import read_metrics, trial_dirs

SEED_KEY = "seed"
CORE_METRICS = ("test/acc", "test/loss", "gap/acc", "wall_s")
GROUPED_PREFIXES = ("weights/", "grad/", "memory/")  # reported whenever a trial has them
CURVE_METRIC = "val/acc"
FIGSIZE = (6.0, 3.5)  # inches
DPI = 100
STD_DIGITS = 2  # significant digits of a std in summary.md: 3 seeds do not pin down more
MAX_ERROR_CHARS = 200  # error messages are truncated in summary.md, not in summary.csv
DEFAULT_OPTION = "default"  # label when no override key varies across the sweep
LOG_SCALE_RATIO = 1e3  # plot on a log axis when positive values span more than this factor
TICK_CHAR_PX = 4.5  # rough width of one 7-pt tick-label character at DPI, to detect crowding


def parse_overrides(overrides: Iterable[str]) -> dict[str, str]:
    """Map Hydra override strings to ``{key: value}``.

    Args:
        overrides: Strings such as ``"regularization=l1"`` or ``"+trainer.foo=1"``.

    Returns:
        Keys without Hydra's ``+``/``++``/``~`` prefixes, in the given order; a deletion
        (``~key``) maps to ``""``.
    """
    parsed: dict[str, str] = {}
    for override in overrides:
        key, _, value = str(override).partition("=")
        parsed[key.strip().lstrip("+~")] = value.strip()
    return parsed


def configured_report(sweep_dir: str | Path) -> dict[str, list[str] | None]:
    """The arguments the sweep's own report callback was given, to regenerate the same report.

    Args:
        sweep_dir: The multirun dir; Hydra saves the sweep's config there as ``multirun.yaml``.

    Returns:
        ``{"metrics": ..., "option_keys": ...}`` from ``hydra.callbacks.report`` of that
        config, None for each one not set (or when there is no readable ``multirun.yaml``).
    """
    found: dict[str, list[str] | None] = {"metrics": None, "option_keys": None}
    try:
        config = yaml.safe_load((Path(sweep_dir) / "multirun.yaml").read_text()) or {}
        report = config["hydra"]["callbacks"]["report"] or {}
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return found
    for key in found:
        if isinstance(report.get(key), list):
            found[key] = [str(v) for v in report[key]]
    return found


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def load_trial(job_dir: str | Path, job: str) -> dict[str, Any]:
    """Read one job dir.

    Args:
        job_dir: Dir holding ``.hydra/overrides.yaml`` and, normally, ``results.json``.
        job: Name to report the trial under (its path relative to the sweep dir).

    Returns:
        ``{"job", "path", "overrides", "status", "error", "results"}`` where ``results``
        holds only the numeric entries of ``results.json``. A missing or unreadable
        ``results.json`` gives status ``"failed"`` with the reason as error.
    """
    path = Path(job_dir)
    raw_overrides = yaml.safe_load((path / ".hydra" / "overrides.yaml").read_text()) or []
    trial: dict[str, Any] = {
        "job": job,
        "path": path,
        "overrides": parse_overrides(raw_overrides),
        "status": "failed",
        "error": "",
        "results": {},
    }
    results_file = path / "results.json"
    if not results_file.is_file():
        trial["error"] = "no results.json"
        return trial
    try:
        results = json.loads(results_file.read_text())
    except (OSError, ValueError) as exc:
        trial["error"] = f"unreadable results.json: {exc}"
        return trial
    if not isinstance(results, dict):
        trial["error"] = "results.json is not a JSON object"
        return trial
    trial["status"] = str(results.get("status", "ok"))
    trial["error"] = str(results.get("error") or "")
    trial["results"] = {k: v for k, v in results.items() if _is_number(v)}
    return trial


def load_trials(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """Load every trial of a sweep, see :func:`load_trial` for the dict layout.

    Args:
        sweep_dir: The multirun dir.

    Returns:
        One dict per job dir, in natural job order; empty when there is none.
    """
    sweep = Path(sweep_dir)
    return [
        load_trial(job_dir, job_dir.relative_to(sweep).as_posix())
        for job_dir in trial_dirs(sweep)
    ]


def default_metrics(trials: Sequence[dict[str, Any]]) -> list[str]:
    """Key metrics to summarize: the core ones plus any ``weights/*``, ``grad/*``, ``memory/*``.

    Args:
        trials: Output of :func:`load_trials`.

    Returns:
        Metrics that at least one trial reports, core metrics first, the rest in order of
        first appearance.
    """
    present: dict[str, None] = {}
    for trial in trials:
        present.update(dict.fromkeys(trial["results"]))
    core = [m for m in CORE_METRICS if m in present]
    grouped = [m for m in present if m.startswith(GROUPED_PREFIXES)]
    return core + grouped


def trial_seed(trial: dict[str, Any], seed_key: str = SEED_KEY) -> str:
    """The trial's seed as text: its override, else the ``seed`` in results, else ``""``."""
    if seed_key in trial["overrides"]:
        return trial["overrides"][seed_key]
    value = trial["results"].get(seed_key)
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else str(value)


def varying_keys(
    trials: Sequence[dict[str, Any]],
    option_keys: Sequence[str] | None = None,
    seed_key: str = SEED_KEY,
) -> list[str]:
    """The override keys that define an option.

    Args:
        trials: Output of :func:`load_trials`.
        option_keys: Keys chosen by the caller; returned as given.
        seed_key: Override key of the seed, never an option key by default.

    Returns:
        ``option_keys`` if given, else every override key except ``seed_key`` whose value
        differs between trials (keys set the same way everywhere, like a shared
        ``trainer.max_epochs=3``, would only lengthen labels), in order of first appearance.
    """
    if option_keys is not None:
        return list(option_keys)
    keys: dict[str, None] = {}
    for trial in trials:
        keys.update(dict.fromkeys(k for k in trial["overrides"] if k != seed_key))
    return [k for k in keys if len({t["overrides"].get(k) for t in trials}) > 1]


def option_settings(
    trials: Sequence[dict[str, Any]],
    option_keys: Sequence[str] | None = None,
    seed_key: str = SEED_KEY,
) -> list[dict[str, str]]:
    """Each trial's option as ``{key: value}`` over :func:`varying_keys` that it sets."""
    keys = varying_keys(trials, option_keys, seed_key)
    return [{k: t["overrides"][k] for k in keys if k in t["overrides"]} for t in trials]


def option_labels(
    trials: Sequence[dict[str, Any]],
    option_keys: Sequence[str] | None = None,
    seed_key: str = SEED_KEY,
) -> list[str]:
    """Label each trial with its option: its overrides without the seed.

    Args:
        trials: Output of :func:`load_trials`.
        option_keys: Override keys that define an option; default :func:`varying_keys`.
        seed_key: Override key of the seed.

    Returns:
        One ``"key=value,key=value"`` label per trial, ``"default"`` when no key applies.
    """
    return [
        ",".join(f"{k}={v}" for k, v in settings.items()) or DEFAULT_OPTION
        for settings in option_settings(trials, option_keys, seed_key)
    ]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1).

    Returns:
        ``(nan, nan)`` for no values and ``(mean, nan)`` for one, where the spread is
        undefined. Non-finite values propagate.
    """
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    if n == 1:
        return float(values[0]), math.nan
    if min(values) == max(values):  # exact, where fsum / n could leave a 1e-18 spread
        return float(values[0]), 0.0
    mean = math.fsum(values) / n
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))


def summarize(
    trials: Sequence[dict[str, Any]],
    metrics: Sequence[str] | None = None,
    option_keys: Sequence[str] | None = None,
    seed_key: str = SEED_KEY,
) -> list[dict[str, Any]]:
    """Per-option statistics over the seeds of the ok trials.

    Args:
        trials: Output of :func:`load_trials`.
        metrics: Result keys to aggregate; default :func:`default_metrics`.
        option_keys: See :func:`option_labels`.
        seed_key: Override key of the seed.

    Returns:
        One dict per option in order of first appearance: ``option`` (its label),
        ``settings`` (``{key: value}`` of the label), ``n`` (ok trials), ``n_diverged``,
        ``n_failed`` (every other status: failed, interrupted, unknown), ``seeds`` (of the
        ok trials) and, keyed by metric, ``values`` (list over ok trials that report it),
        ``mean`` and ``std``.
    """
    metrics = default_metrics(trials) if metrics is None else list(metrics)
    settings = option_settings(trials, option_keys, seed_key)
    groups: dict[str, list[dict[str, Any]]] = {}
    group_settings: dict[str, dict[str, str]] = {}
    for trial, label, setting in zip(
        trials, option_labels(trials, option_keys, seed_key), settings, strict=True
    ):
        groups.setdefault(label, []).append(trial)
        group_settings.setdefault(label, setting)
    stats = []
    for label, members in groups.items():
        ok = [t for t in members if t["status"] == "ok"]
        n_diverged = sum(t["status"] == "diverged" for t in members)
        values = {m: [float(t["results"][m]) for t in ok if m in t["results"]] for m in metrics}
        moments = {m: mean_std(v) for m, v in values.items()}
        stats.append(
            {
                "option": label,
                "settings": group_settings[label],
                "n": len(ok),
                "n_diverged": n_diverged,
                "n_failed": len(members) - len(ok) - n_diverged,
                "seeds": [trial_seed(t, seed_key) for t in ok],
                "values": values,
                "mean": {m: mv[0] for m, mv in moments.items()},
                "std": {m: mv[1] for m, mv in moments.items()},
            }
        )
    return stats


def trial_error(trial: dict[str, Any]) -> str:
    """Why a trial is not ok: its error, or for a diverged run without one, where it stopped."""
    if trial["error"] or trial["status"] != "diverged":
        return trial["error"]
    steps = trial["results"].get("global_step")
    return "non-finite loss" + ("" if steps is None else f" after {int(steps)} optimizer steps")


def failed_trials(
    trials: Sequence[dict[str, Any]],
    option_keys: Sequence[str] | None = None,
    seed_key: str = SEED_KEY,
) -> list[dict[str, str]]:
    """The trials whose status is not ``"ok"``.

    Returns:
        ``{"job", "option", "seed", "status", "error"}`` per diverged or failed trial; see
        :func:`trial_error` for the error.
    """
    labels = option_labels(trials, option_keys, seed_key)
    return [
        {
            "job": t["job"],
            "option": label,
            "seed": trial_seed(t, seed_key),
            "status": t["status"],
            "error": trial_error(t),
        }
        for t, label in zip(trials, labels, strict=True)
        if t["status"] != "ok"
    ]


def summary_table(trials: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """Rows of ``summary.csv``: one per trial.

    Returns:
        ``(header, rows)``. Columns: ``job``, every override key, ``status``, ``error``
        (:func:`trial_error`),
        then every numeric results key not already a column (a ``seed`` in both the
        overrides and the results is one column; the override wins).
    """
    override_keys: dict[str, None] = {}
    result_keys: dict[str, None] = {}
    for trial in trials:
        override_keys.update(dict.fromkeys(trial["overrides"]))
        result_keys.update(dict.fromkeys(trial["results"]))
    fixed = ["job", *override_keys, "status", "error"]
    numeric = [k for k in result_keys if k not in fixed]
    rows = []
    for t in trials:
        row: list[Any] = [t["job"]]
        row += [t["overrides"].get(k, t["results"].get(k, "")) for k in override_keys]
        row += [t["status"], trial_error(t)]
        row += [t["results"].get(k, "") for k in numeric]
        rows.append(row)
    return fixed + numeric, rows


def _fmt(value: float, digits: int = 4) -> str:
    return f"{value:.{digits}g}"


def _cell(text: str) -> str:
    """Make text safe inside a markdown table cell."""
    text = " ".join(str(text).split())
    if len(text) > MAX_ERROR_CHARS:
        text = text[: MAX_ERROR_CHARS - 3] + "..."
    return text.replace("|", "\\|")


def _not_ok_cell(stat: dict[str, Any]) -> str:
    """``"2 diverged, 1 failed"`` for an option of :func:`summarize`; ``""`` when all are ok."""
    counts = (("n_diverged", "diverged"), ("n_failed", "failed"))
    parts = [f"{stat.get(k, 0)} {word}" for k, word in counts if stat.get(k, 0)]
    return ", ".join(parts)


def format_markdown(
    stats: Sequence[dict[str, Any]],
    failed: Sequence[dict[str, str]],
    metrics: Sequence[str],
    title: str = "Sweep report",
) -> str:
    """Render ``summary.md``.

    Args:
        stats: Output of :func:`summarize`.
        failed: Output of :func:`failed_trials`.
        metrics: Metric columns, in order.
        title: First heading.

    Returns:
        Markdown with a table of ``mean ± std`` per option (just the mean when one seed,
        ``-`` when none), a ``not ok`` column counting each option's diverged and failed
        trials when the sweep has any, and a section listing those trials.
    """
    n_ok = sum(s["n"] for s in stats)
    n_diverged = sum(s["n_diverged"] for s in stats)
    n_failed = sum(s["n_failed"] for s in stats)
    not_ok = n_diverged + n_failed > 0
    lines = [
        f"# {title}",
        "",
        f"{n_ok + n_diverged + n_failed} trials: {n_ok} ok, {n_diverged} diverged, "
        f"{n_failed} failed; {len(stats)} options. Cells are mean ± sample std (ddof=1) over "
        "the ok seeds; diverged and failed trials are counted, never averaged.",
        "",
        "| option | n | " + ("not ok | " if not_ok else "") + " | ".join(metrics) + " |",
        "|---|---:|" + ("---|" if not_ok else "") + "---:|" * len(metrics),
    ]
    for s in stats:
        cells = [_not_ok_cell(s)] if not_ok else []
        for m in metrics:
            mean, std = s["mean"][m], s["std"][m]
            if not s["values"][m]:
                cells.append("-")
            elif len(s["values"][m]) == 1:
                cells.append(_fmt(mean))
            else:
                cells.append(f"{_fmt(mean)} ± {_fmt(std, STD_DIGITS)}")
        lines.append(f"| {_cell(s['option'])} | {s['n']} | " + " | ".join(cells) + " |")
    lines += ["", "## Failed or diverged trials", ""]
    if failed:
        lines += ["| job | option | seed | status | error |", "|---|---|---|---|---|"]
        lines += [
            "| "
            + " | ".join(_cell(f[k]) for k in ("job", "option", "seed", "status", "error"))
            + " |"
            for f in failed
        ]
    else:
        lines.append("None.")
    return "\n".join(lines) + "\n"


def read_curve(job_dir: str | Path, metric: str = CURVE_METRIC) -> dict[int, float]:
    """One metric by epoch from a job's Lightning ``metrics.csv``.

    Reads every attempt's ``metrics.csv`` (:func:`trainlab.results.read_metrics`), else the
    last ``metrics.csv`` found below the job dir.

    Args:
        job_dir: The trial's dir.
        metric: CSV column, e.g. ``"val/acc"``.

    Returns:
        ``{epoch: value}`` from the rows where the metric is logged (the last row wins when
        an epoch logs it more than once); empty when there is no file or column.
    """
    rows = read_metrics(job_dir)
    if not rows:
        found = sorted(Path(job_dir).glob("**/metrics.csv"))
        rows = read_metrics(found[-1].parent) if found else []
    curve: dict[int, float] = {}
    for row in rows:
        value, epoch = row.get(metric) or "", row.get("epoch") or ""
        if value.strip() and epoch.strip():
            curve[int(float(epoch))] = float(value)
    return curve


def mean_curves(
    trials: Sequence[dict[str, Any]],
    labels: Sequence[str],
    metric: str = CURVE_METRIC,
) -> dict[str, list[tuple[int, float]]]:
    """Mean learning curve per option over its ok trials.

    Args:
        trials: Output of :func:`load_trials`.
        labels: Option label per trial, from :func:`option_labels`.
        metric: ``metrics.csv`` column to average.

    Returns:
        ``{option: [(epoch, mean over the trials that logged that epoch), ...]}`` sorted
        by epoch, options in order of first appearance; options without data are left out.
    """
    per_epoch: dict[str, dict[int, list[float]]] = {}
    for trial, label in zip(trials, labels, strict=True):
        if trial["status"] != "ok":
            continue
        for epoch, value in read_curve(trial["path"], metric).items():
            per_epoch.setdefault(label, {}).setdefault(epoch, []).append(value)
    return {
        label: [(e, math.fsum(v) / len(v)) for e, v in sorted(epochs.items())]
        for label, epochs in per_epoch.items()
    }


def _new_figure() -> Any:
    """A figure on the Agg canvas, outside pyplot so no global backend state is touched."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def short_labels(settings: Sequence[dict[str, str]]) -> tuple[list[str], str]:
    """Compact plot labels for options.

    Args:
        settings: Each option's ``{key: value}`` (``settings`` of :func:`summarize`).

    Returns:
        ``(labels, axis_label)``. When every option sets the same keys the labels are the
        values alone, one line per key, and ``axis_label`` names the keys (``"a / b"``);
        otherwise the labels are ``key=value`` lines and ``axis_label`` is ``""``.
    """
    keys = [list(s) for s in settings]
    if keys and keys[0] and all(k == keys[0] for k in keys):
        return ["\n".join(s.values()) for s in settings], " / ".join(keys[0])
    labels = ["\n".join(f"{k}={v}" for k, v in s.items()) or DEFAULT_OPTION for s in settings]
    return labels, ""


def y_scale(values: Sequence[float]) -> tuple[str, dict[str, float]]:
    """Matplotlib y scale for values that may span many decades (vanishing gradients: 1e-10
    next to 1).

    Returns:
        ``("log", {})`` when every value is positive and they span more than
        ``LOG_SCALE_RATIO``; ``("symlog", {"linthresh": smallest positive})`` when the same
        holds for the positive values and the rest are exactly 0 (dead units); else
        ``("linear", {})``.
    """
    positive = [v for v in values if v > 0]
    if not positive or min(values) < 0 or max(positive) <= LOG_SCALE_RATIO * min(positive):
        return "linear", {}
    if len(positive) == len(values):
        return "log", {}
    return "symlog", {"linthresh": min(positive)}


def plot_metric(stats: Sequence[dict[str, Any]], metric: str, path: str | Path) -> bool:
    """Plot a metric by option: each seed as a dot, mean with std error bars.

    Ticks of options with diverged or failed trials say how many; an option with no ok trial
    left gets a tick and no point. The y axis follows :func:`y_scale`.

    Args:
        stats: Output of :func:`summarize` including ``metric``.
        metric: The metric to plot.
        path: PNG file to write.

    Returns:
        Whether a file was written (False when no option has a value).
    """
    if not any(s["values"].get(metric) for s in stats):
        return False
    shown = [s for s in stats if s["values"].get(metric) or (s["n"] == 0 and _not_ok_cell(s))]
    fig = _new_figure()
    ax = fig.subplots()
    xs = [x for x, s in enumerate(shown) if s["values"].get(metric)]
    with_values = [s for s in shown if s["values"].get(metric)]
    for x, s in zip(xs, with_values, strict=True):
        ax.plot([x] * len(s["values"][metric]), s["values"][metric], ".", color="0.6")
    errors = [0.0 if math.isnan(s["std"][metric]) else s["std"][metric] for s in with_values]
    ax.errorbar(xs, [s["mean"][metric] for s in with_values], yerr=errors, fmt="o", capsize=4)
    labels, axis_label = short_labels([s["settings"] for s in shown])
    labels = [label + (f"\n({_not_ok_cell(s)})" if _not_ok_cell(s) else "")
              for label, s in zip(labels, shown, strict=True)]
    widest = max(len(line) for label in labels for line in label.split("\n"))
    crowded = len(shown) * widest * TICK_CHAR_PX > FIGSIZE[0] * DPI * 0.8
    ax.set_xticks(
        range(len(shown)), labels, fontsize=7, rotation=30 if crowded else 0,
        ha="right" if crowded else "center",
    )  # fmt: skip
    ax.set_xlim(-0.5, len(shown) - 0.5)
    scale, kwargs = y_scale([v for s in with_values for v in s["values"][metric]])
    ax.set_yscale(scale, **kwargs)
    if scale == "symlog":
        ax.set_ylim(bottom=0)  # a mean - std below 0 would open an empty negative half
    ax.set_xlabel(axis_label, fontsize=8)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric}: mean ± std over seeds", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    return True


def plot_curves(
    curves: dict[str, list[tuple[int, float]]],
    path: str | Path,
    metric: str = CURVE_METRIC,
    settings: dict[str, dict[str, str]] | None = None,
) -> bool:
    """Plot one mean learning curve per option.

    Args:
        curves: Output of :func:`mean_curves`.
        path: PNG file to write.
        metric: Y-axis label.
        settings: ``{option label: {key: value}}`` for compact legend entries (see
            :func:`short_labels`); None uses the labels as they are.

    Returns:
        Whether a file was written (False when there are no curves).
    """
    if not curves:
        return False
    names, title = list(curves), None
    if settings is not None and all(label in settings for label in curves):
        short, title = short_labels([settings[label] for label in curves])
        names = [name.replace("\n", ", ") for name in short]
    fig = _new_figure()
    ax = fig.subplots()
    for name, points in zip(names, curves.values(), strict=True):
        epochs, values = zip(*points, strict=True)
        ax.plot(epochs, values, marker="o", markersize=3, label=name)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} by epoch, mean over seeds", fontsize=9)
    many = len(names) > 5
    ax.legend(fontsize=6 if many else 7, ncol=2 if many else 1, title=title or None,
              title_fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    return True


def write_report(
    sweep_dir: str | Path,
    metrics: Sequence[str] | None = None,
    option_keys: Sequence[str] | None = None,
) -> dict[str, Path]:
    """Write ``summary.csv``, ``summary.md``, ``plot_<metric>.png`` and ``curves.png``.

    Args:
        sweep_dir: The multirun dir; the files go there.
        metrics: Metrics for the markdown table and plots. Default: the table gets
            :func:`default_metrics` and plots are drawn for the core metrics present.
        option_keys: See :func:`option_labels`.

    Returns:
        ``{file name: path}`` of the files written.

    Raises:
        FileNotFoundError: ``sweep_dir`` is not a directory.
        ValueError: It holds no job dir.
    """
    sweep = Path(sweep_dir)
    if not sweep.is_dir():
        raise FileNotFoundError(f"sweep dir {sweep} does not exist")
    trials = load_trials(sweep)
    if not trials:
        raise ValueError(f"no trials in {sweep}: no sub-dir has .hydra/overrides.yaml")
    table_metrics = default_metrics(trials) if metrics is None else list(metrics)
    plot_metrics = [m for m in CORE_METRICS if m in table_metrics] if metrics is None else metrics
    stats = summarize(trials, table_metrics, option_keys)
    files: dict[str, Path] = {}

    header, rows = summary_table(trials)
    files["summary.csv"] = sweep / "summary.csv"
    with files["summary.csv"].open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)

    files["summary.md"] = sweep / "summary.md"
    markdown = format_markdown(
        stats, failed_trials(trials, option_keys), table_metrics, title=f"Sweep {sweep.name}"
    )
    files["summary.md"].write_text(markdown)

    for metric in plot_metrics:
        name = f"plot_{metric.replace('/', '_')}.png"
        if plot_metric(stats, metric, sweep / name):
            files[name] = sweep / name
    curves = mean_curves(trials, option_labels(trials, option_keys))
    settings = {s["option"]: s["settings"] for s in stats}
    if plot_curves(curves, sweep / "curves.png", settings=settings):
        files["curves.png"] = sweep / "curves.png"
    return files
