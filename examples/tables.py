"""A tabular dataset from a DataFrame: scikit-learn's iris table, loaded as pandas, with the
species as text labels.

Recipe 3 of docs/EXTENDING.md. Its YAML is ``examples/conf/data/iris.yaml``. Any function that
returns a DataFrame (or a ``(features, labels)`` pair of arrays) is a table source.
"""

from __future__ import annotations

import pandas as pd
from sklearn.datasets import load_iris


def iris_frame() -> pd.DataFrame:
    """Four numeric feature columns and a ``species`` column of text labels (150 rows)."""
    bunch = load_iris(as_frame=True)
    frame = bunch.frame.drop(columns="target")
    frame["species"] = [bunch.target_names[k] for k in bunch.target]
    return frame
