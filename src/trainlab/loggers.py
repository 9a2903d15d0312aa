"""A CSV logger that appends: a resumed run keeps the metrics it logged before the interruption.

Lightning's CSVLogger deletes an existing ``metrics.csv`` when its directory is not empty,
which is always the case in a Hydra run directory and loses history on resume.
"""

from __future__ import annotations

import csv

from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.utilities.rank_zero import rank_zero_only
from typing_extensions import override


class AppendingExperimentWriter(ExperimentWriter):
    """Writer that keeps an existing metrics file and its columns."""

    @override
    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                self.metrics_keys = list(csv.DictReader(file).fieldnames or [])


class RunCSVLogger(CSVLogger):
    """``CSVLogger`` writing ``metrics.csv`` straight into ``save_dir`` and appending on resume."""

    def __init__(self, save_dir: str, **kwargs) -> None:
        super().__init__(save_dir=save_dir, name="", version="", **kwargs)

    @property
    @override
    @rank_zero_only
    def experiment(self) -> AppendingExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = AppendingExperimentWriter(log_dir=self.log_dir)
        return self._experiment
