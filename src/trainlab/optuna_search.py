"""A Hydra sweeper that runs an Optuna study (``hparams_search=optuna``).

Each trial is an ordinary trainlab run in ``<sweep dir>/<trial number>/`` (its own config,
checkpoints, ``results.json``), launched by the sweep's Hydra launcher with the trial's values as
overrides, so the sweep report reads a search as it reads a grid. The study lives in an Optuna
storage, by default ``sqlite:///<sweep dir>/optuna.db``:

- **continue**: run the same command with ``hydra.sweep.dir=<that dir>``; the study is loaded and
  runs until it holds ``n_trials`` trials. A trial whose worker stopped (no heartbeat for
  ``grace_period`` s) is marked failed and run again with the same values, resuming from its own
  run dir's ``last.ckpt``;
- **several workers**: start the same command several times (e.g. one SLURM array task each);
  they share the storage and together run ``n_trials`` trials;
- **pruning**: ``callbacks.optuna_pruning`` (:class:`trainlab.callbacks.OptunaPruning`) reports
  the monitored metric after every validation and stops a trial the pruner gives up on; its
  ``results.json`` says ``pruned`` and Optuna records it as pruned.

Nothing heavy is imported at module level: Hydra imports the plugin module at every start.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from trainlab import rundir
from trainlab.atomic_files import write_text_atomically
from trainlab.errors import ConfigError

log = logging.getLogger(__name__)

STORAGE_FILE = "optuna.db"
BEST_FILE = "optimization_results.yaml"
# what the job learns of its trial: the environment Hydra sets for it (hydra.job.env_set)
ENV_STORAGE, ENV_STUDY = "TRAINLAB_OPTUNA_STORAGE", "TRAINLAB_OPTUNA_STUDY"
ENV_TRIAL = "TRAINLAB_OPTUNA_TRIAL"
FAILED_BY_RUN = "trainlab_status"  # user attr of a trial the run itself reported failed
DIRECTIONS = ("maximize", "minimize")


class OptunaSearchBase(Sweeper):
    """Ask Optuna for trials, run them with the sweep's launcher, tell Optuna their result.

    Args:
        params: ``{override key: optuna distribution}``, e.g. ``model.optimizer.lr:
            {_target_: optuna.distributions.FloatDistribution, low: 1e-4, high: 0.03, log: true}``.
        n_trials: trials the study should hold in all (every worker together).
        n_jobs: trials launched at once by this worker (the launcher runs them side by side).
        direction: ``maximize`` or ``minimize`` the job's ``optimized_metric``.
        study_name: the study's name in the storage.
        storage: an Optuna storage URL; null = ``sqlite:///<sweep dir>/optuna.db``.
        sampler, pruner: Optuna objects (``_target_`` configs).
        heartbeat_interval, grace_period: seconds; a running trial without a heartbeat for
            ``grace_period`` is taken to be stopped and is run again.
        max_retry: how often a stopped trial is run again.
    """

    def __init__(self, params: DictConfig, n_trials: int, n_jobs: int, direction: str, study_name: str,
                 storage: str | None, sampler: Any, pruner: Any, heartbeat_interval: int = 60,
                 grace_period: int = 180, max_retry: int = 3) -> None:
        if direction not in DIRECTIONS:
            raise ConfigError(f"hydra.sweeper.direction={direction!r} is not allowed: one of {DIRECTIONS}")
        for key, value in (("n_trials", n_trials), ("n_jobs", n_jobs), ("heartbeat_interval",
                           heartbeat_interval), ("grace_period", grace_period)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"hydra.sweeper.{key}={value!r} is not allowed: an integer >= 1")
        if grace_period <= heartbeat_interval:
            raise ConfigError(f"hydra.sweeper.grace_period={grace_period} must exceed "
                              f"heartbeat_interval={heartbeat_interval}")
        self.params_cfg, self.n_trials, self.n_jobs = params, n_trials, n_jobs
        self.direction, self.study_name, self.storage_url = direction, study_name, storage
        self.sampler_cfg, self.pruner_cfg = sampler, pruner
        self.heartbeat_interval, self.grace_period = heartbeat_interval, grace_period
        self.max_retry = max_retry
        self.config: DictConfig | None = None
        self.launcher = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def distributions(self) -> dict[str, Any]:
        """The search space: every ``params`` entry as an Optuna distribution."""
        from optuna.distributions import BaseDistribution

        space = {}
        for key, node in (self.params_cfg or {}).items():
            try:
                dist = instantiate(node)
            except Exception as err:
                raise ConfigError(f"hydra.sweeper.params.{key}: {err.__cause__ or err}") from None
            if not isinstance(dist, BaseDistribution):
                raise ConfigError(f"hydra.sweeper.params.{key}={OmegaConf.to_container(node)!r} is not an "
                                  "Optuna distribution: give a _target_ of optuna.distributions "
                                  "(FloatDistribution, IntDistribution, CategoricalDistribution)")
            space[str(key)] = dist
        if not space:
            raise ConfigError("hydra.sweeper.params is empty: name at least one key to search")
        return space

    def study(self, sweep_dir: Path):
        """The study in the storage, created or loaded (a continued search)."""
        import optuna
        from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

        url = self.storage_url or f"sqlite:///{(sweep_dir / STORAGE_FILE).resolve()}"
        storage = RDBStorage(url, heartbeat_interval=self.heartbeat_interval, grace_period=self.grace_period,
                             heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(self.max_retry))
        study = optuna.create_study(storage=storage, study_name=self.study_name, direction=self.direction,
                                    sampler=instantiate(self.sampler_cfg),
                                    pruner=instantiate(self.pruner_cfg),
                                    load_if_exists=True)
        return study, storage, url

    def sweep(self, arguments: list[str]) -> None:
        import optuna

        # heartbeats and their retry are what make a stopped search continue (Optuna marks them
        # experimental), and Optuna ties them to study.optimize, which runs trials in-process
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        assert self.config is not None and self.launcher is not None
        space = self.distributions()
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomically(sweep_dir / rundir.SWEEP_CONFIG, OmegaConf.to_yaml(self.config))
        study, storage, url = self.study(sweep_dir)
        log.info("Optuna study %r in %s: %d of %d trials there", self.study_name, url,
                 counted(study), self.n_trials)
        while True:
            optuna.storages.fail_stale_trials(study)  # stopped workers' trials: run again
            room = self.n_trials - counted(study)
            if room <= 0:
                break
            trials = [study.ask(space) for _ in range(min(self.n_jobs, room))]
            jobs = [self.job_overrides(study, trial, url, arguments) for trial in trials]
            with Heartbeat(storage, trials, self.heartbeat_interval):
                self.launcher.launch(jobs, initial_job_idx=trials[0].number)
            for trial in trials:
                tell(study, trial, sweep_dir / trial_dir_name(study, trial), self.config.optimized_metric)
        write_best(study, sweep_dir)

    def job_overrides(self, study, trial, url: str, arguments: Sequence[str]) -> list[str]:
        """The trial's values as overrides, after the command line's; its run dir and identity."""
        values = [f"{key}={value!r}" for key, value in trial.params.items()]
        env = "hydra.job.env_set.{}"
        return [*arguments, *values, f"hydra.sweep.subdir={trial_dir_name(study, trial)}",
                f"+{env.format(ENV_STORAGE)}={url}", f"+{env.format(ENV_STUDY)}={self.study_name}",
                f"+{env.format(ENV_TRIAL)}={trial_id(trial)}"]


def trial_id(trial) -> int:
    """The storage's id of a trial, which a job needs to rebuild it (``optuna.trial.Trial``),
    asked of the storage by the study's name and the trial's number (``Trial`` keeps its own
    private)."""
    storage = trial.storage
    study_id = storage.get_study_id_from_name(trial.study.study_name)
    return storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)


def trial_dir_name(study, trial) -> str:
    """A trial's run dir: its number, or for a trial run again that of the first attempt."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    frozen = study.get_trials(deepcopy=False)[trial.number]
    first = RetryHeartbeatStaleTrialCallback.retried_trial_number(frozen)
    return str(first if first is not None else trial.number)


