"""Stop a trial of an Optuna search that its pruner gives up on (``hparams_search=optuna``)."""

from __future__ import annotations

import os

import pytorch_lightning as pl
from typing_extensions import override

from trainlab.errors import ConfigError
from trainlab.optuna_search import ENV_STORAGE, ENV_STUDY, ENV_TRIAL


class OptunaPruning(pl.Callback):
    """Report ``monitor`` to the trial after every validation, as the value at step = epoch;
    when the study's pruner says the trial is worse than the others were at that epoch, stop
    training at once. The run then ends as usual (tested, saved) with status ``pruned``.

    The trial is the one the search launched this job for (trainlab.optuna_search passes its
    storage, study and id in the job's environment), judged by the search's pruner
    (``hydra.sweeper.pruner``), as Optuna's own Lightning callback does with the trial it is given.

    Args:
        monitor: the metric reported, e.g. ``val/acc`` (the search's ``optimized_metric``).
    """

    def __init__(self, monitor: str) -> None:
        if not monitor:
            raise ConfigError("callbacks.optuna_pruning.monitor must name a validation metric (e.g. val/acc)")
        if not all(os.environ.get(k) for k in (ENV_STORAGE, ENV_STUDY, ENV_TRIAL)):
            raise ConfigError("callbacks.optuna_pruning prunes trials of an Optuna search and this run "
                              "is none (hparams_search=optuna launches them); set "
                              "callbacks.optuna_pruning=null")
        self.monitor = monitor
        self.trial = None
        self.pruned_at: int | None = None

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        import optuna
        from hydra.core.hydra_config import HydraConfig
        from hydra.utils import instantiate

        # the storage keeps trials, not the pruner: build the search's own (hydra.sweeper.pruner)
        pruner = instantiate(HydraConfig.get().sweeper.pruner)
        study = optuna.load_study(study_name=os.environ[ENV_STUDY], storage=os.environ[ENV_STORAGE],
                                  pruner=pruner)
        self.trial = optuna.trial.Trial(study, int(os.environ[ENV_TRIAL]))

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.trial is None:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            raise KeyError(f"callbacks.optuna_pruning.monitor={self.monitor!r} was not logged; logged: "
                           f"{sorted(trainer.callback_metrics)}")
        self.trial.report(float(value), step=trainer.current_epoch)
        if self.trial.should_prune():
            self.pruned_at = trainer.current_epoch
            pl_module.status = "pruned"
            trainer.should_stop = True
