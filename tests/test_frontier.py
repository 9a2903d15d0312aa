"""scripts/frontier.py: the accuracy-vs-time table and picture of the recipes, and ``--run``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT, load_script

SCRIPT = ROOT / "scripts" / "frontier.py"


def write_run(runs, recipe, seed, acc, wall, status="ok"):
    run = runs / f"{recipe}_seed{seed}"
    run.mkdir(parents=True)
    (run / "results.json").write_text(json.dumps({"test/acc": acc, "wall_s": wall, "status": status}))


def test_table_gives_each_recipe_its_mean_and_sample_std_in_recipe_order(tmp_path):
    module = load_script("frontier")
    write_run(tmp_path, "fmnist_fast", 0, 0.93, 120.0)
    write_run(tmp_path, "fmnist_fast", 1, 0.94, 130.0)
    write_run(tmp_path, "default", 0, 0.92, 190.0)
    write_run(tmp_path, "default", 1, 0.10, 50.0, status="diverged")  # not a result
    (tmp_path / "fmnist_fast_seed1" / module.PEAK_FILE).write_text(
        json.dumps({"max_rss_gb": 1.25, "cpu_s": 240.0, "alive_s": 150.0}))
    found = module.load(tmp_path)
    assert list(found) == ["default", "fmnist_fast"]
    rows = module.table(found).splitlines()
    assert rows[2] == "| default | 1 | 92.00 | 190.0 | - | - | 92.00 / 190 |"
    assert rows[3] == ("| fmnist_fast | 2 | 93.50 ± 0.71 | 125.0 ± 7.1 | 1.25 | 1.60 "
                       "| 93.00 / 120, 94.00 / 130 |")
    module.plot(found, tmp_path / "f.png")
    assert (tmp_path / "f.png").stat().st_size > 1000


def test_other_batches_are_named_by_their_dir_beside_the_main_ones(tmp_path):
    module = load_script("frontier")
    main_runs, later = tmp_path / "frontier", tmp_path / "later_day"
    write_run(main_runs, "fmnist_94", 0, 0.94, 160.0)
    write_run(later, "fmnist_94", 0, 0.94, 200.0)
    write_run(later, "fmnist_94", 1, 0.95, 210.0)
    out = tmp_path / "f.png"
    assert module.main(["--runs", str(main_runs), "--also", str(later), "--out", str(out)]) == 0
    assert out.stat().st_size > 1000
    empty = tmp_path / "empty"
    empty.mkdir()
    assert module.main(["--runs", str(main_runs), "--also", str(empty), "--out", str(out)]) == 1
    found = module.load(later, later.name)
    assert list(found) == ["fmnist_94 (later_day)"] and len(found["fmnist_94 (later_day)"]) == 2
    rows = module.table({**module.load(main_runs), **found}).splitlines()
    assert rows[2].startswith("| fmnist_94 | 1 | 94.00 | 160.0 |")
    assert rows[3].startswith("| fmnist_94 (later_day) | 2 | 94.50 ± 0.71 | 205.0 ± 7.1 |")


@pytest.mark.e2e
def test_run_trains_the_missing_runs_keeps_the_others_and_measures_their_memory(tmp_path):
    command = [sys.executable, str(SCRIPT), "--runs", str(tmp_path), "--recipes", "digits_quick",
               "--seeds", "1", "--run", "--out", str(tmp_path / "f.png")]
    first = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "running train.py +experiment=digits_quick seed=1" in first.stdout
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and f"kept {tmp_path / 'digits_quick_seed1'}" in again.stdout
    row = next(line for line in again.stdout.splitlines() if line.startswith("| digits_quick"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    results = json.loads((tmp_path / "digits_quick_seed1" / "results.json").read_text())
    assert cells[1] == "1" and cells[2] == f"{100 * results['test/acc']:.2f}" and results["seed"] == 1
    assert 0.2 < float(cells[4]) < 8  # a real peak RSS in GB, read from the child's own usage
    assert 0.1 < float(cells[5]) <= os.cpu_count() + 0.05  # CPU seconds per second alive
    assert (tmp_path / "f.png").stat().st_size > 1000
