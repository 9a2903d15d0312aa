"""The run itself: compose -> seed -> data -> model -> callbacks -> loggers -> trainer -> fit -> test.

Called by the Hydra main in ``trainlab.train``; heavy imports live here so the CLI stays fast.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning.callbacks import ModelCheckpoint, ProgressBar
from pytorch_lightning.utilities.exceptions import SIGTERMException

from trainlab import rundir, tracking
from trainlab.callbacks.preemption import PreemptionCheckpoint
from trainlab.callbacks.run_clock import RunClock
from trainlab.console import print_config_tree, summary
from trainlab.data.sources import DataUnavailableError
from trainlab.errors import ConfigError
from trainlab.evaluation import check_checkpoint, load_weights
from trainlab.generalization_gap import add_gaps, train_split_metrics
from trainlab.provenance import provenance
from trainlab.results import flat_metrics, write_results
from trainlab.run_owner import launch_rank
from trainlab.run_pictures import write_run_pictures
from trainlab.runtime import intra_op_threads, nvml_check, settings_line
from trainlab.validate import validate

log = logging.getLogger(__name__)

# Trainer flags that switch off a callback the config also lists: (flag, callback class, key)
SWITCHED_CALLBACKS = (("enable_progress_bar", ProgressBar, "callbacks.progress_bar"),
                      ("enable_checkpointing", ModelCheckpoint, "callbacks.model_checkpoint"))
PROVENANCE = "provenance.json"
# what a user fixes in the config or on disk (RunDirError is a ConfigError): one line, no traceback
SETUP_ERRORS = (ConfigError, DataUnavailableError)


def setup_error(err: BaseException) -> BaseException | None:
    """The user-facing error behind ``err``: itself, or the :data:`SETUP_ERRORS` it was raised
    from (Hydra's ``instantiate`` and OmegaConf's resolvers wrap what a constructor or resolver
    raised); None for anything else (a bug: keep its traceback)."""
    while err is not None:
        if isinstance(err, SETUP_ERRORS):
            return err
        err = err.__cause__
    return None


def wall_s(trainer: pl.Trainer, start: float) -> float:
    """Seconds of this attempt since ``start``, plus the earlier attempts' (RunClock)."""
    earlier = sum(c.earlier_s for c in trainer.callbacks if isinstance(c, RunClock))
    return earlier + time.perf_counter() - start


def instantiate_dict(node: DictConfig | None) -> list[Any]:
    """Instantiate every entry of a dict of configs that has a ``_target_`` (others are off)."""
    if not node:
        return []
    return [instantiate(v) for v in node.values() if isinstance(v, DictConfig) and "_target_" in v]


def build(cfg: DictConfig) -> tuple[pl.LightningDataModule, pl.LightningModule, pl.Trainer]:
    """Instantiate data, model, callbacks, loggers and trainer in that order."""
    validate(cfg)
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model)
    callbacks = instantiate_dict(cfg.get("callbacks"))
    # the stop check acts after every other callback's on_train_batch_end (LR step, logging)
    callbacks.sort(key=lambda c: isinstance(c, PreemptionCheckpoint))
    for key, cls, where in SWITCHED_CALLBACKS:  # two keys for one thing must agree
        if cfg.trainer.get(key) is False and any(isinstance(c, cls) for c in callbacks):
            raise ConfigError(f"trainer.{key}=false while {where} is set: the callback is the "
                              f"setting; set {where}=null to switch it off")
    loggers = instantiate_dict(cfg.get("logger"))
    defaults: dict[str, Any] = {}
    if cfg.trainer.get("enable_progress_bar") is None:  # callbacks.progress_bar=null: no bar at all
        defaults["enable_progress_bar"] = any(isinstance(c, ProgressBar) for c in callbacks)
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, **defaults)
    return datamodule, model, trainer


