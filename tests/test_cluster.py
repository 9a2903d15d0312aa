"""Launchers (SLURM, submitit local, joblib, packed GPU sweeps) and the GPU-slot assignment."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from conftest import run_cli
from hydra.utils import get_class
from omegaconf import OmegaConf

from trainlab import gpu_slots
from trainlab.resolvers import gpus_per_node, tasks_per_node


def test_slurm_launcher_sizes_the_job_from_the_trainer(compose_hydra):
    cfg = compose_hydra("hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4",
                        "trainer.num_nodes=2", "hydra.launcher.partition=gpu")
    launcher = cfg.hydra.launcher
    assert get_class(launcher._target_).__name__ == "SlurmLauncher"
    assert (launcher.tasks_per_node, launcher.gpus_per_node, launcher.nodes) == (4, 4, 2)
    assert launcher.partition == "gpu" and launcher.max_num_timeout == 3
    # the pre-timeout signal goes to Lightning's SLURM auto-requeue (USR1), not submitit (USR2)
    assert launcher.additional_parameters.signal == f"USR1@{launcher.signal_delay_s}"


def test_slurm_launcher_cpu_trainer_asks_for_no_gpu(compose_hydra):
    launcher = compose_hydra("hydra/launcher=slurm", "trainer=ddp_cpu").hydra.launcher
    assert (launcher.tasks_per_node, launcher.gpus_per_node, launcher.nodes) == (2, 0, 1)


def test_slurm_launcher_refuses_devices_it_cannot_count(compose_hydra):
    cfg = compose_hydra("hydra/launcher=slurm", "trainer=ddp")  # devices: -1
    with pytest.raises(Exception, match="trainer.devices=-1 cannot size a SLURM job"):
        OmegaConf.to_container(cfg.hydra.launcher, resolve=True)


@pytest.mark.parametrize(("launcher", "cls"), [("submitit_local", "LocalLauncher"),
                                                ("joblib", "JoblibLauncher")])
def test_local_launchers_compose(compose_hydra, launcher, cls):
    node = OmegaConf.to_container(compose_hydra(f"hydra/launcher={launcher}").hydra.launcher,
                                  resolve=True)
    assert get_class(node["_target_"]).__name__ == cls
    if launcher == "joblib":
        assert node["n_jobs"] == 2 and int(node["batch_size"]) == 1  # the plugin's schema: str
    else:
        assert node["tasks_per_node"] == 1 and node["gpus_per_node"] == 1  # trainer=default


def test_gpu_pack_experiment_sets_jobs_and_devices(compose_hydra, monkeypatch):
    cfg = compose_hydra("+experiment=gpu_pack", "gpu_pack.n_gpus=2", "gpu_pack.per_gpu=3")
    assert cfg.hydra.launcher.n_jobs == 6
    assert get_class(cfg.hydra.launcher._target_).__name__ == "JoblibLauncher"
    assert cfg.trainer.devices == 1  # no CUDA here: the trials run on the CPU
    monkeypatch.setattr(gpu_slots, "_cuda_device_count", lambda: 2)
    for num, gpu in ((0, 0), (1, 1), (2, 0), (5, 1)):
        cfg = compose_hydra("+experiment=gpu_pack", "gpu_pack.n_gpus=2", job_num=num)
        assert cfg.trainer.devices == [gpu]


def test_trial_k_goes_to_gpu_k_mod_n_and_each_gpu_holds_per_gpu_at_once():
    n_gpus, per_gpu = 3, 2
    assert [gpu_slots.gpu_for_trial(k, n_gpus) for k in range(7)] == [0, 1, 2, 0, 1, 2, 0]
    first_wave = gpu_slots.pack_jobs(n_gpus, per_gpu)  # trials running at once
    assert first_wave == 6
    load = Counter(gpu_slots.gpu_for_trial(k, n_gpus) for k in range(first_wave))
    assert load == {0: per_gpu, 1: per_gpu, 2: per_gpu}
    assert gpu_slots.trial_devices(n_gpus, trial=4, visible_gpus=4) == [1]
    assert gpu_slots.trial_devices(n_gpus, trial=4, visible_gpus=0) == 1


@pytest.mark.parametrize(("call", "message"), [
    (lambda: gpu_slots.gpu_for_trial(0, 0), "gpu_pack.n_gpus must be an integer >= 1, got 0"),
    (lambda: gpu_slots.gpu_for_trial(-1, 2), "hydra.job.num must be an integer >= 0"),
    (lambda: gpu_slots.pack_jobs(2, 0), "gpu_pack.per_gpu must be an integer >= 1, got 0"),
    (lambda: gpu_slots.trial_devices(4, trial=0, visible_gpus=2),
     "gpu_pack.n_gpus=4 but this machine shows 2 GPU"),
    (lambda: tasks_per_node("auto"), "trainer.devices='auto' cannot size a SLURM job"),
])
def test_bad_values_name_the_key(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_tasks_and_gpus_per_node():
    assert tasks_per_node(4) == 4 and tasks_per_node([0, 2]) == 2 and tasks_per_node("2") == 2
    assert gpus_per_node("gpu", 4) == 4 and gpus_per_node("cpu", 4) == 0


@pytest.mark.e2e
def test_submitit_local_sweep_writes_one_result_per_trial(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli("-m", "hydra/launcher=submitit_local", "data=digits", "trainer.max_epochs=1",
                   "seed=1,2", "callbacks.progress_bar=null", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/results.json")}
    assert sorted(results) == ["0", "1"]
    assert {r["status"] for r in results.values()} == {"ok"}
    assert [results[k]["seed"] for k in ("0", "1")] == [1, 2]
    assert all(r["test/acc"] > 0.6 for r in results.values())  # chance is 0.1
    assert (sweep / "summary.csv").is_file()
    assert sorted(p.name for p in (sweep / ".submitit").iterdir() if any(p.iterdir()))  # job logs
