"""Experiment trackers: MLflow (a local SQLite store) and Weights & Biases (offline), as
Lightning's own ``MLFlowLogger`` and ``WandbLogger``.

``logger=mlflow`` and ``logger=wandb`` (``conf/logger/``) build them with :func:`mlflow_logger`
and :func:`wandb_logger`, which add what a run directory knows and a YAML cannot: the run's name
(its dir's name; in a multirun ``<sweep dir name>/<job>``), the sweep that groups a multirun's
trials (MLflow tag ``sweep``, W&B ``group``), and the tracker run to continue on resume, whose id
is kept in ``<run dir>/trackers.json``. The pipeline then sends the whole composed config
(:func:`log_config`) and the final ``results.json`` (:func:`log_results`) to them, and the Hydra
callback ``trainlab.hydra_callbacks.FinishTrackers`` ends the W&B run when a job ends, so the next
trial of a multirun starts its own (Lightning's ``WandbLogger`` reuses a run left open).

Nothing here imports mlflow or wandb until a logger is built: both are optional extras
(``pip install -e '.[mlflow,wandb]'``).
"""

from __future__ import annotations

import json
import logging
import secrets
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import Logger, MLFlowLogger, WandbLogger
from pytorch_lightning.utilities import rank_zero_only

from trainlab import rundir
from trainlab.results import write_results
from trainlab.run_pictures import CONFUSION, CURVES

log = logging.getLogger(__name__)

# <run dir>/trackers.json: {"mlflow": {"run_id", "tracking_uri"}, "wandb": {"id", "project"}}
TRACKERS = "trackers.json"
SQLITE = "sqlite:///"
# MLflow keeps at most this many characters of a parameter value (Lightning's MLFlowLogger cut)
MLFLOW_PARAM_CHARS = 250


@dataclass(frozen=True)
class Job:
    """Where the current Hydra job writes, and the sweep it belongs to.

    Attributes:
        run_dir: the run directory (``hydra.runtime.output_dir``), absolute.
        sweep_dir: the multirun's dir, or None for a single run. A resumed trial of a sweep
            (``resume=<sweep dir>/<job>``) still belongs to it: its parent holds ``multirun.yaml``.
        name: the tracker run's display name.
    """

    run_dir: Path
    sweep_dir: Path | None
    name: str

    @property
    def sweep(self) -> str | None:
        """The sweep's name (its dir's name), shared by its trials."""
        return self.sweep_dir.name if self.sweep_dir else None


def current_job() -> Job:
    """The :class:`Job` of the running Hydra job."""
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir).resolve()
    sweep_dir = None
    if hydra_cfg.mode == RunMode.MULTIRUN:
        sweep_dir = Path(hydra_cfg.sweep.dir).resolve()
    elif (run_dir.parent / rundir.SWEEP_CONFIG).is_file():
        sweep_dir = run_dir.parent
    if sweep_dir is not None and run_dir.is_relative_to(sweep_dir):
        name = f"{sweep_dir.name}/{run_dir.relative_to(sweep_dir).as_posix()}"
    else:
        name = run_dir.name
    return Job(run_dir, sweep_dir, name)


def read_trackers(run_dir: Path) -> dict[str, dict[str, str]]:
    """The tracker runs recorded in ``run_dir`` (empty for a new run)."""
    path = run_dir / TRACKERS
    return json.loads(path.read_text()) if path.is_file() else {}


def record_tracker(run_dir: Path, tracker: str, ids: Mapping[str, str]) -> None:
    """Record ``tracker``'s run ids in ``run_dir/trackers.json`` (rank zero writes)."""
    if rank_zero_only.rank != 0:
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    write_results(run_dir / TRACKERS, {**read_trackers(run_dir), tracker: dict(ids)})


def absolute_sqlite_uri(tracking_uri: str) -> str:
    """``sqlite:///<relative path>`` made absolute (a resume or ``mlflow ui`` started elsewhere
    finds the same store), with the database's folder created (SQLite does not create it).
    Any other URI (a server, ``file:``, databricks) is returned unchanged."""
    if not tracking_uri.startswith(SQLITE):
        return tracking_uri
    path = Path(tracking_uri[len(SQLITE):]).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"{SQLITE}{path}"


def mlflow_logger(tracking_uri: str, experiment_name: str, artifact_location: str | None = None,
                  run_name: str | None = None, tags: Mapping[str, Any] | None = None,
                  **kwargs: Any) -> MLFlowLogger:
    """Lightning's ``MLFlowLogger`` for this job: a new MLflow run, or on resume the run the
    first attempt recorded in ``trackers.json`` (set back to RUNNING; it keeps its params and
    metric history, new steps are appended).

    Args:
        tracking_uri: the MLflow store, e.g. ``sqlite:///outputs/mlflow/mlflow.db`` (a relative
            SQLite path is taken from the launch directory, like ``paths.log_dir``).
        experiment_name: the MLflow experiment every run goes to (created if missing).
        artifact_location: where a new experiment keeps artifacts; a local path is made absolute.
        run_name: default: the run dir's name (``<sweep>/<job>`` in a multirun).
        tags: added to the tags ``run_dir`` and, in a multirun, ``sweep``.
        **kwargs: passed to ``MLFlowLogger`` (``log_model``, ``prefix``, ``synchronous``).
    """
    job = current_job()
    recorded = read_trackers(job.run_dir).get("mlflow")
    if recorded:  # resume: the store and run of the first attempt, wherever we launch from
        tracking_uri, run_id = recorded["tracking_uri"], recorded["run_id"]
    else:
        tracking_uri, run_id = absolute_sqlite_uri(tracking_uri), None
    if artifact_location and "://" not in artifact_location:
        artifact_location = Path(artifact_location).expanduser().resolve().as_uri()
    run_tags = {"run_dir": str(job.run_dir), **({"sweep": job.sweep} if job.sweep else {}),
                **(tags or {})}
    logger = MLFlowLogger(experiment_name=experiment_name, run_name=run_name or job.name,
                          tracking_uri=tracking_uri, tags=run_tags,
                          artifact_location=artifact_location, run_id=run_id, **kwargs)
    if rank_zero_only.rank == 0:
        if run_id:
            logger.experiment.update_run(run_id, status="RUNNING")
            log.info("MLflow: continuing run %s in %s", run_id, tracking_uri)
        else:  # create the run now, so an interrupted attempt can be continued
            record_tracker(job.run_dir, "mlflow", {"run_id": logger.run_id, "tracking_uri": tracking_uri})
    return logger


