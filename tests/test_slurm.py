"""The cluster path on a real SLURM: `make test-cluster` starts a one-node SLURM on this machine
(scripts/slurm_local.sh) and runs these; without a reachable SLURM (sinfo) they are skipped.

Each test submits real jobs through `hydra/launcher=slurm` (submitit -> sbatch -> srun) or srun,
on scikit-learn's digits on the CPU, and asserts what SLURM and the run dirs say afterwards.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from trainlab import rundir

pytestmark = pytest.mark.slurm

ROOT = Path(__file__).resolve().parents[1]
# short trainings on the digits: seconds per epoch on a 2-CPU node
DIGITS = ("data=digits", "callbacks.progress_bar=null")
JOB_TIMEOUT_S = 240
# sacct's own stderr when the cluster has no accounting (submitit polls it; see SacctWarningOnce)
NO_ACCOUNTING = "Slurm accounting storage is disabled"


def slurm(*args: str) -> str:
    """Output of a SLURM client command (raises if it fails)."""
    return subprocess.run(list(args), capture_output=True, text=True, check=True, timeout=30).stdout


@pytest.fixture(scope="module", autouse=True)
def reachable_slurm() -> dict[str, int]:
    """Skip unless sinfo answers; the node's CPUs and memory (MB) as SLURM counts them."""
    if shutil.which("sinfo") is None:
        pytest.skip("no SLURM client (sinfo): `make test-cluster` installs and starts a one-node SLURM")
    try:
        line = slurm("sinfo", "-h", "-N", "-o", "%c %m %T").split()
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
        pytest.skip(f"sinfo reaches no SLURM controller ({err}): run `make test-cluster`, or "
                    "scripts/slurm_local.sh up and export the SLURM_CONF it prints")
    return {"cpus": int(line[0]), "mem_mb": int(line[1])}


def readable(text: str) -> str:
    """Output for an assertion message: the last lines, without sacct's per-poll complaint."""
    return "\n".join(line for line in text.splitlines() if NO_ACCOUNTING not in line)[-4000:]


def train(*overrides: str, timeout: int = JOB_TIMEOUT_S) -> subprocess.CompletedProcess:
    """`python train.py OVERRIDES` in the repository, output captured."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *overrides], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def submitted_id(sweep: Path) -> str:
    """The SLURM id of the sweep's one submission (a job, or an array ``<id>_<task>``), from
    submitit's folders ``<id>`` and ``<id>_<task>``."""
    [job_id] = [p.name for p in (sweep / ".submitit").iterdir() if p.is_dir() and "_" not in p.name]
    return job_id


def job_record(job_id: str, timeout_s: float = 60) -> dict[str, str]:
    """``scontrol show job`` fields once the job has ended (the launcher returns when rank 0 has
    written its result; the other tasks may still be exiting). SLURM keeps the record
    MinJobAge seconds after the end."""
    deadline = time.monotonic() + timeout_s
    while True:
        text = slurm("scontrol", "show", "job", "--oneliner", job_id)
        record = dict(re.findall(r"(\w+)=(\S*)", text.splitlines()[0]))
        if record["JobState"] not in ("PENDING", "RUNNING", "COMPLETING") \
                or time.monotonic() > deadline:
            return record
        time.sleep(0.5)