def counted(study) -> int:
    """Trials that count towards ``n_trials``: done, running or queued, and those whose run
    failed (a trial failed because its worker stopped is run again, and counts as that)."""
    from optuna.trial import TrialState

    live = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
    return sum(t.state in live or (t.state == TrialState.FAIL and FAILED_BY_RUN in t.user_attrs)
               for t in study.get_trials(deepcopy=False))


def tell(study, trial, run_dir: Path, metric_key: str | None) -> None:
    """Tell Optuna how the trial's run ended, from its ``results.json`` (``metric_key`` is the
    sweep's ``optimized_metric``)."""
    from optuna.trial import TrialState

    results = rundir.read_results(run_dir) if (run_dir / rundir.RESULTS).is_file() else {}
    status = results.get("status", "failed")
    metric = results.get(metric_key or "")
    if status == "pruned":
        study.tell(trial, state=TrialState.PRUNED)
    elif status == "ok" and isinstance(metric, (int, float)) and metric == metric:
        study.tell(trial, float(metric))
    else:
        trial.set_user_attr(FAILED_BY_RUN, status)
        study.tell(trial, state=TrialState.FAIL)
    log.info("Trial %d (%s): %s %s", trial.number, run_dir, status, metric if status == "ok" else "")


def write_best(study, sweep_dir: Path) -> None:
    """``optimization_results.yaml``: the best trial's values and metric, if one completed."""
    try:
        best = study.best_trial
    except ValueError:  # no completed trial
        log.warning("No trial of the study completed")
        return
    best_record = {"name": "optuna", "best_trial": best.number, "best_value": best.value,
                   "best_params": best.params}
    write_text_atomically(sweep_dir / BEST_FILE, OmegaConf.to_yaml(OmegaConf.create(best_record)))
    log.info("Best trial %d: %s = %s with %s", best.number, study.direction.name.lower(), best.value,
             best.params)


class Heartbeat:
    """Record a heartbeat for the running trials every ``interval`` seconds while they run, so
    that other workers (and a later continuation) can tell a stopped worker's trials."""

    def __init__(self, storage, trials, interval: int) -> None:
        self.storage = storage
        self.ids = [trial_id(trial) for trial in trials]
        self.interval = interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        while True:
            for trial_id in self.ids:
                self.storage.record_heartbeat(trial_id)
            if self.stop.wait(self.interval):
                return

    def __enter__(self) -> Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
