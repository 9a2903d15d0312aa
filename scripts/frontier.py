"""Accuracy against wall time of the Fashion-MNIST recipes: every seed a dot, each recipe's
mean a labelled marker, so the frontier shows at a glance (BENCHMARKS.md).

``--run`` trains what is missing first, one run at a time (nothing else should run meanwhile:
the time is the figure), each as ``python train.py [+experiment=RECIPE] seed=S`` into
``<runs>/<recipe>_seed<S>/``; a run whose ``results.json`` is there is kept. Then it reads every
``results.json`` under ``<runs>``, prints a markdown table (mean ± sample std over the seeds,
the largest peak memory of a run, and the CPU cores a run kept busy on average: its CPU
seconds over its seconds alive, both measured by ``--run`` from the process's own usage; on
a shared VM a run that got less than the machine's cores took longer for it) and writes the
picture.

    python scripts/frontier.py --run                   # default job, fmnist_fast, fmnist_94; seeds 0-2
    python scripts/frontier.py --recipes digits_quick --seeds 0 --run
    python scripts/frontier.py --out docs/img/frontier.png   # redraw from the runs there are
    python scripts/frontier.py --also outputs/frontier_2026-12-02a   # and another batch beside them
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from trainlab import rundir

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RECIPE = "default"  # the default job: no +experiment
RECIPES = (DEFAULT_RECIPE, "fmnist_fast", "fmnist_94")
TARGET_ACC, TARGET_WALL = 94.0, 180.0  # the next recipe's goal: >= 94.0% in <= 180 s on 2 cores
PEAK_FILE = "frontier_peak.json"  # written beside results.json: the run's max RSS and CPU use


def run_dir(runs: Path, recipe: str, seed: int) -> Path:
    return runs / f"{recipe}_seed{seed}"


def train(runs: Path, recipe: str, seed: int) -> None:
    """One run of the recipe, unless its results are already there."""
    target = run_dir(runs, recipe, seed)
    if (target / rundir.RESULTS).is_file():
        print(f"kept {target}")
        return
    experiment = [] if recipe == DEFAULT_RECIPE else [f"+experiment={recipe}"]
    command = [sys.executable, "train.py", *experiment, f"seed={seed}", "callbacks.progress_bar=null",
               f"hydra.run.dir={target}"]
    print("running", " ".join(command[1:]), flush=True)
    start = time.monotonic()
    child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)  # this child's own peak memory and CPU time
    alive = time.monotonic() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command[1:])} failed (exit {os.waitstatus_to_exitcode(status)})")
    (target / PEAK_FILE).write_text(json.dumps({
        "max_rss_gb": usage.ru_maxrss / 2**20,  # KiB on Linux
        "cpu_s": usage.ru_utime + usage.ru_stime, "alive_s": alive}))


def load(runs: Path, batch: str = "") -> dict[str, list[dict]]:
    """``{recipe: [results, ...]}`` of the runs that finished ok, recipes in RECIPES' order;
    with ``batch``, each recipe is named ``recipe (batch)``."""
    found: dict[str, list[dict]] = {}
    for path in sorted(runs.glob(f"*_seed*/{rundir.RESULTS}")):
        results = rundir.read_results(path.parent)
        peak = path.with_name(PEAK_FILE)
        usage = json.loads(peak.read_text()) if peak.is_file() else {}
        results["max_rss_gb"] = usage.get("max_rss_gb")
        results["cores"] = usage["cpu_s"] / usage["alive_s"] if "cpu_s" in usage else None
        if results.get("status") == "ok":
            found.setdefault(path.parent.name.rsplit("_seed", 1)[0], []).append(results)
    order = {name: i for i, name in enumerate(RECIPES)}
    ordered = sorted(found.items(), key=lambda item: (order.get(item[0], len(order)), item[0]))
    return {f"{recipe} ({batch})" if batch else recipe: runs for recipe, runs in ordered}


def table(found: dict[str, list[dict]]) -> str:
    """Markdown: recipe, seeds, test accuracy and wall time as mean ± std, peak memory, cores
    kept busy."""
    def cell(values: list[float], digits: int) -> str:
        spread = f" ± {statistics.stdev(values):.{digits}f}" if len(values) > 1 else ""
        return f"{statistics.mean(values):.{digits}f}{spread}"

    lines = ["| recipe | seeds | test accuracy (%) | `wall_s` (s) | max RSS (GB) | CPU cores busy "
             "| each seed: accuracy / s |", "|---|---:|---:|---:|---:|---:|---|"]
    for recipe, runs in found.items():
        accs = [100 * r["test/acc"] for r in runs]
        walls = [r["wall_s"] for r in runs]
        peaks = [r["max_rss_gb"] for r in runs if r["max_rss_gb"] is not None]
        cores = [r["cores"] for r in runs if r["cores"] is not None]
        each = ", ".join(f"{a:.2f} / {w:.0f}" for a, w in zip(accs, walls, strict=True))
        peak = f"{max(peaks):.2f}" if peaks else "-"
        busy = ", ".join(f"{c:.2f}" for c in cores) or "-"
        lines.append(f"| {recipe} | {len(runs)} | {cell(accs, 2)} | {cell(walls, 1)} | {peak} | {busy} "
                     f"| {each} |")
    return "\n".join(lines)


def plot(found: dict[str, list[dict]], out: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for recipe, runs in found.items():
        walls = [r["wall_s"] for r in runs]
        accs = [100 * r["test/acc"] for r in runs]
        dots = ax.plot(walls, accs, ".", alpha=0.5)
        ax.plot(statistics.mean(walls), statistics.mean(accs), "o", markersize=8,
                color=dots[0].get_color(), label=f"{recipe} ({len(runs)} seeds)")
    ax.axhline(TARGET_ACC, color="0.6", linestyle="--", linewidth=0.8)
    ax.axvline(TARGET_WALL, color="0.6", linestyle="--", linewidth=0.8)
    ax.set_xlabel("wall_s: seconds from start to test result (2-core CPU)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Fashion-MNIST recipes: dots are seeds, circles their mean", fontsize=9)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=Path, default=ROOT / "outputs" / "frontier",
                   help="where the runs are (one dir per recipe and seed)")
    p.add_argument("--also", type=Path, nargs="+", default=[],
                   help="other batches' dirs, drawn and tabled beside --runs as 'recipe (dir name)'")
    p.add_argument("--recipes", nargs="+", default=list(RECIPES),
                   help=f"experiments to run with --run ({DEFAULT_RECIPE!r}: the default job)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--run", action="store_true", help="train the missing runs first")
    p.add_argument("--out", type=Path, default=ROOT / "outputs" / "frontier" / "frontier.png")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.run:
        for recipe in args.recipes:
            for seed in args.seeds:
                train(args.runs, recipe, seed)
    found = load(args.runs)
    for batch in args.also:
        other = load(batch, batch.name)
        if not other:
            print(f"--also {batch}: no finished runs (<recipe>_seed<S>/results.json) there", file=sys.stderr)
            return 1
        found.update(other)
    if not found:
        print(f"no finished runs under {args.runs}; add --run", file=sys.stderr)
        return 1
    print(table(found))
    plot(found, args.out)
    print(f"picture: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
