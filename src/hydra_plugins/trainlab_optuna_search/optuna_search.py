"""``hydra/sweeper=optuna_search`` (``hparams_search=optuna``): see :mod:`trainlab.optuna_search`.

Hydra imports every module here at start-up, so this one imports nothing heavy."""

from trainlab.optuna_search import OptunaSearchBase


class OptunaSearch(OptunaSearchBase):
    """Optuna's ask-and-tell loop over trainlab runs, with pruning and a resumable storage."""
