"""Tabular classification from any table: arrays, a DataFrame, a CSV file or scikit-learn's
bundled ones, split three ways and scaled with statistics of the training rows alone."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from typing_extensions import override

from trainlab.data.in_memory import InMemoryDataModule
from trainlab.errors import ConfigError

log = logging.getLogger(__name__)

SKLEARN_TABLES = ("wine", "breast_cancer", "iris")
SOURCE_FILE = "trainlab_source_file"  # DataFrame.attrs key: the CSV file a table was read from


def sklearn_table(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels of one of scikit-learn's bundled tables (no download)."""
    from sklearn import datasets

    if name not in SKLEARN_TABLES:
        raise ConfigError(f"data.source.name must be one of {SKLEARN_TABLES}, got {name!r}")
    bunch = getattr(datasets, f"load_{name}")()
    return bunch.data, bunch.target


def csv_table(path: str) -> Any:
    """A CSV file as a pandas DataFrame (name its label column with ``data.target``)."""
    import pandas as pd

    if not Path(path).is_file():
        raise ConfigError(f"data.source.path={path!r}: no such file")
    try:
        table = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise ConfigError(f"data.source.path={path!r} is empty: it needs a header line naming the "
                          "columns, then one row per example") from None
    if table.empty:
        raise ConfigError(f"data.source.path={path!r} has no rows below its header: it needs one "
                          "row per example")
    table.attrs[SOURCE_FILE] = str(path)  # read by the checks, which then name the file's rows
    return table


