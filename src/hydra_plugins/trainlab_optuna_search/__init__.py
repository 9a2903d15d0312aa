"""Hydra finds sweepers under the ``hydra_plugins`` namespace: this is trainlab's Optuna search
(the code is :mod:`trainlab.optuna_search`; this package only names it where Hydra looks)."""