def test_sweep_of_two_seeds_with_the_default_trainer(tmp_path):
    """The docs' sweep as written, with `trainer.accelerator: auto`: no GPU is asked for, the
    CPUs per task fit the node, both trials finish and the report is written."""
    sweep = tmp_path / "sweep"
    start = time.monotonic()
    proc = train("-m", "hydra/launcher=slurm", *DIGITS, "seed=1,2", "trainer.max_epochs=2",
                 f"hydra.sweep.dir={sweep}")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, readable(out)
    results = [rundir.read_results(d) for d in rundir.trial_dirs(sweep)]
    assert [(r["seed"], r["status"]) for r in results] == [(1, "ok"), (2, "ok")]
    assert all(r["test/acc"] > 0.6 for r in results)  # chance is 0.1
    assert "2 trials: 2 ok" in (sweep / "summary.md").read_text()
    array = submitted_id(sweep)
    for task in ("0", "1"):
        job = job_record(f"{array}_{task}")
        assert job["JobState"] == "COMPLETED"
        assert "gpu" not in job["TRES"]  # accelerator=auto asked for none
    # the sacct complaint is shown for one poll at most, not once per poll
    assert len(set(re.findall(r"Call #(\d+) - Bypassing sacct error", out))) <= 1
    print(f"sweep of 2 in {time.monotonic() - start:.0f} s")


