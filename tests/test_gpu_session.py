"""scripts/gpu_session.py: the one device call that records issue 19's GPU figures. Without a GPU
its ``--smoke`` mode runs every step tiny on the CPU, so the commands, their overrides and the
figures read back from their outputs are checked here."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import ROOT, load_script

SCRIPT = ROOT / "scripts" / "gpu_session.py"


def test_needs_out_and_two_trials_per_gpu_to_compare() -> None:
    module = load_script("gpu_session")
    with pytest.raises(SystemExit):
        module.parse_args([])
    with pytest.raises(SystemExit):
        module.parse_args(["--out", "x", "--per-gpu", "1"])
    args = module.parse_args(["--out", "x"])
    assert args.steps == ["tests", "bench", "recipe", "compile", "pack"] and args.per_gpu == 4


@pytest.mark.e2e
def test_smoke_runs_every_step_but_compile_and_records_their_figures(tmp_path) -> None:
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--out", str(out), "--seeds", "0",
                           "--pack-trials", "2", "--per-gpu", "2", "--steps", "tests", "bench", "recipe",
                           "pack"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    steps = summary["steps"]
    log = (out / "session.log").read_text()
    assert {name: step["status"] for name, step in steps.items()} == \
        {"tests": "ok", "bench": "ok", "recipe": "ok", "pack": "ok"}, log[-3000:]
    assert summary["machine"]["cuda"] is False  # the smoke ran on the CPU
    assert "skipped" in steps["tests"]["result"]  # pytest's last line: no CUDA, the gpu tests skip
    assert "trainer=cpu" in log and "trainer=gpu" not in log
    # the figures are read back from what each command wrote
    assert 0 < steps["bench"]["ratios"]["trainlab/lightning"] < 10
    assert set(steps["bench"]["best_ratios"]) == set(steps["bench"]["ratios"])
    (run,) = steps["recipe"]["runs"]
    results = json.loads((out / "runs" / "fmnist_94_seed0" / "results.json").read_text())
    assert run["test/acc"] == results["test/acc"] and run["wall_s"] == results["wall_s"]
    assert steps["recipe"]["mean_acc"] == results["test/acc"]
    packed = steps["pack"]["per_gpu"]
    assert packed["2"]["status"] == packed["1"]["status"] == "ok"
    for per_gpu in ("1", "2"):  # each sweep trained both trials
        trials = sorted((out / "runs" / f"pack_per_gpu{per_gpu}").glob("*/results.json"))
        assert len(trials) == 2
        assert all(json.loads(t.read_text())["status"] == "ok" for t in trials)
    assert steps["pack"]["packed_over_one_at_a_time"] == pytest.approx(
        packed["1"]["sweep_s"] / packed["2"]["sweep_s"], abs=0.01)
