"""OmegaConf resolvers the configs use. Importing this module registers them (cheap: no torch)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf


def run_dir(resume: str | None, new_dir: str) -> str:
    """``hydra.run.dir``: the run being resumed, else a new directory.

    Raises at composition time, before any directory is created, when ``resume`` is not a run.
    """
    if resume is None:
        return new_dir
    path = Path(resume)
    if not (path / ".hydra" / "config.yaml").is_file():
        raise ValueError(f"resume={resume!r}: not a trainlab run directory (no .hydra/config.yaml); "
                         "pass the directory of an earlier run, e.g. resume=outputs/runs/<date>_<time>")
    if not (path / "checkpoints" / "last.ckpt").is_file():
        raise ValueError(f"resume={resume!r}: no checkpoints/last.ckpt to continue from")
    return str(path)


def config_subdir(resume: str | None) -> str:
    """``hydra.output_subdir``: a resumed run keeps its original ``.hydra/`` and records the
    resume invocation beside it."""
    return ".hydra" if resume is None else ".hydra_resume"


def register() -> None:
    """Register every trainlab resolver (idempotent)."""
    for name, fn in (("trainlab_run_dir", run_dir), ("trainlab_config_subdir", config_subdir)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


register()
