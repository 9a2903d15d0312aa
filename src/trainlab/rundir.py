"""The run directory: what a run leaves on disk, and every guard and reader of it.

::

    <run dir>/
        .hydra/config.yaml       the composed config: resume and eval rebuild the run from it
        .hydra/overrides.yaml    the command-line overrides: a sweep report groups trials by them
        .hydra_resume/           the config of each resume (the original .hydra/ is kept)
        checkpoints/last.ckpt    resume and SLURM requeue continue from it (and best-*.ckpt)
        csv/version_N/metrics.csv  one per attempt: the first run, then each resume or requeue
        .hydra/provenance.json   git commit, library versions, device (trainlab.provenance)
        results.json             flat metrics, status and error, written atomically: "testing"
                                 with the training's metrics before the test, then the result
        .owner                   locked by the process working in the dir (trainlab.run_owner)
        curves.png, confusion.png  pictures of the run (trainlab.run_pictures)
        trackers.json            the MLflow / W&B run ids a resume continues (trainlab.tracking)

A sweep dir (``hydra.sweep.dir``) holds ``multirun.yaml``, its own ``.owner`` and one run dir
per trial. A dir has one owner at a time; a new run never writes into a dir that already holds
one; resume and requeue continue one in place; eval reads one and writes into its own dir.
Every check of a job's dir is made before Hydra writes into it (:func:`check_job_dir`). Nothing
here loads torch.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import OverrideType
from omegaconf import DictConfig, OmegaConf, open_dict

from trainlab.errors import RunDirError

CONFIG = Path(".hydra") / "config.yaml"
OVERRIDES = Path(".hydra") / "overrides.yaml"
RESUME_CONFIG_DIR = ".hydra_resume"
CHECKPOINTS = "checkpoints"
LAST = Path(CHECKPOINTS) / "last.ckpt"
RESULTS = "results.json"
SWEEP_CONFIG = "multirun.yaml"
# what a resume may change: the run's length (the rest is the saved run's)
EXTENDABLE = ("trainer.max_epochs", "trainer.max_steps")


def run_files(run_dir: Path) -> list[str]:
    """The names of what marks ``run_dir`` as holding a run (results or checkpoints), if any."""
    return [p.name for p in (run_dir / RESULTS, run_dir / CHECKPOINTS) if p.exists()]


def guard_fresh(run_dir: Path) -> None:
    """Refuse to start a new run in a directory that already holds one (nothing is overwritten)."""
    taken = run_files(run_dir)
    if taken:
        raise RunDirError(f"{run_dir} already holds a run ({', '.join(taken)}); nothing was "
                          "overwritten. Choose another hydra.run.dir, or resume=<that dir> to "
                          "continue it")


# results.json while a run that has trained is testing: a resume tests it, keeping these metrics
TESTING = "testing"
# what a multirun run again into the same sweep dir does with a trial already there
NEW, SKIP, RESUME, RERUN = "new", "skip", "resume", "rerun"
FAILED_RESULTS = "results.failed.json"  # a failed trial's record, kept when it is run again
CONTINUE_KEYS = ("retry_failed",)  # change how a sweep is continued, not its trials


def earlier_trial(run_dir: Path, overrides: Sequence[str], retry_failed: bool) -> str:
    """What a sweep run again into its own sweep dir does with the trial in ``run_dir``.

    :data:`SKIP` a trial whose ``results.json`` holds a result (``ok``, ``diverged``,
    ``pruned``), and a ``failed`` one unless ``retry_failed``; :data:`RESUME` an interrupted or
    killed one from ``checkpoints/last.ckpt`` (one stopped while testing, and a retried failure
    too, where it has one);
    :data:`RERUN` a retried failure without a checkpoint; :data:`NEW` where no trial ran yet.

    Raises:
        RunDirError: the trial there was started with other overrides than this job's.
    """
    has_last = (run_dir / LAST).is_file()
    if not (run_dir / RESULTS).is_file() and not has_last:
        return NEW
    if (run_dir / OVERRIDES).is_file():
        saved, overrides = _trial_overrides(saved_overrides(run_dir)), _trial_overrides(overrides)
        if saved != overrides:
            raise RunDirError(f"{run_dir} holds a trial of another sweep (overrides {saved}, this job's "
                              f"are {list(overrides)}); nothing was changed. Continue a sweep with the "
                              "command that started it, or choose a new hydra.sweep.dir")
    status = read_results(run_dir).get("status") if (run_dir / RESULTS).is_file() else "interrupted"
    if status == "failed" and not retry_failed:
        return SKIP
    if status in ("interrupted", "failed", TESTING):
        return RESUME if has_last else RERUN
    return SKIP


def check_same_sweep(sweep_dir: Path, overrides: Sequence[str]) -> None:
    """Refuse a sweep into ``sweep_dir`` whose overrides differ from those of the sweep its
    ``multirun.yaml`` records (but for how a sweep is continued)."""
    saved = OmegaConf.select(OmegaConf.load(sweep_dir / SWEEP_CONFIG), "hydra.overrides.task")
    saved, overrides = _trial_overrides([str(o) for o in saved or []]), _trial_overrides(overrides)
    if saved != overrides:
        there = [o for o in saved if o not in overrides]
        here = [o for o in overrides if o not in saved]
        raise RunDirError(f"{sweep_dir} holds another sweep (its overrides {there}, this one's {here}); "
                          "nothing was changed. Continue a sweep with the command that started it, or "
                          "choose a new hydra.sweep.dir")


def _trial_overrides(overrides: Sequence[str]) -> list[str]:
    """The overrides that make a trial what it is: all but how the sweep is continued."""
    return sorted(o for o in overrides if o.split("=", 1)[0].lstrip("+~") not in CONTINUE_KEYS)


def set_aside_failed(run_dir: Path) -> None:
    """Keep a failed trial's record as ``results.failed.json`` before it runs again."""
    (run_dir / RESULTS).replace(run_dir / FAILED_RESULTS)


