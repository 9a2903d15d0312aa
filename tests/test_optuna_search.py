"""hparams_search=optuna: trainlab's Optuna search. Read back from its SQLite storage: the best
trial is the best run, a pruned trial is pruned in both, a stopped search continues (its
interrupted trial resumed in its own run dir), and two workers share one study."""

from __future__ import annotations

import json
import signal
import time

import pytest
from conftest import run_cli
from omegaconf import OmegaConf
from test_reliability import launch, wait_for

from trainlab.errors import ConfigError

optuna = pytest.importorskip("optuna",
                             reason="the optuna extra is not installed (pip install -e '.[optuna]')")

SEARCH = ("hparams_search=optuna", "data=digits", "net=mlp", "callbacks.progress_bar=null")
# a pruner that gives up on any trial below 99% validation accuracy after its first epoch
STRICT_PRUNER = ("hydra.sweeper.pruner._target_=optuna.pruners.ThresholdPruner",
                 "~hydra.sweeper.pruner.n_startup_trials", "~hydra.sweeper.pruner.n_warmup_steps",
                 "+hydra.sweeper.pruner.lower=0.99")


def trials(sweep):
    study = optuna.load_study(study_name="trainlab", storage=f"sqlite:///{sweep / 'optuna.db'}")
    return study.get_trials()


def results(trial_dir) -> dict:
    return json.loads((trial_dir / "results.json").read_text())


@pytest.mark.e2e
def test_the_search_tells_optuna_each_runs_result_and_names_the_best(tmp_path):
    sweep = tmp_path / "search"
    proc = run_cli(*SEARCH, "trainer.max_epochs=2", "hydra.sweeper.n_trials=3", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    stored = trials(sweep)
    assert [t.state.name for t in stored] == ["COMPLETE"] * 3
    for t in stored:  # each trial is an ordinary run in <sweep>/<number>/, with the trial's values
        run = results(sweep / str(t.number))
        assert t.value == pytest.approx(run["val/acc"])
        assert t.intermediate_values[1] == pytest.approx(run["val/acc"])  # the pruning reports
        overrides = OmegaConf.load(sweep / str(t.number) / ".hydra" / "overrides.yaml")
        assert f"model.net.dropout={t.params['model.net.dropout']!r}" in overrides
    best = OmegaConf.load(sweep / "optimization_results.yaml")
    assert best.best_value == pytest.approx(max(t.value for t in stored))
    assert set(best.best_params) == {"model.optimizer.lr", "model.net.dropout",
                                     "model.optimizer.weight_decay"}
    assert "3 trials: 3 ok" in (sweep / "summary.md").read_text()


@pytest.mark.e2e
def test_a_pruned_trial_stops_early_and_is_pruned_in_the_storage(tmp_path):
    sweep = tmp_path / "search"
    proc = run_cli(*SEARCH, *STRICT_PRUNER, "trainer.max_epochs=5", "hydra.sweeper.n_trials=2",
                   f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    for t in trials(sweep):
        run = results(sweep / str(t.number))
        assert run["val/acc"] < 0.99  # the 1,797 digits after one epoch
        assert t.state.name == "PRUNED" and run["status"] == "pruned"
        assert run["epoch"] == 1 and list(t.intermediate_values) == [0]  # stopped after epoch 1


@pytest.mark.e2e
def test_a_stopped_search_continues_and_resumes_its_interrupted_trial(tmp_path):
    sweep = tmp_path / "search"
    args = (*SEARCH, "trainer.max_epochs=8", "data.batch_size=16", "hydra.sweeper.heartbeat_interval=1",
            "hydra.sweeper.grace_period=2", f"hydra.sweep.dir={sweep}")
    with launch(*args, "hydra.sweeper.n_trials=2") as proc:
        wait_for(sweep / "1" / "checkpoints" / "last.ckpt", proc)
        proc.send_signal(signal.SIGTERM)  # the worker stops inside trial 1
        assert proc.wait(timeout=120) == 143
    assert [t.state.name for t in trials(sweep)] == ["COMPLETE", "RUNNING"]
    first = (sweep / "0" / "results.json").read_bytes()
    time.sleep(3)  # past the grace period: trial 1 has no heartbeat
    again = run_cli(*args, "hydra.sweeper.n_trials=3")
    assert again.returncode == 0, again.stderr[-3000:]
    stored = trials(sweep)
    assert [t.state.name for t in stored] == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert stored[2].params == stored[1].params  # trial 1 run again, with its values ...
    assert f"Resuming {sweep / '1'}" in again.stdout  # ... from its checkpoint, in its run dir
    assert results(sweep / "1")["status"] == "ok" and results(sweep / "1")["epoch"] == 8
    assert stored[2].value == pytest.approx(results(sweep / "1")["val/acc"])
    assert (sweep / "0" / "results.json").read_bytes() == first
    assert sorted(p.name for p in sweep.iterdir() if p.name.isdigit()) == ["0", "1", "3"]


@pytest.mark.e2e
def test_two_workers_share_one_study(tmp_path):
    sweep = tmp_path / "search"
    args = (*SEARCH, "trainer.max_epochs=2", "hydra.sweeper.n_trials=4", f"hydra.sweep.dir={sweep}")
    run_cli(*args, "hydra.sweeper.n_trials=1")  # creates the study, so the workers only load it
    with launch(*args) as a, launch(*args) as b:
        assert a.wait(timeout=300) == 0 and b.wait(timeout=300) == 0
    stored = trials(sweep)
    # n_trials is checked before each ask: two workers asking at once may add one trial more
    assert 4 <= len(stored) <= 5 and all(t.state.name in ("COMPLETE", "PRUNED") for t in stored)
    for t in stored:  # every trial ran once, in its own dir, as the storage says
        want = {"COMPLETE": "ok", "PRUNED": "pruned"}[t.state.name]
        assert results(sweep / str(t.number))["status"] == want


@pytest.mark.parametrize("key, value, message", [
    ("direction", "up", "hydra.sweeper.direction='up' is not allowed"),
    ("n_trials", 0, "hydra.sweeper.n_trials=0 is not allowed: an integer >= 1"),
    ("grace_period", 30, "hydra.sweeper.grace_period=30 must exceed heartbeat_interval=60"),
])
def test_bad_search_settings_are_refused_by_name(key, value, message):
    from trainlab.optuna_search import OptunaSearchBase

    kwargs = dict(params={}, n_trials=2, n_jobs=1, direction="maximize", study_name="s", storage=None,
                  sampler=None, pruner=None, heartbeat_interval=60, grace_period=180)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        OptunaSearchBase(**{**kwargs, key: value})


def test_the_pruning_callback_outside_a_search_names_its_key(monkeypatch):
    from trainlab.callbacks import OptunaPruning

    monkeypatch.delenv("TRAINLAB_OPTUNA_TRIAL", raising=False)
    with pytest.raises(ConfigError, match="callbacks.optuna_pruning=null"):
        OptunaPruning("val/acc")
