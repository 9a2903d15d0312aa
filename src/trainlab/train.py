"""``python train.py`` / ``trainlab-train``: the Hydra entry point.

Only Hydra is imported here, so ``--help`` and ``--cfg job`` answer without loading torch.
"""

from __future__ import annotations

import os
from pathlib import Path

import hydra
from omegaconf import DictConfig

from trainlab import resolvers  # noqa: F401  (registers the resolvers the configs use)

CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "conf")


def sleeping_openmp_threads() -> None:
    """Let idle OpenMP threads sleep rather than spin, unless ``OMP_WAIT_POLICY`` is set.

    PyTorch's CPU kernels split every large op over OpenMP threads that spin between ops by
    default. When other processes share the cores (tests, sweeps, a second run), a spinning
    thread holds the core its partner needs and each op waits for a scheduler time slice:
    training ran 4-5x slower on 2 busy cores (BENCHMARKS.md). libgomp reads the variable when
    torch loads, so this must run before the first ``import torch``.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Compose, then train/test; returns ``optimized_metric`` for sweepers."""
    sleeping_openmp_threads()
    from trainlab.pipeline import run_job

    return run_job(cfg)


if __name__ == "__main__":
    main()
