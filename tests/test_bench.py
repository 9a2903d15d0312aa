"""scripts/bench.py: how the rounds of each variant become the ratios BENCHMARKS.md records."""

from __future__ import annotations

import pytest
from conftest import load_script


def test_summarize_gives_median_per_round_ratio_and_ratio_of_best_rounds() -> None:
    rates = {"trainlab": [90.0, 100.0, 50.0], "lightning": [100.0, 100.0, 100.0],
             "lightning_bar": [80.0, 125.0, 100.0]}
    report = load_script("bench").summarize(rates)
    assert report["median"] == {"trainlab": 90.0, "lightning": 100.0, "lightning_bar": 100.0}
    # per round 0.9, 1.0, 0.5 -> median 0.9; best rounds 100 / 100
    assert report["ratios"]["trainlab/lightning"] == pytest.approx(0.9)
    assert report["best_ratios"]["trainlab/lightning"] == pytest.approx(1.0)
    # per round 1.125, 0.8, 0.5 -> median 0.8; best rounds 100 / 125
    assert report["ratios"]["trainlab/lightning_bar"] == pytest.approx(0.8)
    assert report["best_ratios"]["trainlab/lightning_bar"] == pytest.approx(0.8)
    assert set(report["ratios"]) == set(report["best_ratios"]) == set(report["ratio_quartiles"])
