"""Test accuracy of finished runs under each set of test-time views, from their final weights.

Each run is rebuilt and its ``checkpoints/last.ckpt`` tested as ``python eval.py`` does
(``trainlab.evaluation``: the run's saved config, eval.yaml's trainer keys, the checkpoint's
weights and normalization), once per view set with ``model.tta_flip``, ``model.tta_shift`` and
``model.tta_shift_dirs`` set as below; training is not repeated, so every difference between
two view sets is paired (the same weights). Prints a markdown table and, per view set, the mean
difference to the diagonal copies:

    python scripts/tta_views.py outputs/frontier/fmnist_94_seed*
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from trainlab.rundir import LAST

ROOT = Path(__file__).resolve().parents[1]
VIEW_SETS = {  # name -> overrides of the run's config
    "none": ["model.tta_flip=false", "model.tta_shift=0", "model.tta_shift_dirs=diagonal"],
    "flip": ["model.tta_flip=true", "model.tta_shift=0", "model.tta_shift_dirs=diagonal"],
    "diagonal": ["model.tta_flip=true", "model.tta_shift=1", "model.tta_shift_dirs=diagonal"],
    "axes": ["model.tta_flip=true", "model.tta_shift=1", "model.tta_shift_dirs=axes"],
}


def test_accuracies(run: Path) -> dict[str, float]:
    """``{view set: test accuracy in %}`` of ``run``'s final weights."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from trainlab.evaluation import load_weights, run_config

    eval_trainer = OmegaConf.load(ROOT / "conf" / "eval.yaml").trainer  # eval.py's trainer keys
    found = {}
    for name, overrides in VIEW_SETS.items():
        with tempfile.TemporaryDirectory() as scratch:  # the Trainer's root; it writes nothing
            cfg = run_config(run, eval_trainer, [*overrides, f"paths.output_dir={scratch}"])
            datamodule, model = instantiate(cfg.data), instantiate(cfg.model)
            load_weights(model, datamodule, run / LAST)
            trainer = instantiate(cfg.trainer, callbacks=[], logger=False)
            found[name] = 100 * trainer.test(model, datamodule=datamodule, verbose=False)[0]["test/acc"]
    return found


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path,
                   help="run directories (with .hydra/ and checkpoints/last.ckpt)")
    args = p.parse_args(argv)
    missing = [str(r) for r in args.runs if not (r / LAST).is_file()]
    if missing:
        raise SystemExit(f"no {LAST} in: {', '.join(missing)}")
    rows = {run: test_accuracies(run) for run in args.runs}
    print("| run | " + " | ".join(VIEW_SETS) + " |")
    print("|---|" + "---:|" * len(VIEW_SETS))
    for run, acc in rows.items():
        print(f"| {run.name} | " + " | ".join(f"{acc[v]:.2f}" for v in VIEW_SETS) + " |")
    means = (statistics.mean(acc[v] for acc in rows.values()) for v in VIEW_SETS)
    print("| mean | " + " | ".join(f"{m:.3f}" for m in means) + " |")
    for name in VIEW_SETS:
        diffs = [acc[name] - acc["diagonal"] for acc in rows.values()]
        print(f"{name} - diagonal: mean {statistics.mean(diffs):+.3f} points, "
              f"from {min(diffs):+.2f} to {max(diffs):+.2f} over {len(diffs)} runs")


if __name__ == "__main__":
    main()