def wandb_logger(project: str, save_dir: str, offline: bool = True, name: str | None = None,
                 group: str | None = None, **kwargs: Any) -> WandbLogger:
    """Lightning's ``WandbLogger`` for this job, writing ``<save_dir>/wandb/offline-run-*/`` when
    ``offline`` (upload later with ``wandb sync``).

    Every attempt of a run uses the W&B run id recorded in ``trackers.json``: a resumed run
    writes a second ``offline-run-*`` dir with the same id, and ``wandb sync`` uploads the dirs
    of one id in order of start time, as one run.

    Args:
        project: the W&B project.
        save_dir: where the ``wandb/`` folder goes (the run dir).
        offline: write locally only (W&B's ``mode="offline"``).
        name: default: the run dir's name (``<sweep>/<job>`` in a multirun).
        group: default: the sweep dir's name in a multirun (none for a single run).
        **kwargs: passed to ``WandbLogger`` and ``wandb.init`` (``entity``, ``tags``, ``log_model``).
    """
    job = current_job()
    recorded = read_trackers(job.run_dir).get("wandb")
    run_id = recorded["id"] if recorded else secrets.token_hex(8)
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    logger = WandbLogger(name=name or job.name, save_dir=save_dir, offline=offline, id=run_id,
                         project=project, group=group or job.sweep, **kwargs)
    if not recorded:
        record_tracker(job.run_dir, "wandb", {"id": run_id, "project": project})
    return logger


def flat_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as ``{"model.optimizer.lr": 0.001, ...}``; lists stay values."""
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        else:
            flat[prefix[:-1]] = node

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return flat


def trackers(loggers: Sequence[Logger]) -> list[Logger]:
    """The experiment trackers among a trainer's loggers (csv and tensorboard are files)."""
    return [lg for lg in loggers if isinstance(lg, (MLFlowLogger, WandbLogger))]


@rank_zero_only
def log_config(cfg: DictConfig, loggers: Sequence[Logger]) -> None:
    """Log the whole composed config, flattened, as each tracker's parameters.

    MLflow refuses to change a parameter: a resumed run keeps the first attempt's values and
    only adds new keys (what a resume raised, e.g. ``trainer.max_epochs``, is in
    ``.hydra_resume/`` and logged here as info).
    """
    if not trackers(loggers):
        return
    params = flat_config(cfg)
    for logger in trackers(loggers):
        if isinstance(logger, MLFlowLogger):
            logged = logger.experiment.get_run(logger.run_id).data.params
            changed = sorted(k for k, v in params.items()
                             if k in logged and logged[k] != str(v)[:MLFLOW_PARAM_CHARS])
            if changed:
                log.info("MLflow keeps the first attempt's parameters; changed on resume: %s",
                         ", ".join(f"{k}={params[k]}" for k in changed))
            logger.log_hyperparams({k: v for k, v in params.items() if k not in logged})
        else:
            logger.log_hyperparams(params)


@rank_zero_only
def log_results(loggers: Sequence[Logger], results: Mapping[str, Any]) -> None:
    """Send ``results.json`` to each tracker: numbers as metrics at the run's last step, text
    (status, error, tested_checkpoint, ...) as MLflow tags and W&B summary values."""
    numbers = {k: v for k, v in results.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)}
    text = {k: str(v) for k, v in results.items() if k not in numbers and v is not None}
    step = int(results.get("global_step") or 0)
    for logger in trackers(loggers):
        logger.log_metrics(numbers, step=step)
        if isinstance(logger, MLFlowLogger):
            for key, value in text.items():
                logger.experiment.set_tag(logger.run_id, key, value)
        else:
            logger.experiment.summary.update({**numbers, **text})


def log_pictures(loggers: Sequence[Logger], run_dir: Path) -> None:
    """Send the run's pictures (``curves.png``, ``confusion.png``) to each tracker: MLflow
    artifacts, W&B images."""
    pictures = [run_dir / name for name in (CURVES, CONFUSION) if (run_dir / name).is_file()]
    for logger in trackers(loggers):
        for path in pictures:
            if isinstance(logger, MLFlowLogger):
                logger.experiment.log_artifact(logger.run_id, str(path))
            else:
                logger.log_image(key=f"pictures/{path.stem}", images=[str(path)])


def finish(failed: bool = False) -> None:
    """End the W&B run this process holds, if any (called when a Hydra job ends). MLflow needs
    nothing: Lightning's ``MLFlowLogger.finalize`` ends its run and keeps no global state."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish(exit_code=1 if failed else 0)
