"""``python eval.py ckpt_path=...`` / ``trainlab-eval``: test a checkpoint, predict new images.

Only Hydra is imported here, so ``--help`` and ``--cfg job`` answer without loading torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from trainlab import resolvers  # noqa: F401  (registers the resolvers the run configs use)
from trainlab.config_dir import CONFIG_DIR
from trainlab.errors import ConfigError, RunDirError
from trainlab.rundir import run_of_checkpoint
from trainlab.runtime import tune_process
from trainlab.user_code import import_from_working_dir


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="eval")
def main(cfg: DictConfig) -> dict[str, Any]:
    """Rebuild the checkpoint's run, test it and/or predict; write ``eval.json``."""
    try:
        run_of_checkpoint(Path(cfg.ckpt_path))  # a wrong path fails in a second, before torch loads
    except RunDirError as err:
        raise SystemExit(f"error: {err}") from None
    try:  # before torch loads
        tune_process(cfg.process.openmp_wait, cfg.process.malloc_keep_freed)
    except ConfigError as err:
        raise SystemExit(f"error: {err}") from None
    import_from_working_dir()  # user code named by _target_ (trainlab.user_code)
    from trainlab.evaluation import run_eval

    return run_eval(cfg)


if __name__ == "__main__":
    main()
