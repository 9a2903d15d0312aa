"""``python train.py`` / ``trainlab-train``: the Hydra entry point.

Only Hydra is imported here, so ``--help`` and ``--cfg job`` answer without loading torch.
"""

from __future__ import annotations

import logging

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from trainlab import resolvers  # noqa: F401  (registers the resolvers the configs use)
from trainlab.config_dir import CONFIG_DIR
from trainlab.errors import ConfigError
from trainlab.runtime import tune_process
from trainlab.stop_signals import note_early
from trainlab.user_code import import_from_working_dir

# Launchers that run several trials at once on this machine
SIDE_BY_SIDE_LAUNCHERS = ("JoblibLauncher", "LocalLauncher")

log = logging.getLogger(__name__)


def trials_share_cores() -> bool:
    """Whether this job runs next to other trials of its sweep on the same machine."""
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return False
    launcher = hydra_cfg.launcher
    return str(launcher.get("_target_", "")).endswith(SIDE_BY_SIDE_LAUNCHERS) and \
        launcher.get("n_jobs", 2) != 1


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Compose, then train/test; returns ``optimized_metric`` for sweepers."""
    try:  # before torch loads
        settings = tune_process(cfg.process.openmp_wait, cfg.process.malloc_keep_freed,
                                shares_cores=trials_share_cores())
    except ConfigError as err:
        raise SystemExit(f"error: {err}") from None
    import_from_working_dir()  # user code named by _target_ (trainlab.user_code)
    note_early()  # SLURM's pre-timeout signal while torch loads (trainlab.stop_signals)
    from trainlab.pipeline import run_job

    return run_job(cfg, settings)


if __name__ == "__main__":
    main()
