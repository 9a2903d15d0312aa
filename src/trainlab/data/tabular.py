"""Tabular classification on scikit-learn's shipped datasets, with a scaler fitted on train only."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from typing_extensions import override

from trainlab.data.in_memory import InMemoryDataModule
from trainlab.errors import ConfigError

log = logging.getLogger(__name__)

DATASETS = ("wine", "breast_cancer", "iris")


def load_table(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels of one of scikit-learn's bundled tables (no download)."""
    from sklearn import datasets

    if name not in DATASETS:
        raise ConfigError(f"data.dataset must be one of {DATASETS}, got {name!r}")
    bunch = getattr(datasets, f"load_{name}")()
    return bunch.data.astype(np.float64), bunch.target.astype(np.int64)


def inject_outliers(x: np.ndarray, fraction: float, scale: float, seed: int) -> np.ndarray:
    """Multiply one random feature of ``fraction`` of the rows by ``scale`` (the notes' case
    where MinMax scaling breaks: a few huge values squeeze every other row into a sliver)."""
    if fraction == 0:
        return x
    rng = np.random.default_rng(seed)
    x = x.copy()
    rows = rng.choice(len(x), size=max(1, round(fraction * len(x))), replace=False)
    cols = rng.integers(0, x.shape[1], size=len(rows))
    x[rows, cols] *= scale
    return x


class TabularDataModule(InMemoryDataModule):
    """A scikit-learn table split into train/val/test, scaled with statistics of train alone.

    Args:
        dataset: one of ``wine``, ``breast_cancer``, ``iris``.
        input_shape: ``[n_features]`` as promised to the model; checked.
        num_classes: number of classes as promised to the model; checked.
        scaler: an unfitted scikit-learn transformer (StandardScaler, MinMaxScaler,
            RobustScaler, ...) or None for raw features.
        val_fraction: share of the data for validation.
        test_fraction: share of the data for test.
        batch_size: training batch size.
        outlier_fraction: share of TRAINING rows given one outlier feature (0 = none).
        outlier_scale: factor applied to that feature.
        split_seed: seed of the stratified splits and the outliers.
        shuffle_seed: base seed of the per-epoch training order.
        augment: must be empty (``augmentation=none``): the image augmentations do not apply.
    """

    drop_last_train = False  # every row counts in a small table

    def __init__(self, dataset: str, input_shape: list[int], num_classes: int,
                 scaler: Any = None, val_fraction: float = 0.2, test_fraction: float = 0.2,
                 batch_size: int = 32, outlier_fraction: float = 0.0, outlier_scale: float = 100.0,
                 split_seed: int = 0, shuffle_seed: int = 0, augment: Any = None) -> None:
        super().__init__()
        if augment is not None and len(augment) > 0:
            raise ConfigError("augmentation acts on image batches; tabular data takes "
                              f"augmentation=none, got {augment!r}")
        if dataset not in DATASETS:
            raise ConfigError(f"data.dataset must be one of {DATASETS}, got {dataset!r}")
        for key, value in (("data.val_fraction", val_fraction), ("data.test_fraction", test_fraction)):
            if not 0 < value < 0.5:
                raise ConfigError(f"{key} must be in (0, 0.5), got {value}")
        if not 0 <= outlier_fraction < 1:
            raise ConfigError(f"data.outlier_fraction must be in [0, 1), got {outlier_fraction}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"data.batch_size must be an integer >= 1, got {batch_size!r}")
        if scaler is not None and not (hasattr(scaler, "fit") and hasattr(scaler, "transform")):
            raise ConfigError(f"data.scaler must be a scikit-learn transformer or null, got {scaler!r}")
        self.dataset, self.scaler = dataset, scaler
        self.input_shape, self.num_classes = tuple(input_shape), num_classes
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.batch_size = batch_size
        self.outlier_fraction, self.outlier_scale = outlier_fraction, outlier_scale
        self.split_seed, self.shuffle_seed = split_seed, shuffle_seed

    @override
    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        from sklearn.model_selection import train_test_split

        x, y = load_table(self.dataset)
        if (x.shape[1],) != self.input_shape or int(y.max()) + 1 != self.num_classes:
            raise ConfigError(f"{self.dataset} has {x.shape[1]} features and {int(y.max()) + 1} "
                              f"classes; the config says {list(self.input_shape)} and {self.num_classes}")
        x_rest, x_test, y_rest, y_test = train_test_split(
            x, y, test_size=self.test_fraction, random_state=self.split_seed, stratify=y)
        x_train, x_val, y_train, y_val = train_test_split(
            x_rest, y_rest, test_size=self.val_fraction / (1 - self.test_fraction),
            random_state=self.split_seed, stratify=y_rest)
        x_train = inject_outliers(x_train, self.outlier_fraction, self.outlier_scale, self.split_seed)
        parts = {"train": (x_train, y_train), "val": (x_val, y_val), "test": (x_test, y_test)}
        if self.scaler is not None:
            self.scaler.fit(x_train)  # train only: val/test statistics must not leak in
            parts = {k: (self.scaler.transform(v[0]), v[1]) for k, v in parts.items()}
        self.splits = {k: (torch.as_tensor(v[0], dtype=torch.float32), torch.as_tensor(v[1]))
                       for k, v in parts.items()}
        log.info("Data %s: %d train / %d val / %d test, scaler=%s", self.dataset, len(x_train),
                 len(x_val), len(x_test), type(self.scaler).__name__ if self.scaler else None)
