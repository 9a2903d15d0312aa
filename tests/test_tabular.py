"""Scalers are fitted on the training split only, and MinMax suffers from outliers (the notes)."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch
from sklearn.preprocessing import MinMaxScaler, RobustScaler, StandardScaler

from trainlab.data import TabularDataModule
from trainlab.data.tabular import sklearn_table
from trainlab.errors import ConfigError

WINE = partial(sklearn_table, "wine")


def module(scaler, **kwargs) -> TabularDataModule:
    dm = TabularDataModule(WINE, [13], 3, scaler=scaler, **kwargs)
    dm.setup()
    return dm


def test_standard_scaler_fitted_on_train_only():
    dm = module(StandardScaler())
    train, val, test = (dm.splits[k][0] for k in ("train", "val", "test"))
    assert torch.allclose(train.mean(0), torch.zeros(13), atol=1e-5)
    assert torch.allclose(train.std(0, unbiased=False), torch.ones(13), atol=1e-4)
    assert not torch.allclose(test.mean(0), torch.zeros(13), atol=1e-3)  # not refitted on test
    raw = module(None)
    mu, sd = raw.splits["train"][0].double().mean(0), raw.splits["train"][0].double().std(0, unbiased=False)
    assert torch.allclose(val.double(), (raw.splits["val"][0].double() - mu) / sd, atol=1e-4)
    assert len(train) + len(val) + len(test) == 178


def test_splits_are_disjoint_and_stratified():
    dm = module(None)
    rows = [set(map(tuple, dm.splits[k][0].tolist())) for k in ("train", "val", "test")]
    assert not (rows[0] & rows[1]) and not (rows[0] & rows[2]) and not (rows[1] & rows[2])
    assert torch.bincount(dm.splits["test"][1]).tolist() == [12, 14, 10]


def spread_of_inliers(scaler) -> float:
    """Smallest range of the inlier rows after scaling, over the features that got an outlier."""
    dm = module(scaler, outlier_fraction=0.03, outlier_scale=1000.0)
    x = dm.splits["train"][0].numpy()
    raw = module(None, outlier_fraction=0.03, outlier_scale=1000.0).splits["train"][0].numpy()
    clean = module(None).splits["train"][0].numpy()
    hit = ~np.isclose(raw, clean)
    inliers, columns = ~hit.any(axis=1), hit.any(axis=0)
    assert 0 < (~inliers).sum() <= 5 and columns.any()
    return float((x[inliers][:, columns].max(0) - x[inliers][:, columns].min(0)).min())


def test_minmax_squeezes_inliers_when_outliers_exist_robust_does_not():
    minmax = spread_of_inliers(MinMaxScaler())
    robust = spread_of_inliers(RobustScaler())
    standard = spread_of_inliers(StandardScaler())
    assert minmax < 0.01       # inliers crushed into a sliver of [0, 1]
    assert robust > 1.0        # median/IQR ignore the outliers
    assert standard > 3 * minmax  # std is inflated by the outliers too, but less
    print(f"inlier spread: minmax {minmax:.4f} standard {standard:.4f} robust {robust:.4f}")


def test_outliers_only_touch_training_rows():
    with_outliers = module(None, outlier_fraction=0.05)
    clean = module(None)
    for split in ("val", "test"):
        assert torch.equal(with_outliers.splits[split][0], clean.splits[split][0])
    assert not torch.equal(with_outliers.splits["train"][0], clean.splits["train"][0])


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"source": "wine"}, "data.source must be a callable that returns the table"),
    ({"outlier_fraction": 1.5}, r"data.outlier_fraction must be in \[0, 1\)"),
    ({"scaler": "standard"}, "data.scaler must be a scikit-learn transformer or null"),
])
def test_bad_values_name_the_key(kwargs, message):
    args = {"source": WINE, "input_shape": [13], "num_classes": 3, **kwargs}
    with pytest.raises(ValueError, match=message):
        TabularDataModule(**args)


def test_a_dataframe_with_text_labels_is_a_table(tmp_path):
    """Any DataFrame: the label column by name, labels numbered in sorted order."""
    from sklearn.datasets import load_iris

    frame = load_iris(as_frame=True).frame
    frame["species"] = np.array(["setosa", "versicolor", "virginica"])[frame.pop("target")]
    frame.to_csv(tmp_path / "iris.csv", index=False)
    from trainlab.data.tabular import csv_table

    dm = TabularDataModule(partial(csv_table, str(tmp_path / "iris.csv")), [4], 3, target="species",
                           val_fraction=0.2, test_fraction=0.2)
    dm.setup()
    x, y = dm.splits["train"]
    assert x.shape == (90, 4) and torch.bincount(y).tolist() == [30, 30, 30]
    first = frame.iloc[0]  # setosa: class 0, its features unscaled (scaler=None)
    row = (x == torch.tensor(first.drop("species").to_numpy(float), dtype=torch.float32)).all(1)
    assert row.sum() <= 1 and (not row.any() or y[row].item() == 0)


@pytest.mark.parametrize(("table", "target", "message"), [
    ("frame", "label", r"data.target='label' must name the label column .*; its columns: \['a', 'b', 'y'\]"),
    ("frame", None, r"data.target=None must name the label column"),
    ("text", "y", r"feature columns \['b'\] are not numbers"),
    ("arrays", "y", r"data.target='y' names a DataFrame column, .* set data.target=null"),
])
def test_a_table_that_does_not_fit_names_the_key(table, target, message):
    import pandas as pd

    frames = {"frame": pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0], "y": [0, 1]}),
              "text": pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "z"], "y": [0, 1]}),
              "arrays": (np.zeros((2, 2)), np.array([0, 1]))}
    dm = TabularDataModule(lambda: frames[table], [2], 2, target=target)
    with pytest.raises(ConfigError, match=message):
        dm.setup()
