"""A failed run fails: a loss that turns non-finite or a run of zero steps exits non-zero with one
line saying what happened and its likely cause; in a sweep it is recorded, the sweep goes on and
ends by counting it. Signals at each phase leave a dir that its printed command completes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import ROOT, run_cli

from trainlab import rundir
from trainlab.pipeline import build, fit_and_test, run_failure

DIVERGING = ("data=digits", "optimizer=sgd", "model.optimizer.lr=1e6", "model.net.batchnorm=false",
             "trainer.max_epochs=2", "callbacks.progress_bar=null")


@pytest.mark.e2e
def test_a_diverged_run_exits_non_zero_naming_the_step_and_the_learning_rate(tmp_path):
    run = tmp_path / "run"
    proc = run_cli(*DIVERGING, f"hydra.run.dir={run}")
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr
    assert "the training loss turned non-finite at step" in errors[0]
    assert "at learning rate 1e+06: lower model.optimizer.lr" in errors[0]
    results = json.loads((run / rundir.RESULTS).read_text())
    assert results["status"] == "diverged" and results["error"] in errors[0]


def test_non_finite_inputs_are_named_as_the_cause(cfg_factory):
    cfg = cfg_factory("data=wine", "net=mlp", "trainer.max_epochs=1", "callbacks.progress_bar=null")
    datamodule, model, trainer = build(cfg)
    datamodule.setup("fit")
    x, y = datamodule.splits["train"]
    x[3, 2] = float("nan")
    datamodule.setup = lambda stage=None: None  # keep the poisoned split
    results = fit_and_test(cfg, datamodule, model, trainer, None)
    assert results["status"] == "diverged"
    assert re.fullmatch(r"the training inputs hold NaN or inf at step (\d+) \(epoch 0, batch \1\): "
                        r"check the training split's data", model.divergence)
    assert run_failure(results, model.divergence) == model.divergence


@pytest.mark.parametrize("results, failure", [
    ({"status": "ok", "global_step": 0}, "the run took no optimizer step"),
    ({"status": "ok", "global_step": 12}, None),
    ({"status": "interrupted", "global_step": 0}, None),  # a stop, saved: resume continues it
    ({"status": "diverged", "global_step": 3}, "the training loss turned non-finite"),
])
def test_what_counts_as_a_failed_run(results, failure):
    found = run_failure(results, None)
    assert (found is None) if failure is None else found.startswith(failure)


@pytest.mark.e2e
def test_a_sweep_records_a_diverged_trial_goes_on_and_counts_it(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli("-m", *DIVERGING[:-2], "model.optimizer.lr=0.05,1e6", "trainer.max_epochs=1",
                   "callbacks.progress_bar=null", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    statuses = [json.loads((sweep / job / rundir.RESULTS).read_text())["status"] for job in ("0", "1")]
    assert statuses == ["ok", "diverged"]
    assert "2 trials: 1 ok, 1 diverged" in proc.stdout + proc.stderr


def launch(run: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), "data=digits", "net=mlp",
                             "callbacks.progress_bar=null", f"hydra.run.dir={run}", *args],
                            cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.e2e
@pytest.mark.parametrize("phase, marker", [
    ("composing", None),  # as soon as it starts: before Hydra saved anything
    ("loading the data", ".hydra/config.yaml"),  # its config saved, nothing trained yet
])
def test_a_run_stopped_before_training_leaves_a_dir_a_new_run_may_take(tmp_path, phase, marker):
    run = tmp_path / "run"
    proc = launch(run, "trainer.max_epochs=1")
    deadline = time.time() + 60
    while marker and not (run / marker).exists() and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert not (run / rundir.LAST).exists() and not (run / rundir.RESULTS).exists()
    again = run_cli("data=digits", "net=mlp", "trainer.max_epochs=1", "callbacks.progress_bar=null",
                    f"hydra.run.dir={run}")
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads((run / rundir.RESULTS).read_text())["status"] == "ok"
    last = torch.load(run / rundir.LAST, weights_only=True)
    assert last["epoch"] == 0 and last["global_step"] == 17
