"""Pictures of one run, written into its directory: the learning curves (``curves.png``) and
the test confusion matrix (``confusion.png``). matplotlib is imported only here."""

from __future__ import annotations

from pathlib import Path

import torch

from trainlab.rundir import read_metrics

CURVES = "curves.png"
CONFUSION = "confusion.png"
# (metric, panel): losses on the left, accuracies on the right
CURVE_METRICS = (("train/loss", 0), ("val/loss", 0), ("train/acc", 1), ("val/acc", 1))


def epoch_curves(run_dir: Path) -> dict[str, dict[int, float]]:
    """``{metric: {epoch: value}}`` of :data:`CURVE_METRICS` from every attempt's metrics.csv."""
    curves: dict[str, dict[int, float]] = {name: {} for name, _ in CURVE_METRICS}
    for row in read_metrics(run_dir):
        for name in curves:
            if row.get(name) not in (None, "") and row.get("epoch") not in (None, ""):
                curves[name][int(float(row["epoch"]))] = float(row[name])
    return {name: points for name, points in curves.items() if points}


def _figure(ncols: int, width: float):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, *plt.subplots(1, ncols, figsize=(width, 3.4), dpi=100, squeeze=False)


def plot_curves(run_dir: Path) -> Path | None:
    """Loss and accuracy per epoch (train and val); None when the run logged no epoch."""
    curves = epoch_curves(run_dir)
    if not curves:
        return None
    plt, fig, axes = _figure(2, 8.0)
    for name, panel in CURVE_METRICS:
        if name in curves:
            epochs = sorted(curves[name])
            axes[0][panel].plot(epochs, [curves[name][e] for e in epochs], marker=".", label=name)
    for ax, title in zip(axes[0], ("loss", "accuracy"), strict=True):
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    path = run_dir / CURVES
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_confusion(matrix: torch.Tensor, path: Path) -> Path:
    """Counts of (true class, predicted class) on the test split, with each row's recall."""
    counts = matrix.to(torch.int64)
    classes = counts.shape[0]
    plt, fig, axes = _figure(1, 1.2 + 0.45 * max(classes, 6))
    ax = axes[0][0]
    ax.imshow(counts.numpy(), cmap="Blues")
    for true in range(classes):
        for pred in range(classes):
            value = int(counts[true, pred])
            if value:
                dark = value > counts.max().item() / 2
                ax.text(pred, true, str(value), ha="center", va="center", fontsize=7,
                        color="white" if dark else "black")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_xticks(range(classes))
    ax.set_yticks(range(classes))
    accuracy = counts.diag().sum().item() / max(counts.sum().item(), 1)
    ax.set_title(f"test confusion matrix (accuracy {accuracy:.4f})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_run_pictures(run_dir: Path, confusion: torch.Tensor | None) -> list[Path]:
    """Both pictures where there is something to draw."""
    written = [plot_curves(run_dir)]
    if confusion is not None:
        written.append(plot_confusion(confusion, run_dir / CONFUSION))
    return [p for p in written if p is not None]
