"""DDP under Hydra on the CPU (2 gloo processes): one run dir per run, metrics over all ranks."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch
from conftest import run_cli
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from trainlab import ddp
from trainlab.evaluation import load_weights

RUN_FILES = {".hydra", ".owner", "checkpoints", "csv", "results.json", "train.log", "curves.png",
             "confusion.png"}
DIGITS_TRAIN = 1797 - 450 - 200  # digits minus its 25% test split minus val_size
WORLD = 2


def full_test_accuracy(run: Path, ckpt: Path) -> float:
    """Accuracy of ``ckpt`` on the whole test split, in one process, from the run's config."""
    cfg = OmegaConf.load(run / ".hydra" / "config.yaml")
    with open_dict(cfg):
        cfg.model.init = None
    datamodule, model = instantiate(cfg.data), instantiate(cfg.model)
    datamodule.setup("test")
    load_weights(model, datamodule, ckpt)
    x, y = datamodule.splits["test"]
    with torch.no_grad():
        pred = model.eval()(datamodule.to_model_input(x)).argmax(dim=1)
    return (pred == y).double().mean().item()


def steps_per_epoch(batch_size: int = 64) -> int:
    return DIGITS_TRAIN // WORLD // batch_size  # each rank: its equal shard, whole batches


@pytest.mark.e2e
def test_ddp_run_writes_one_run_dir_with_metrics_over_both_ranks(tmp_path):
    proc = run_cli("trainer=ddp_cpu", "data=digits", "trainer.max_epochs=2",
                   "callbacks.progress_bar=null", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the rank-1 process made no directory of its own, here or anywhere under outputs/
    assert [p.name for p in tmp_path.iterdir()] == ["outputs"]
    assert [p.name for p in (tmp_path / "outputs").iterdir()] == ["runs"]
    runs = list((tmp_path / "outputs" / "runs").iterdir())
    assert len(runs) == 1, runs
    run = runs[0]
    assert {p.name for p in run.iterdir()} == RUN_FILES
    assert sorted(p.name for p in (run / ".hydra").iterdir()) == [
        "config.yaml", "hydra.yaml", "overrides.yaml", "provenance.json"]
    results = json.loads((run / "results.json").read_text())
    assert results["status"] == "ok" and results["epoch"] == 2
    assert results["global_step"] == 2 * steps_per_epoch()
    # train/acc is correct/n summed over both ranks' shards: n = 2 ranks x 8 batches x 64
    n = WORLD * steps_per_epoch() * 64
    assert results["train/acc"] * n == pytest.approx(round(results["train/acc"] * n), abs=1e-6)
    # test/acc was synced over both ranks' halves of the test split: it equals the accuracy of
    # the tested checkpoint on the whole split in one process
    best = run / "checkpoints" / results["tested_checkpoint"]
    assert results["test/acc"] == pytest.approx(full_test_accuracy(run, best), abs=1e-6)
    assert results["test/acc"] > 0.8
    assert proc.stdout.count("total params") == 1  # rank 1 printed no model summary


@pytest.mark.e2e
def test_ddp_sweep_gives_each_trial_its_own_ranks_and_one_dir(tmp_path):
    proc = run_cli("-m", "trainer=ddp_cpu", "data=digits", "trainer.max_epochs=1", "seed=1,2",
                   "callbacks.progress_bar=null", cwd=tmp_path, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (tmp_path / "outputs" / "runs").exists()
    sweeps = list((tmp_path / "outputs" / "multirun").iterdir())
    assert len(sweeps) == 1, sweeps  # no sweep started by a child process
    sweep = sweeps[0]
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]
    for job, seed in (("0", 1), ("1", 2)):
        assert {p.name for p in (sweep / job).iterdir()} == RUN_FILES
        results = json.loads((sweep / job / "results.json").read_text())
        assert results["status"] == "ok" and results["seed"] == seed
        assert results["global_step"] == steps_per_epoch()
        assert results["test/acc"] > 0.4  # one epoch of 8 steps; chance is 0.1
    assert proc.stdout.count("GLOBAL_RANK: 1, MEMBER: 2/2") == 2  # fresh ranks for each trial
    assert (sweep / "summary.csv").is_file()


def test_child_command_is_a_single_run_of_the_job():
    hydra_cfg = OmegaConf.create({
        "runtime": {"output_dir": "/r/multirun/3", "config_sources": [
            {"path": "hydra.conf", "schema": "pkg", "provider": "hydra"},
            {"path": "/my/conf", "schema": "file", "provider": "command-line"}]},
        "job": {"config_name": "train", "chdir": False},
        "overrides": {"task": ["trainer=ddp_cpu", "seed=2", "tag='a b'"]},
    })
    command, cwd = ddp.child_command(1, "trainlab.train", hydra_cfg, "/launch/dir")
    assert command == [sys.executable, "-m", "trainlab.train", "--config-dir", "/my/conf",
                       "--config-name", "train", "trainer=ddp_cpu", "seed=2", "tag='a b'",
                       'hydra.run.dir="/r/multirun/3"', "hydra.output_subdir=null",
                       "hydra/job_logging=stdout"]
    assert cwd == "/launch/dir" and "-m" not in command[3:]


@pytest.mark.parametrize(("env", "rank"), [({}, 0), ({"LOCAL_RANK": "1"}, 1),
                                           ({"SLURM_PROCID": "3"}, 3),
                                           ({"RANK": "2", "LOCAL_RANK": "0"}, 2)])
def test_launch_rank_reads_the_launchers_environment(env, rank):
    assert ddp.launch_rank(env) == rank


def test_release_job_without_a_launch_changes_nothing(monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "0")
    ddp.release_job()
    assert ddp.launch_rank() == 0 and "LOCAL_RANK" in os.environ


def test_strategy_needs_an_entry_module():
    with pytest.raises(ValueError, match="trainer.strategy.entry must name a module"):
        ddp.HydraDDPStrategy(entry="")
