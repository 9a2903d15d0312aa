"""Hydra callbacks. Hydra imports this module at startup, so its imports stay light.

Registered by the training config (``conf/hydra/default.yaml``) as::

    hydra:
      callbacks:
        report:
          _target_: trainlab.hydra_callbacks.SweepReport
        release_ddp:
          _target_: trainlab.hydra_callbacks.ReleaseDDP
        finish_trackers:
          _target_: trainlab.hydra_callbacks.FinishTrackers
        slurm_preflight:
          _target_: trainlab.hydra_callbacks.SlurmPreflight
        claim_sweep_dir:
          _target_: trainlab.hydra_callbacks.ClaimSweepDir
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from typing_extensions import override

from trainlab import rundir

log = logging.getLogger(__name__)


class SweepReport(Callback):
    """Write the sweep report (:func:`trainlab.report.write_report`) when a multirun ends.

    Args:
        metrics: Metrics for the table and plots; default: the report's defaults.
        option_keys: Override keys that define an option; default: those that vary.
    """

    def __init__(
        self, metrics: Sequence[str] | None = None, option_keys: Sequence[str] | None = None
    ) -> None:
        # Hydra passes ListConfig; keep plain lists.
        self.metrics = None if metrics is None else [str(m) for m in metrics]
        self.option_keys = None if option_keys is None else [str(k) for k in option_keys]

    @override
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Write the report into ``hydra.sweep.dir``; never raises.

        A bug in the report must not turn a finished sweep into an error, so every
        exception is logged as a warning. ``config`` is the object the sweeper used, so a
        ``${now:...}`` in the sweep dir resolves to the cached, identical time.
        """
        try:
            sweep_dir = str(config.hydra.sweep.dir)
            from trainlab.report import write_report  # matplotlib only when reporting

            files = write_report(sweep_dir, metrics=self.metrics, option_keys=self.option_keys)
        except Exception as exc:  # any report bug, see docstring
            log.warning("Sweep report not written: %s: %s", type(exc).__name__, exc, exc_info=True)
            return
        print(f"Sweep report in {sweep_dir}: " + ", ".join(sorted(files)))
        print(f"  summary: {files['summary.md']}")
        counts = trial_counts(sweep_dir)
        line = f"{sum(counts.values())} trials: " + ", ".join(f"{n} {s}" for s, n in counts.items())
        if set(counts) - {"ok"}:
            log.warning("%s (their errors: %s)", line, files["summary.md"])
        else:
            print(f"  {line}")


def trial_counts(sweep_dir: str | Path) -> dict[str, int]:
    """How many trials of a sweep ended with each status the report counts (``ok`` first)."""
    from trainlab.report.load import load_trials
    from trainlab.report.stats import COUNTED, counted_status

    counts = counted_status(load_trials(sweep_dir).info["status"]).value_counts()
    return {status: int(counts[status]) for status in COUNTED if counts.get(status)}


class ReleaseDDP(Callback):
    """End the DDP process group a job launched (:func:`trainlab.ddp.release_job`) when the
    job ends, so the next job of a multirun starts its own ranks. Costs nothing when no job
    used DDP: ``trainlab.ddp`` is only consulted if a job imported it.
    """

    @override
    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        import sys

        ddp = sys.modules.get("trainlab.ddp")
        if ddp is not None:
            ddp.release_job()



class FinishTrackers(Callback):
    """End the experiment-tracker run a job started (:func:`trainlab.tracking.finish`) when the
    job ends, so the next job of a multirun starts its own: Lightning's ``WandbLogger`` never
    calls ``wandb.finish()`` and reuses a run still open in the process. A failed job's run is
    marked failed. Costs nothing when no job built a tracker: ``trainlab.tracking`` is only
    consulted if a job imported it.
    """

    @override
    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        import sys

        from hydra.core.utils import JobStatus

        tracking = sys.modules.get("trainlab.tracking")
        if tracking is not None:
            tracking.finish(failed=job_return.status == JobStatus.FAILED)