def fit_and_test(cfg: DictConfig, datamodule, model, trainer: pl.Trainer, ckpt_path: str | None,
                 trained: dict[str, Any] | None = None,
                 before_test: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train (resuming from ``ckpt_path``), test, and return the flat results.

    Args:
        trained: the training's metrics recorded by an earlier attempt that was stopped while
            testing (its fit has nothing left to do, so it logs none of its own).
        before_test: called with the training's results before the test starts.
    """
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    results = {**(trained or {}), **flat_metrics(trainer.callback_metrics)}
    if cfg.test and not trainer.interrupted:
        if before_test is not None:
            before_test(results)
        # the checkpoint with the best monitored value; without a monitor there is no best: the
        # weights the run ended with (with weight_averaging, the average) are the ones tested
        callback = trainer.checkpoint_callback
        best = callback.best_model_path if callback is not None and callback.monitor else ""
        if best:  # its weights, as eval.py loads them: a Trainer that fit with weight_averaging
            # would restore the trained weights beside the average from its ckpt_path
            load_weights(model, datamodule, Path(best))
        tested = trainer.test(model, datamodule=datamodule, verbose=False)
        results.update(flat_metrics(tested[0]) if tested else {})
        results.update(train_split_metrics(trainer, model, datamodule))  # the same weights, eval mode
        results["tested_checkpoint"] = Path(best).name if best else "final weights"
    if trainer.is_global_zero:
        write_run_pictures(Path(trainer.default_root_dir), getattr(model, "confusion", None))
    results["epoch"] = trainer.current_epoch
    results["global_step"] = trainer.global_step
    results["status"] = model.status if not trainer.interrupted else "interrupted"
    return add_gaps(results)


def run_job(cfg: DictConfig, process: dict[str, str] | None = None) -> float | None:
    """One Hydra job. In a multirun a failing trial is recorded, not raised.

    Args:
        cfg: the composed config.
        process: what ``trainlab.runtime.tune_process`` chose, recorded in ``results.json``.
    """
    hydra_cfg = HydraConfig.get()
    output_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    start = time.perf_counter()
    process = {**(process or {}), "process/nvml_check": nvml_check(cfg.process.skip_failing_nvml_check),
               "process/threads": intra_op_threads()}
    log.info("%s", settings_line(process))
    origin = provenance()
    base = {"seed": cfg.seed, "tag": cfg.get("tag"), "run_dir": str(output_dir), **process, **origin}
    ckpt_path = None
    trained: dict[str, Any] = {}
    # DDP children and SLURM tasks > 0 run this job too, in the same dir: only rank 0 checks
    # that the dir is fresh (the others would find rank 0's files), prints and records failures.
    rank_zero = launch_rank() == 0
    try:  # a trial of another sweep in this dir stops the sweep: its results must stay as they are
        earlier = earlier_trial(cfg, output_dir, multirun)
    except ConfigError as err:
        raise SystemExit(f"error: {err}") from None
    try:
        if earlier == rundir.SKIP:
            return skip_trial(cfg, output_dir)
        if earlier == rundir.RERUN and rank_zero:
            rundir.set_aside_failed(output_dir)
        if cfg.resume or rundir.requeued(output_dir) or earlier == rundir.RESUME:
            # a requeued job or continued sweep repeats its first command: only an explicit
            # resume brings changes
            cfg = rundir.resumed_config(output_dir, hydra_cfg.overrides.task if cfg.resume else ())
            base.update(seed=cfg.seed, tag=cfg.get("tag"))  # the run's own, not the command's
            ckpt_path = str(output_dir / rundir.LAST)
            trained = rundir.trained_metrics(output_dir)
            log.info("Resuming %s from %s", output_dir, ckpt_path)
        elif rank_zero:
            rundir.guard_fresh(output_dir)
        if rank_zero:
            print_config_tree(cfg)
            if hydra_cfg.output_subdir:  # beside the config this invocation saved
                write_results(output_dir / hydra_cfg.output_subdir / PROVENANCE, origin)
        datamodule, model, trainer = build(cfg)
        tracking.log_config(cfg, trainer.loggers)  # before training: a crashed run has its config
        datamodule.setup("fit")  # read the data now: a missing or corrupt file stops us here
        if ckpt_path is not None:  # not a checkpoint, or another net's: one line, not a traceback
            check_checkpoint(Path(ckpt_path), model)
        if rank_zero:
            summary(model.net, cfg.data.input_shape)
    except Exception as caught:
        err = setup_error(caught)
        if multirun:  # a failing trial is a result: record it, the sweep goes on
            error = str(err) if err is not None else f"{type(caught).__name__}: {caught}"
            if rank_zero:
                write_results(output_dir / rundir.RESULTS, {**base, "status": "failed", "error": error})
            log.error("Trial failed before training: %s", error, exc_info=err is None)
            return None
        if err is None:
            if isinstance(caught, InstantiationException) and caught.__cause__ is not None:
                # a bug in a constructor: its own exception and traceback, not Hydra's one-line wrapper
                raise caught.__cause__ from None
            raise
        raise SystemExit(f"error: {err}") from None

    def record_trained(results: dict[str, Any]) -> None:  # a kill while testing keeps these
        if trainer.is_global_zero:
            write_results(output_dir / rundir.RESULTS, {**base, **results, "status": rundir.TESTING,
                                                        "wall_s": wall_s(trainer, start)})

    try:
        results = fit_and_test(cfg, datamodule, model, trainer, ckpt_path, trained, record_trained)
    except SIGTERMException:
        stopped_by = next((c.signal_name for c in trainer.callbacks
                           if isinstance(c, PreemptionCheckpoint) and c.signal_name), "SIGTERM")
        results = {**base, "status": "interrupted", "stopped_by": stopped_by,
                   "epoch": trainer.current_epoch, "global_step": trainer.global_step,
                   "wall_s": wall_s(trainer, start)}
        if trainer.is_global_zero:
            write_results(output_dir / rundir.RESULTS, results)
        if stopped_by == "SIGUSR1":
            log.warning("SLURM's time limit is near: saved and requeued; the job continues in %s "
                        "by itself", output_dir)
        else:
            log.warning("Stopped by %s; continue with: python train.py resume=%s", stopped_by, output_dir)
        raise SystemExit(130 if stopped_by == "SIGINT" else 143) from None
    except Exception as err:
        if not multirun:
            raise
        log.error("Trial failed: %s\n%s", err, traceback.format_exc())
        results = {"status": "failed", "error": f"{type(err).__name__}: {err}"}
    failure = run_failure(results, getattr(model, "divergence", None))
    if failure and results.get("status") == "ok":
        results["status"] = "failed"
    if failure:
        results["error"] = failure
    results = {**base, **results, "wall_s": wall_s(trainer, start)}
    if trainer.is_global_zero:
        write_results(output_dir / rundir.RESULTS, results)
        log.info("Results: %s", output_dir / rundir.RESULTS)
        tracking.log_results(trainer.loggers, results)
        tracking.log_pictures(trainer.loggers, output_dir)
    if failure and not multirun:  # a sweep records it and goes on (its report counts them)
        raise SystemExit(f"error: {failure} (results: {output_dir / rundir.RESULTS})")
    return optimized_value(cfg, results)


def run_failure(results: dict[str, Any], divergence: str | None) -> str | None:
    """Why a run that ended without an exception failed all the same, or None: its loss turned
    non-finite (``divergence`` says where and the likely cause), or it took no optimizer step."""
    if results.get("status") == "diverged":
        return divergence or "the training loss turned non-finite"
    if results.get("status") == "ok" and not results.get("global_step"):
        return ("the run took no optimizer step: the training loader gave no batch (check "
                "trainer.limit_train_batches, trainer.max_steps, and that data.batch_size fits the "
                "training split)")
    return None


def optimized_value(cfg: DictConfig, results: dict[str, Any]) -> float | None:
    """``results[optimized_metric]`` for a sweeper that optimizes (NaN where the run has none)."""
    metric = cfg.get("optimized_metric")
    if metric:
        value = results.get(metric)
        return float(value) if value is not None else float("nan")
    return None


def earlier_trial(cfg: DictConfig, output_dir: Path, multirun: bool) -> str:
    """What this job does with a trial its dir already holds (:func:`trainlab.rundir.earlier_trial`):
    a sweep run again into its own sweep dir continues it; a single run has none. DDP children
    (single runs in their rank 0's dir, with its overrides) read the dir as rank 0 did."""
    if (multirun or launch_rank() != 0) and not cfg.resume:
        return rundir.earlier_trial(output_dir, HydraConfig.get().overrides.task, cfg.retry_failed)
    if cfg.retry_failed:
        raise ConfigError("retry_failed=true runs the failed trials of a sweep again when the sweep "
                          "is run again into its own dir (python train.py -m ... hydra.sweep.dir=<it>); "
                          "a single run has none: drop it")
    return rundir.NEW


def skip_trial(cfg: DictConfig, output_dir: Path) -> float | None:
    """A trial an earlier run of this sweep finished: its saved result, nothing trained."""
    results = rundir.read_results(output_dir)
    hint = " (retry_failed=true runs it again)" if results.get("status") == "failed" else ""
    log.info("Trial %s already has a result (status %s): skipped%s", output_dir,
             results.get("status"), hint)
    return optimized_value(cfg, results)