def features_and_labels(table: Any, target: str | None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A source's table as float64 features (N, F), labels 0..K-1 and the K class names.

    Args:
        table: ``(features, labels)`` array-likes, or a pandas DataFrame holding both.
        target: the label column of a DataFrame (None for an ``(x, y)`` pair).

    Labels that are not already 0..K-1 (strings, or integers with gaps) are numbered in sorted
    order, so class ``k`` is the k-th smallest label.

    Raises:
        ConfigError: a feature column is not numeric, a row lacks its label, or a feature value
            is missing or infinite; the message names the row (see :func:`table_rows`).
    """
    import pandas as pd

    where, row = table_rows(table)
    if hasattr(table, "columns"):  # a DataFrame
        from pandas.api.types import is_numeric_dtype

        if target not in table.columns:
            raise ConfigError(f"data.target={target!r} must name the label column of the source's "
                              f"DataFrame; its columns: {list(table.columns)}")
        labels, features = table[target].to_numpy(), table.drop(columns=[target])
        text = [c for c in features.columns if not is_numeric_dtype(features[c])]
        if text:
            raise ConfigError(f"{where}: feature columns {text} are not numbers; encode them in "
                              "the source (e.g. pandas.get_dummies) or drop them")
        columns, features = list(features.columns), features.to_numpy()
    else:
        if target is not None:
            raise ConfigError(f"data.target={target!r} names a DataFrame column, but the source gives "
                              "(features, labels) arrays: set data.target=null")
        features, labels = table
        columns = None
    x, labels = np.asarray(features, dtype=np.float64), np.asarray(labels)
    if x.ndim != 2 or len(x) != len(labels):
        raise ConfigError(f"data.source must give features (N, F) and N labels, got {x.shape} and "
                          f"{len(labels)}")
    # np.unique would make a NaN label a class of its own (or fail on NaN beside text)
    unlabeled = np.flatnonzero(pd.isna(labels))
    if len(unlabeled):
        column = f" (column {target!r})" if target is not None else ""
        raise ConfigError(f"{where}: {row(unlabeled[0])} has no label{column}, {len(unlabeled)} "
                          "row(s) in all; every row needs a label: fill it in or drop the row")
    bad_rows, bad_cols = np.nonzero(~np.isfinite(x))
    if len(bad_rows):
        i, j = bad_rows[0], bad_cols[0]
        column = repr(columns[j]) if columns is not None else j
        value = "has no value (NaN)" if np.isnan(x[i, j]) else f"holds {x[i, j]}"
        raise ConfigError(f"{where}: {row(i)}, column {column} {value}, {len(np.unique(bad_rows))} "
                          "row(s) in all; features must be finite numbers: fill them in or drop "
                          "those rows")
    names, y = np.unique(labels, return_inverse=True)
    return x, y.astype(np.int64), [str(n) for n in names]


def table_rows(table: Any) -> tuple[str, Callable[[int], str]]:
    """Where a table came from, and how to name its i-th row to the user.

    A table read by :func:`csv_table` is its file, and its rows are counted as in a spreadsheet
    (the header is row 1, the first example row 2); any other table is ``data.source``, its rows
    counted from 0.
    """
    path = getattr(table, "attrs", {}).get(SOURCE_FILE)
    if path is not None:
        return path, lambda i: f"row {i + 2} (the header is row 1)"
    return "data.source", lambda i: f"row {i} (counting from 0)"


def split_sizes(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    """Rows in train, val and test, as :meth:`TabularDataModule.setup`'s two calls of
    scikit-learn's ``train_test_split`` draw them (test first, rounded up; then val from the
    rest, rounded up)."""
    n_test = math.ceil(test_fraction * n)
    n_val = math.ceil(val_fraction / (1 - test_fraction) * (n - n_test))
    return n - n_test - n_val, n_val, n_test


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
    """A table split into stratified train/val/test, scaled with statistics of train alone.

    Args:
        source: callable returning the whole table: ``(features, labels)`` array-likes or a
            pandas DataFrame (``sklearn_table``, ``csv_table`` or your own function).
        target: the label column when ``source`` gives a DataFrame; None for arrays.
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

    def __init__(self, source: Callable[[], Any], input_shape: list[int], num_classes: int,
                 target: str | None = None, scaler: Any = None, val_fraction: float = 0.2,
                 test_fraction: float = 0.2,
                 batch_size: int = 32, outlier_fraction: float = 0.0, outlier_scale: float = 100.0,
                 split_seed: int = 0, shuffle_seed: int = 0, augment: Any = None) -> None:
        super().__init__()
        if augment is not None and len(augment) > 0:
            raise ConfigError("augmentation acts on image batches; tabular data takes "
                              f"augmentation=none, got {augment!r}")
        if not callable(source):
            raise ConfigError(f"data.source must be a callable that returns the table, got {source!r}")
        for key, value in (("data.val_fraction", val_fraction), ("data.test_fraction", test_fraction)):
            if not 0 < value < 0.5:
                raise ConfigError(f"{key} must be in (0, 0.5), got {value}")
        if not 0 <= outlier_fraction < 1:
            raise ConfigError(f"data.outlier_fraction must be in [0, 1), got {outlier_fraction}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"data.batch_size must be an integer >= 1, got {batch_size!r}")
        if scaler is not None and not (hasattr(scaler, "fit") and hasattr(scaler, "transform")):
            raise ConfigError(f"data.scaler must be a scikit-learn transformer or null, got {scaler!r}")
        self.source, self.target, self.scaler = source, target, scaler
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

        table = self.source()
        where, _ = table_rows(table)
        x, y, classes = features_and_labels(table, self.target)
        if (x.shape[1],) != self.input_shape or len(classes) != self.num_classes:
            raise ConfigError(f"the table has {x.shape[1]} features and {len(classes)} classes; the "
                              f"config says data.input_shape={list(self.input_shape)} and "
                              f"data.num_classes={self.num_classes}")
        fractions = f"data.val_fraction={self.val_fraction} and data.test_fraction={self.test_fraction}"
        sizes = split_sizes(len(x), self.val_fraction, self.test_fraction)
        if min(sizes) < len(classes):  # a stratified split holds one row of each class at least
            raise ConfigError(f"{where}: its {len(x)} rows split into {sizes[0]} train / {sizes[1]} "
                              f"val / {sizes[2]} test with {fractions}; each split needs at least "
                              f"{len(classes)} rows (one per class): add rows or change the fractions")
        try:
            x_rest, x_test, y_rest, y_test = train_test_split(
                x, y, test_size=self.test_fraction, random_state=self.split_seed, stratify=y)
            x_train, x_val, y_train, y_val = train_test_split(
                x_rest, y_rest, test_size=self.val_fraction / (1 - self.test_fraction),
                random_state=self.split_seed, stratify=y_rest)
        except ValueError as err:  # e.g. a class of 2 rows cannot be in all three splits
            raise ConfigError(f"{where}: its {len(x)} rows cannot be split into stratified train/"
                              f"val/test with {fractions}: {err}") from None
        x_train = inject_outliers(x_train, self.outlier_fraction, self.outlier_scale, self.split_seed)
        parts = {"train": (x_train, y_train), "val": (x_val, y_val), "test": (x_test, y_test)}
        if self.scaler is not None:
            self.scaler.fit(x_train)  # train only: val/test statistics must not leak in
            parts = {k: (self.scaler.transform(v[0]), v[1]) for k, v in parts.items()}
        self.splits = {k: (torch.as_tensor(v[0], dtype=torch.float32), torch.as_tensor(v[1]))
                       for k, v in parts.items()}
        log.info("Table: %d train / %d val / %d test rows, classes %s, scaler=%s", len(x_train),
                 len(x_val), len(x_test), classes, type(self.scaler).__name__ if self.scaler else None)