# the keys of hydra.launcher that size a SLURM job (trainlab.slurm_check.Request)
SLURM_REQUEST_KEYS = ("partition", "nodes", "tasks_per_node", "cpus_per_task", "gpus_per_node",
                      "mem_gb", "timeout_min")


class SlurmPreflight(Callback):
    """Before a ``hydra/launcher=slurm`` sweep is submitted: stop it when no node of the partition
    could ever run its jobs (:func:`trainlab.slurm_check.check_launcher`; SLURM would leave them
    pending while the launcher waits), note that ``trainer.accelerator=auto`` asks for no GPU on
    a partition that has some, and show submitit's "sacct unavailable" warning once instead of on
    every poll. Does nothing for other launchers.
    """

    @override
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        launcher = config.hydra.launcher
        if not str(launcher.get("_target_", "")).endswith("SlurmLauncher"):
            return
        from trainlab import slurm_check

        slurm_check.quiet_sacct_warnings()
        # Hydra turns an Exception from a callback into a warning; a resolver's ConfigError
        # (trainer.devices=auto) is raised again, with its message, when the launcher is built
        request = {key: launcher.get(key) for key in SLURM_REQUEST_KEYS}
        message = slurm_check.check_launcher(request)
        if message:
            raise SystemExit(f"error: {message}")  # SystemExit: stops the sweep (see above)
        note = slurm_check.auto_accelerator_note(OmegaConf.select(config, "trainer.accelerator"),
                                                 request["partition"])
        if note:
            log.warning("%s", note)


# sweepers whose workers run side by side in one sweep dir (the Optuna search: several
# processes, or a SLURM array, draw trials from one study); each trial's dir has its owner
SHARED_SWEEP_DIRS = ("OptunaSearch",)


def shares_its_sweep_dir(config: DictConfig) -> bool:
    """Whether the sweep's workers share its dir by design (:data:`SHARED_SWEEP_DIRS`)."""
    return str(OmegaConf.select(config, "hydra.sweeper._target_") or "").endswith(SHARED_SWEEP_DIRS)


class ClaimSweepDir(Callback):
    """One owner per sweep dir (:mod:`trainlab.run_owner`), claimed before the launcher writes
    into it (none for a sweeper whose workers share the dir, :data:`SHARED_SWEEP_DIRS`). A
    sweep run again into its own dir (to continue it) must be the same sweep: the same
    overrides but for how it is continued (``retry_failed``), with every trial's
    ``results.json`` readable; else it is refused with the dir as it was. The earlier
    ``multirun.yaml`` is kept as ``multirun.<k>.yaml`` before Hydra writes this invocation's.
    Each job's own dir is claimed as Hydra resolves its ``hydra.output_subdir``
    (:func:`trainlab.resolvers.claimed_config_subdir`) and given up here when the job ends, so
    the next job of a launcher process can take its own."""

    @override
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from trainlab import run_owner

        sweep_dir = Path(config.hydra.sweep.dir)
        record = sweep_dir / rundir.SWEEP_CONFIG
        overrides = [str(o) for o in config.hydra.overrides.task]

        def same_sweep() -> None:  # and every trial's record readable, before anything is written
            if record.is_file():
                rundir.check_same_sweep(sweep_dir, overrides)
            for trial in rundir.trial_dirs(sweep_dir):
                if (trial / rundir.RESULTS).is_file():
                    rundir.read_results(trial)

        try:
            if shares_its_sweep_dir(config):
                same_sweep()
            else:
                run_owner.claim(sweep_dir, same_sweep)
        except rundir.RunDirError as err:
            raise run_owner.refuse(err) from None  # SystemExit: Hydra would turn others into warnings
        if record.is_file():
            earlier = len(list(sweep_dir.glob("multirun.*.yaml")))
            shutil.copy2(record, sweep_dir / f"multirun.{earlier + 1}.yaml")
            log.info("Continuing the sweep in %s: trials with a result are skipped", sweep_dir)

    @override
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from trainlab import run_owner

        run_owner.release(config.hydra.sweep.dir)

    @override
    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        from trainlab import run_owner

        output_dir = OmegaConf.select(config, "hydra.runtime.output_dir")
        if output_dir:
            run_owner.release(output_dir)
