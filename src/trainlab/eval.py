"""``python eval.py ckpt_path=...`` / ``trainlab-eval``: test a checkpoint, predict new images.

Only Hydra is imported here, so ``--help`` and ``--cfg job`` answer without loading torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from trainlab import resolvers  # noqa: F401  (registers the resolvers the run configs use)
from trainlab.errors import ConfigError
from trainlab.runtime import tune_process
from trainlab.train import CONFIG_DIR


class EvalError(RuntimeError):
    """The evaluation cannot start: missing checkpoint, run config or inputs."""


def run_dir_of(ckpt_path: Path) -> Path:
    """The training run a checkpoint belongs to: ``<run>/checkpoints/<name>.ckpt`` -> ``<run>``.

    Raises:
        EvalError: the checkpoint is missing, or is not inside a run with a saved config.
    """
    if ckpt_path.is_dir():
        found = sorted(p.name for p in ckpt_path.glob("checkpoints/*.ckpt"))
        hint = f"; it holds {found}, e.g. ckpt_path={ckpt_path / 'checkpoints' / found[0]}" \
            if found else ""
        raise EvalError(f"ckpt_path={ckpt_path} is a directory, not a checkpoint file{hint}")
    if not ckpt_path.is_file():
        raise EvalError(f"ckpt_path={ckpt_path} does not exist; pass a checkpoint of a run, "
                        "e.g. ckpt_path=outputs/runs/<date>_<time>/checkpoints/last.ckpt")
    run_dir = ckpt_path.resolve().parent.parent
    if not (run_dir / ".hydra" / "config.yaml").is_file():
        raise EvalError(f"ckpt_path={ckpt_path}: {run_dir} has no .hydra/config.yaml, so the run "
                        "cannot be rebuilt; pass a checkpoint under <run dir>/checkpoints/")
    return run_dir


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="eval")
def main(cfg: DictConfig) -> dict[str, Any]:
    """Rebuild the checkpoint's run, test it and/or predict; write ``eval.json``."""
    try:
        run_dir_of(Path(cfg.ckpt_path))  # a wrong path fails in a second, before torch loads
    except EvalError as err:
        raise SystemExit(f"error: {err}") from None
    try:  # before torch loads
        tune_process(cfg.process.openmp_wait, cfg.process.malloc_keep_freed)
    except ConfigError as err:
        raise SystemExit(f"error: {err}") from None
    from trainlab.evaluation import run_eval

    return run_eval(cfg)


if __name__ == "__main__":
    main()