def check_resumable(run_dir: str | Path, key: str = "resume") -> Path:
    """``run_dir`` as a Path if it holds a saved config and ``checkpoints/last.ckpt``.

    Raises:
        RunDirError: naming ``key`` and what is missing.
    """
    path = Path(run_dir)
    if not (path / CONFIG).is_file():
        raise RunDirError(f"{key}={str(run_dir)!r}: not a trainlab run directory (no {CONFIG}); "
                          f"pass the directory of an earlier run, e.g. {key}=outputs/runs/<date>_<time>")
    if not (path / LAST).is_file():
        raise RunDirError(f"{key}={str(run_dir)!r}: no {LAST} to continue from")
    return path


def slurm_restarts() -> int:
    """How often SLURM has requeued this job (0 outside SLURM)."""
    return int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0)


def requeued(run_dir: Path) -> bool:
    """Whether this is a SLURM job requeued after preemption, back in its own run dir."""
    return slurm_restarts() > 0 and (run_dir / LAST).is_file()


def log_suffix() -> str:
    """``.rank<N>`` for SLURM task N > 0 of a multi-task job (its own log file beside rank 0's
    ``train.log``), else nothing."""
    tasks = int(os.environ.get("SLURM_NTASKS", "1") or 1)
    task = int(os.environ.get("SLURM_PROCID", "0") or 0)
    return f".rank{task}" if tasks > 1 and task > 0 else ""


def saved_config(run_dir: Path) -> DictConfig:
    """The config the run in ``run_dir`` was started with."""
    path = run_dir / CONFIG
    if not path.is_file():
        raise RunDirError(f"{run_dir} has no {CONFIG}, so the run cannot be rebuilt")
    return OmegaConf.load(path)


def resumed_config(run_dir: Path, overrides: Sequence[str] = ()) -> DictConfig:
    """The saved config of the run in ``run_dir``, with ``resume`` pointing at it.

    A resumed run is the saved run: of the resume command's ``overrides`` only a raise of
    :data:`EXTENDABLE` (training for longer) is taken; anything else is refused, by name.
    """
    cfg = saved_config(run_dir)
    refused = []
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        key, value = override.key_or_group, override.value()
        if key == "resume":
            continue
        saved = OmegaConf.select(cfg, key)
        if key in EXTENDABLE and override.type is OverrideType.CHANGE and isinstance(value, int) \
                and not isinstance(value, bool) and _not_below(value, saved):
            OmegaConf.update(cfg, key, value)
        else:
            why = f" (below the saved {saved}{', no limit' if saved == -1 else ''})" \
                if key in EXTENDABLE else ""
            refused.append(f"{override.input_line}{why}")
    if refused:
        raise RunDirError(f"resume={run_dir}: a resumed run keeps its saved config; only "
                          f"{' and '.join(EXTENDABLE)} may be raised. Refused: {', '.join(refused)}")
    with open_dict(cfg):
        cfg.resume = str(run_dir)
    return cfg


# a run whose results.json says one of these has ended: a resume without a longer horizon has nothing to do
ENDED = ("ok", "diverged", "pruned")


def check_job_dir(run_dir: Path, resume: str | None, multirun: bool, overrides: Sequence[str]
                  ) -> str | None:
    """Check what a job may do in ``run_dir`` before anything is written into it.

    A resume keeps the saved config (:func:`resumed_config` refuses other changes); a trial of a
    sweep run again must belong to that sweep (:func:`earlier_trial`); a new run needs a dir
    without a run (:func:`guard_fresh`), unless SLURM requeued it.

    Returns:
        For a resume of a run that has ended, without a longer horizon: the message saying there
        is nothing to do (its files stay byte for byte). Else None.

    Raises:
        RunDirError: the job may not run in ``run_dir``, saying why.
    """
    if resume is not None:
        if Path(resume).resolve() != run_dir.resolve():
            raise RunDirError(f"resume={resume} continues that run in its own dir, but hydra.run.dir="
                              f"{run_dir} names another; drop hydra.run.dir")
        cfg = resumed_config(run_dir, overrides)
        if not (run_dir / RESULTS).is_file():
            return None
        status = read_results(run_dir).get("status")
        saved = saved_config(run_dir)
        longer = any(OmegaConf.select(cfg, key) != OmegaConf.select(saved, key) for key in EXTENDABLE)
        if status in ENDED and not longer:
            return (f"{run_dir} has ended (status {status}); nothing to do, and nothing in it was "
                    f"changed. To train it longer, raise {' or '.join(EXTENDABLE)} on the resume "
                    f"command (now {', '.join(str(OmegaConf.select(saved, k)) for k in EXTENDABLE)})")
        return None
    if multirun:
        earlier_trial(run_dir, overrides, retry_failed=False)
    elif not requeued(run_dir):
        guard_fresh(run_dir)
    return None


