"""Test accuracy of finished runs under each set of test-time views, from their final weights.

Each run directory's saved config and ``checkpoints/last.ckpt`` are loaded and tested again
through Lightning's ``Trainer.test`` with ``model.tta_flip``, ``model.tta_shift`` and
``model.tta_shift_dirs`` set as each row below says; training is not repeated, so every
difference between two view sets is paired (the same weights). Prints a markdown table and,
per view set, the mean difference to the first shifted one (``diagonal``):

    python scripts/tta_views.py outputs/frontier/fmnist_94_seed*
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

VIEW_SETS = {  # name -> Classifier arguments
    "none": {"tta_flip": False, "tta_shift": 0, "tta_shift_dirs": "diagonal"},
    "flip": {"tta_flip": True, "tta_shift": 0, "tta_shift_dirs": "diagonal"},
    "diagonal": {"tta_flip": True, "tta_shift": 1, "tta_shift_dirs": "diagonal"},
    "axes": {"tta_flip": True, "tta_shift": 1, "tta_shift_dirs": "axes"},
}


def test_accuracies(run: Path) -> dict[str, float]:
    """``{view set: test accuracy in %}`` of ``run``'s final weights."""
    import pytorch_lightning as pl
    import torch
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(run / ".hydra" / "config.yaml")
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    datamodule = instantiate(cfg.data)
    found = {}
    for name, views in VIEW_SETS.items():
        model = instantiate(cfg.model, **views)
        model.load_state_dict(checkpoint["state_dict"])
        trainer = pl.Trainer(accelerator="cpu", devices=1, precision=cfg.trainer.precision, logger=False,
                             enable_progress_bar=False, enable_model_summary=False)
        found[name] = 100 * trainer.test(model, datamodule=datamodule, verbose=False)[0]["test/acc"]
    return found


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path,
                   help="run directories (with .hydra/ and checkpoints/last.ckpt)")
    args = p.parse_args(argv)
    missing = [str(r) for r in args.runs if not (r / "checkpoints" / "last.ckpt").is_file()]
    if missing:
        raise SystemExit(f"no checkpoints/last.ckpt in: {', '.join(missing)}")
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
