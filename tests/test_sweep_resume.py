"""A sweep run again into its own dir continues it: trials with a result are skipped, the
interrupted one resumes from its checkpoint, failed ones run again only when asked, and a
different sweep is refused before anything in the dir changes."""

from __future__ import annotations

import json
import signal

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli
from test_reliability import launch, metrics_of, wait_for

COMMON = ("data=digits", "net=mlp", "callbacks.progress_bar=null", "data.batch_size=16",
          "trainer.max_epochs=6")


def results(trial) -> dict:
    return json.loads((trial / "results.json").read_text())


@pytest.mark.e2e
def test_a_stopped_sweep_run_again_skips_done_trials_and_resumes_the_interrupted_one(tmp_path):
    sweep = tmp_path / "sweep"
    args = ("-m", *COMMON, "seed=1,2", f"hydra.sweep.dir={sweep}")
    with launch(*args) as proc:  # SIGTERM inside trial 1: the sweep stops there
        wait_for(sweep / "1" / "checkpoints" / "last.ckpt", proc)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 143
    first = (sweep / "0" / "results.json").read_bytes()
    assert results(sweep / "1")["status"] == "interrupted"
    again = run_cli(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (sweep / "0" / "results.json").read_bytes() == first  # skipped, untouched
    assert "already has a result (status ok): skipped" in again.stdout
    assert f"Resuming {sweep / '1'}" in again.stdout
    resumed = results(sweep / "1")
    assert resumed["status"] == "ok" and resumed["epoch"] == 6
    # the resumed trial ends as the same trial run straight through
    straight = run_cli(*COMMON, "seed=2", f"hydra.run.dir={tmp_path / 'straight'}")
    assert straight.returncode == 0, straight.stderr[-3000:]
    want = results(tmp_path / "straight")
    assert metrics_of(resumed) == {**metrics_of(want), "tag": resumed["tag"]}
    assert (sweep / "multirun.1.yaml").is_file()  # the first invocation's record, kept
    assert "| seed=1,2" not in (sweep / "summary.md").read_text()  # a report of both trials
    assert "2 trials: 2 ok" in (sweep / "summary.md").read_text()
    # another sweep into this dir is refused, and nothing of it changes
    other = run_cli("-m", *COMMON[:-1], "trainer.max_epochs=2", "seed=1,2", f"hydra.sweep.dir={sweep}")
    assert other.returncode != 0
    assert "holds another sweep (its overrides ['trainer.max_epochs=6'], this one's " \
        "['trainer.max_epochs=2']); nothing was changed" in other.stderr
    assert (sweep / "0" / "results.json").read_bytes() == first


@pytest.mark.e2e
def test_failed_trials_run_again_only_when_asked(tmp_path):
    table = tmp_path / "table.csv"  # missing at first: the trial fails before training
    sweep = tmp_path / "sweep"
    args = ("-m", "data=csv", "net=mlp", f"data.source.path={table}", "data.target=label",
            "data.input_shape=[4]", "data.num_classes=2", "trainer.max_epochs=2",
            "callbacks.progress_bar=null", "seed=1", f"hydra.sweep.dir={sweep}")
    assert run_cli(*args).returncode == 0  # a failed trial is a result of the sweep
    assert results(sweep / "0")["status"] == "failed"
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4))
    pd.DataFrame({**{f"f{i}": x[:, i] for i in range(4)}, "label": (x[:, 0] > 0).astype(int)}
                 ).to_csv(table, index=False)
    assert run_cli(*args).returncode == 0
    assert results(sweep / "0")["status"] == "failed"  # not asked: kept as it was
    retried = run_cli(*args, "retry_failed=true")
    assert retried.returncode == 0, retried.stderr[-3000:]
    assert results(sweep / "0")["status"] == "ok"
    assert json.loads((sweep / "0" / "results.failed.json").read_text())["status"] == "failed"
