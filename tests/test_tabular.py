"""Scalers are fitted on the training split only, and MinMax suffers from outliers (the notes)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.preprocessing import MinMaxScaler, RobustScaler, StandardScaler

from trainlab.data import TabularDataModule


def module(scaler, **kwargs) -> TabularDataModule:
    dm = TabularDataModule("wine", [13], 3, scaler=scaler, **kwargs)
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
    ({"dataset": "titanic"}, "data.dataset must be one of"),
    ({"outlier_fraction": 1.5}, r"data.outlier_fraction must be in \[0, 1\)"),
    ({"scaler": "standard"}, "data.scaler must be a scikit-learn transformer or null"),
])
def test_bad_values_name_the_key(kwargs, message):
    args = {"dataset": "wine", "input_shape": [13], "num_classes": 3, **kwargs}
    with pytest.raises(ValueError, match=message):
        TabularDataModule(**args)