def test_ddp_over_two_slurm_tasks_writes_one_run(tmp_path, reachable_slurm):
    """trainer=ddp_cpu: srun starts 2 tasks, Lightning's SLURM environment joins them into one
    group (no process re-launches the script), rank 0 writes the one run dir."""
    sweep = tmp_path / "sweep"
    proc = train("-m", "hydra/launcher=slurm", "trainer=ddp_cpu", *DIGITS, "seed=1",
                 "trainer.max_epochs=2", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, readable(proc.stdout + proc.stderr)
    assert [d.name for d in rundir.trial_dirs(sweep)] == ["0"]
    result = rundir.read_results(sweep / "0")
    assert result["status"] == "ok" and result["epoch"] == 2 and result["test/acc"] > 0.5
    job_id = submitted_id(sweep)
    job = job_record(job_id)
    assert job["JobState"] == "COMPLETED" and job["NumTasks"] == "2"
    # two tasks x cpus_per_task fit the node: the default asks at most cpus / tasks each
    assert int(job["NumCPUs"]) <= reachable_slurm["cpus"]
    logs = "".join(p.read_text() for p in (sweep / ".submitit" / job_id).glob("*_log.out"))
    members = sorted(set(re.findall(r"GLOBAL_RANK: (\d), MEMBER: (\d)/2", logs)))
    assert members == [("0", "1"), ("1", "2")], logs[-3000:]


def test_a_request_larger_than_the_node_fails_within_a_minute(tmp_path, reachable_slurm):
    """SLURM would accept cpus_per_task above the node and leave it pending forever: the
    preflight check stops the sweep first, naming the keys and the node's limits."""
    sweep = tmp_path / "sweep"
    start = time.monotonic()
    proc = train("-m", "hydra/launcher=slurm", "trainer=cpu", *DIGITS,
                 "hydra.launcher.cpus_per_task=64", "hydra.launcher.mem_gb=4096",
                 f"hydra.sweep.dir={sweep}", timeout=60)
    assert time.monotonic() - start < 60
    assert proc.returncode != 0
    cpus, mem_mb = reachable_slurm["cpus"], reachable_slurm["mem_mb"]
    assert "hydra.launcher.cpus_per_task=64" in proc.stderr, readable(proc.stderr)
    assert f"no node has more than {cpus}" in proc.stderr
    assert "hydra.launcher.mem_gb=4096" in proc.stderr
    assert f"no node offers more than {mem_mb} MB" in proc.stderr
    assert not sweep.exists()  # nothing was submitted


def test_trainlab_cli_under_srun(tmp_path):
    """LightningCLI as one SLURM task: `srun trainlab-cli fit` trains and writes its metrics."""
    cli = Path(sys.executable).with_name("trainlab-cli")
    proc = subprocess.run(["srun", "--ntasks=1", "--cpus-per-task=1", str(cli), "fit",
                           "--config", "cli/digits.yaml", "--trainer.max_epochs=1",
                           f"--trainer.default_root_dir={tmp_path}",
                           "--trainer.enable_progress_bar=false"],
                          cwd=ROOT, capture_output=True, text=True, timeout=JOB_TIMEOUT_S)
    assert proc.returncode == 0, readable(proc.stdout + proc.stderr)
    rows = rundir.read_metrics(tmp_path / "version_0")
    val_acc = [float(r["val/acc"]) for r in rows if r.get("val/acc")]
    assert len(val_acc) == 1 and val_acc[0] > 0.3  # one epoch; chance is 0.1
    assert (tmp_path / "version_0" / "checkpoints" / "last.ckpt").is_file()


# --- the pre-timeout signal: USR1, Lightning's auto-requeue, the requeued job resumes --------

REQUEUE_EPOCHS = 4


@pytest.fixture(scope="module")
def requeued_sweep(tmp_path_factory) -> dict:
    """Two identical trials (seed=7,7) side by side; trial 0 gets SLURM's pre-timeout signal
    (USR1, as `--signal=USR1@N` sends it before the time limit) once its first epoch is saved.
    Lightning's SLURM auto-requeue checkpoints and requeues it; trial 1 runs uninterrupted."""
    sweep = tmp_path_factory.mktemp("requeue") / "sweep"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"}
    command = [sys.executable, str(ROOT / "train.py"), "-m", "hydra/launcher=slurm",
               "trainer=cpu", *DIGITS, "seed=7,7", f"trainer.max_epochs={REQUEUE_EPOCHS}",
               "data.batch_size=16",  # 70 steps an epoch: the signal lands inside one
               "hydra.launcher.cpus_per_task=1", f"hydra.sweep.dir={sweep}"]
    log = (sweep.parent / "sweep.log").open("w")
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + JOB_TIMEOUT_S
        first_save = sweep / "0" / rundir.LAST
        while not first_save.is_file():
            assert proc.poll() is None and time.monotonic() < deadline, "trial 0 never saved"
            time.sleep(0.1)
        array = submitted_id(sweep)
        signalled = time.monotonic()
        slurm("scancel", "--signal=USR1", f"{array}_0")
        proc.wait(timeout=JOB_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    output = (sweep.parent / "sweep.log").read_text()
    assert proc.returncode == 0, readable(output)
    return {"sweep": sweep, "array": array, "output": output,
            "requeue_to_end_s": time.monotonic() - signalled}


def test_usr1_requeues_and_the_requeued_job_finishes_in_the_same_run_dir(requeued_sweep):
    sweep, array = requeued_sweep["sweep"], requeued_sweep["array"]
    assert job_record(f"{array}_0")["Restarts"] == "1"  # requeued once, by Lightning
    assert job_record(f"{array}_1")["Restarts"] == "0"
    assert [d.name for d in rundir.trial_dirs(sweep)] == ["0", "1"]  # no new run dir
    run = sweep / "0"
    result = rundir.read_results(run)
    assert result["status"] == "ok" and result["epoch"] == REQUEUE_EPOCHS
    assert result["test/acc"] > 0.6
    attempts = rundir.metrics_files(run)
    assert [p.parent.name for p in attempts] == ["version_0", "version_1"]
    # the second attempt continued from the checkpoint: it starts after epoch 0
    with attempts[1].open() as handle:
        assert int(handle.readlines()[1].split(",")[0]) >= 1
    print(f"signal to the end of the sweep: {requeued_sweep['requeue_to_end_s']:.0f} s")


def test_requeued_run_equals_the_uninterrupted_one(requeued_sweep):
    """Exactness: needs a loader that resumes mid-epoch (issue 15, item 2)."""
    sweep = requeued_sweep["sweep"]
    interrupted, whole = (rundir.read_results(sweep / d) for d in ("0", "1"))
    assert interrupted["global_step"] == whole["global_step"]
    assert interrupted["val/loss"] == whole["val/loss"]
    assert interrupted["test/acc"] == whole["test/acc"]
    weights = [torch.load(sweep / d / rundir.LAST, weights_only=True, map_location="cpu")["state_dict"]
               for d in ("0", "1")]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
