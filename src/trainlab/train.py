"""``python train.py`` / ``trainlab-train``: the Hydra entry point.

Only Hydra is imported here, so ``--help`` and ``--cfg job`` answer without loading torch.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from trainlab import resolvers  # noqa: F401  (registers the resolvers the configs use)

CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "conf")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Compose, then train/test; returns ``optimized_metric`` for sweepers."""
    from trainlab.pipeline import run_job

    return run_job(cfg)


if __name__ == "__main__":
    main()