def _not_below(value: int, saved: object) -> bool:
    """Whether a new step or epoch limit is at least the saved one (-1 means no limit)."""
    if value == -1:
        return True
    return isinstance(saved, int) and saved != -1 and value >= saved


def run_of_checkpoint(ckpt_path: Path) -> Path:
    """The run a checkpoint belongs to: ``<run>/checkpoints/<name>.ckpt`` -> ``<run>``.

    Raises:
        RunDirError: the checkpoint is missing, or is not inside a run with a saved config.
    """
    if ckpt_path.is_dir():
        found = sorted(p.name for p in ckpt_path.glob(f"{CHECKPOINTS}/*.ckpt"))
        hint = f"; it holds {found}, e.g. ckpt_path={ckpt_path / CHECKPOINTS / found[0]}" \
            if found else ""
        raise RunDirError(f"ckpt_path={ckpt_path} is a directory, not a checkpoint file{hint}")
    if not ckpt_path.is_file():
        raise RunDirError(f"ckpt_path={ckpt_path} does not exist; pass a checkpoint of a run, "
                          f"e.g. ckpt_path=outputs/runs/<date>_<time>/{LAST}")
    run_dir = ckpt_path.resolve().parent.parent
    if not (run_dir / CONFIG).is_file():
        raise RunDirError(f"ckpt_path={ckpt_path}: {run_dir} has no {CONFIG}, so the run "
                          f"cannot be rebuilt; pass a checkpoint under <run dir>/{CHECKPOINTS}/")
    return run_dir


def saved_overrides(run_dir: Path) -> list[str]:
    """The command-line overrides the run was started with (``.hydra/overrides.yaml``)."""
    return [str(o) for o in (OmegaConf.to_container(OmegaConf.load(run_dir / OVERRIDES)) or [])]


def _natural_key(name: str) -> list[Any]:
    """Sort key that puts job ``10`` after job ``9``."""
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", name)]


def trial_dirs(sweep_dir: str | Path) -> list[Path]:
    """The run dirs of a sweep (every dir below it with ``.hydra/overrides.yaml``), in natural
    order of their path relative to ``sweep_dir`` (job 10 after job 9)."""
    sweep = Path(sweep_dir)
    dirs = {marker.parent.parent for marker in sweep.glob(f"**/{OVERRIDES.as_posix()}")}
    return sorted(dirs, key=lambda d: _natural_key(d.relative_to(sweep).as_posix()))


def read_results(run_dir: str | Path) -> dict[str, Any]:
    """The run's ``results.json``.

    Raises:
        RunDirError: the file is not a JSON object (cut short, edited by hand), naming it and
            how to go on.
    """
    path = Path(run_dir) / RESULTS
    try:
        results = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        results = err
    if not isinstance(results, dict):
        why = f"not valid JSON ({results})" if isinstance(results, Exception) else "not a JSON object"
        raise RunDirError(f"{path} is {why}; nothing was changed. Move it away to continue that run "
                          f"from its {LAST} (or to run it again where it has none), or restore it")
    return results


def trained_metrics(run_dir: Path) -> dict[str, Any]:
    """The training's metrics of a run stopped while testing (``results.json`` with status
    :data:`TESTING`); empty for any other run."""
    if not (run_dir / RESULTS).is_file():
        return {}
    results = read_results(run_dir)
    if results.get("status") != TESTING:
        return {}
    return {k: v for k, v in results.items() if "/" in k and not k.startswith(NOT_CARRIED)}


# keys of results.json that describe an attempt, not the training (trainlab.provenance, runtime)
NOT_CARRIED = ("provenance/", "process/")


def metrics_files(run_dir: str | Path) -> list[Path]:
    """The ``metrics.csv`` of every attempt of a run, oldest first.

    Lightning's CSVLogger (``logger=csv``) writes ``csv/version_N/metrics.csv``, a new version
    for each attempt. A dir with a plain ``metrics.csv`` (LightningCLI's layout, or hand-made)
    gives that one file.
    """
    run_dir = Path(run_dir)
    if (run_dir / "metrics.csv").is_file():
        return [run_dir / "metrics.csv"]
    return sorted(run_dir.glob("csv/version_*/metrics.csv"),
                  key=lambda p: int(p.parent.name.rpartition("_")[2] or 0))


def read_metrics(run_dir: str | Path) -> list[dict[str, str]]:
    """The rows of every attempt's ``metrics.csv`` joined in order (empty if none)."""
    rows: list[dict[str, str]] = []
    for path in metrics_files(run_dir):
        with path.open(newline="") as handle:
            rows += list(csv.DictReader(handle))
    return rows
