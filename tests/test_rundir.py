"""The run-directory contract: a new run never overwrites one, resume and requeue find theirs."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainlab import rundir
from trainlab.errors import ConfigError, RunDirError


def make_run(path: Path, checkpoint: bool = True) -> Path:
    (path / ".hydra").mkdir(parents=True)
    (path / rundir.CONFIG).write_text("seed: 3\nresume: null\n")
    (path / rundir.OVERRIDES).write_text("- seed=3\n")
    if checkpoint:
        (path / rundir.CHECKPOINTS).mkdir()
        (path / rundir.LAST).write_bytes(b"weights")
    return path


def test_a_new_run_refuses_a_dir_holding_one_and_touches_nothing(tmp_path):
    run = make_run(tmp_path / "run")
    rundir.guard_fresh(tmp_path / "empty")  # a fresh dir is fine
    with pytest.raises(RunDirError, match=r"already holds a run \(checkpoints\); nothing was overwritten"):
        rundir.guard_fresh(run)
    assert (run / rundir.LAST).read_bytes() == b"weights"
    assert issubclass(RunDirError, ConfigError)  # printed as one line by the entry points


def test_resume_needs_a_saved_config_and_a_last_checkpoint(tmp_path):
    run = make_run(tmp_path / "run")
    assert rundir.check_resumable(str(run)) == run
    cfg = rundir.resumed_config(run)
    assert cfg.seed == 3 and cfg.resume == str(run)
    with pytest.raises(RunDirError, match=r"resume='.*nope': not a trainlab run directory"):
        rundir.check_resumable(tmp_path / "nope")
    bare = make_run(tmp_path / "bare", checkpoint=False)
    with pytest.raises(RunDirError, match=r"no checkpoints/last.ckpt to continue from"):
        rundir.check_resumable(bare)


def test_a_requeued_slurm_job_continues_only_with_a_checkpoint(tmp_path, monkeypatch):
    run = make_run(tmp_path / "run")
    bare = make_run(tmp_path / "bare", checkpoint=False)
    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    assert not rundir.requeued(run)
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert rundir.requeued(run) and not rundir.requeued(bare)


def test_trials_of_a_sweep_in_natural_order_with_their_overrides(tmp_path):
    for job in ("10", "9", "2"):
        make_run(tmp_path / job, checkpoint=False)
    (tmp_path / "notes").mkdir()
    assert [d.name for d in rundir.trial_dirs(tmp_path)] == ["2", "9", "10"]
    assert rundir.saved_overrides(tmp_path / "2") == ["seed=3"]


def test_a_resume_may_train_longer_and_refuses_any_other_change(tmp_path):
    run = make_run(tmp_path / "run")
    (run / rundir.CONFIG).write_text("seed: 3\nresume: null\ntrainer: {max_epochs: 6, max_steps: -1}\n"
                                     "model: {net: {dropout: 0.2}}\n")
    cfg = rundir.resumed_config(run, [f"resume={run}", "trainer.max_epochs=25"])
    assert cfg.trainer.max_epochs == 25 and cfg.model.net.dropout == 0.2 and cfg.resume == str(run)
    assert rundir.resumed_config(run, ["trainer.max_steps=-1"]).trainer.max_steps == -1
    with pytest.raises(RunDirError, match=r"only trainer.max_epochs and trainer.max_steps may be raised. "
                                          r"Refused: model.net.dropout=0.5, trainer.max_epochs=3 "
                                          r"\(below the saved 6\), \+tag=x"):
        rundir.resumed_config(run, ["model.net.dropout=0.5", "trainer.max_epochs=3", "+tag=x"])
    with pytest.raises(RunDirError, match=r"Refused: trainer.max_steps=100 \(below the saved -1, no limit\)"):
        rundir.resumed_config(run, ["trainer.max_steps=100"])


def test_slurm_tasks_log_apart_and_a_requeue_keeps_the_first_config(monkeypatch):
    from trainlab.resolvers import config_subdir

    for name in ("SLURM_NTASKS", "SLURM_PROCID", "SLURM_RESTART_COUNT"):
        monkeypatch.delenv(name, raising=False)
    assert rundir.log_suffix() == "" and config_subdir(None) == ".hydra"
    monkeypatch.setenv("SLURM_NTASKS", "2")
    assert rundir.log_suffix() == ""  # task 0 writes train.log
    monkeypatch.setenv("SLURM_PROCID", "1")
    assert rundir.log_suffix() == ".rank1"
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert config_subdir(None) == ".hydra_resume" and config_subdir("/some/run") == ".hydra_resume"


def finished(path: Path, status: str | None, checkpoint: bool) -> Path:
    make_run(path, checkpoint=checkpoint)
    if status:
        (path / rundir.RESULTS).write_text(f'{{"status": "{status}"}}')
    return path


@pytest.mark.parametrize("status, checkpoint, retry, action", [
    (None, False, False, rundir.NEW),  # started, nothing saved yet
    ("ok", True, False, rundir.SKIP),
    ("diverged", False, False, rundir.SKIP),  # a result, not a failure
    ("pruned", True, False, rundir.SKIP),
    ("interrupted", True, False, rundir.RESUME),
    (None, True, False, rundir.RESUME),  # killed: a checkpoint, no results.json
    ("failed", False, False, rundir.SKIP),  # only when asked
    ("failed", False, True, rundir.RERUN),
    ("failed", True, True, rundir.RESUME),
])
def test_a_sweep_run_again_continues_each_trial_by_what_it_left(tmp_path, status, checkpoint, retry,
                                                                action):
    trial = finished(tmp_path / "0", status, checkpoint)
    assert rundir.earlier_trial(trial, ["seed=3"], retry_failed=retry) == action
    if action == rundir.RERUN:
        rundir.set_aside_failed(trial)
        assert not (trial / rundir.RESULTS).exists()
        assert '"failed"' in (trial / rundir.FAILED_RESULTS).read_text()


def test_a_trial_of_another_sweep_is_refused_and_left_as_it_is(tmp_path):
    trial = finished(tmp_path / "0", "ok", True)
    with pytest.raises(RunDirError, match=r"holds a trial of another sweep \(overrides \['seed=3'\], "
                                          r"this job's are \['seed=4'\]\); nothing was changed"):
        rundir.earlier_trial(trial, ["seed=4"], retry_failed=False)
    assert (trial / rundir.RESULTS).read_text() == '{"status": "ok"}'
