"""One owner per run dir (trainlab.run_owner), taken before Hydra writes into it, and saves that
cannot be half-written (trainlab.atomic_files, trainlab.checkpoint_io)."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import ROOT, needs_fashion_mnist, run_cli

from trainlab import atomic_files, run_owner, rundir
from trainlab.errors import RunDirError


def snapshot(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` (relative name -> bytes)."""
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def hold_in_child(path: Path) -> tuple[int, int]:
    """Fork a process that claims ``path`` and waits; returns its pid and a pipe to end it."""
    ready_r, ready_w = os.pipe()
    stop_r, stop_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: claim, say so, wait to be told to end
        try:
            run_owner._held.clear()  # the parent's descriptors are not this process's claims
            run_owner.claim(path)
            os.write(ready_w, b"1")
            os.read(stop_r, 1)
        finally:
            os._exit(0)
    assert os.read(ready_r, 1) == b"1"
    return pid, stop_w


def test_a_live_owner_refuses_others_by_pid_and_a_dead_one_never_blocks(tmp_path):
    run = tmp_path / "run"
    pid, stop = hold_in_child(run)
    try:
        with pytest.raises(RunDirError, match=rf"{run} is in use by pid {pid} on .*nothing in it was"):
            run_owner.claim(run)
    finally:
        os.kill(pid, signal.SIGKILL)  # as kill -9 would: the kernel drops the lock
        os.waitpid(pid, 0)
        os.close(stop)
    run_owner.claim(run)  # the dead owner does not block
    assert run_owner.owns(run)
    assert (run / run_owner.OWNER_FILE).read_text().startswith(f"pid {os.getpid()} on ")
    run_owner.claim(run)  # claiming again in the owner is a no-op
    run_owner.release(run)
    assert not run_owner.owns(run)


def test_a_refused_check_leaves_the_dir_as_it_was(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text('{"status": "ok"}')
    before = snapshot(run)

    def refuse() -> None:
        rundir.guard_fresh(run)

    with pytest.raises(RunDirError, match="already holds a run"):
        run_owner.claim(run, refuse)
    assert snapshot(run) == before and not run_owner.owns(run)  # not even an owner file


@pytest.mark.parametrize("ranks, follows", [
    ({}, False), ({"LOCAL_RANK": "0"}, False), ({"LOCAL_RANK": "1"}, True), ({"SLURM_PROCID": "2"}, True),
    ({"NODE_RANK": "1"}, True), ({"RANK": "0", "NODE_RANK": "0"}, False)])
def test_ranks_above_zero_follow_their_rank_zero(ranks, follows):
    assert run_owner.follows_an_owner(ranks) is follows


def test_an_interrupted_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "last.ckpt"
    path.write_bytes(b"old and whole")

    def half_then(error: BaseException):
        def write(file):
            file.write(b"new, cut")
            raise error
        return write

    for error in (KeyboardInterrupt("killed during the save"), OSError(errno.ENOSPC, "No space left")):
        with pytest.raises(type(error)):
            atomic_files.write_atomically(path, half_then(error))
        assert path.read_bytes() == b"old and whole"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]
    atomic_files.write_atomically(path, lambda file: file.write(b"new"))
    assert path.read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_the_trainer_saves_checkpoints_through_the_atomic_writer(cfg_factory, tmp_path, monkeypatch):
    from trainlab import checkpoint_io
    from trainlab.checkpoint_io import AtomicCheckpointIO
    from trainlab.pipeline import build

    cfg = cfg_factory("data=digits", "net=mlp", "trainer.max_epochs=1", "callbacks.progress_bar=null")
    _, _, trainer = build(cfg)
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    target = tmp_path / "ckpt" / "best.ckpt"

    write_atomically = checkpoint_io.write_atomically

    def full_disk(path, write):
        def cut(file):
            file.write(b"\0" * 100)
            raise OSError(errno.ENOSPC, "No space left on device")
        return write_atomically(path, cut)

    monkeypatch.setattr(checkpoint_io, "write_atomically", full_disk)
    with pytest.raises(OSError, match="No space left"):
        trainer.strategy.checkpoint_io.save_checkpoint({"w": torch.zeros(3)}, target)
    assert not list(target.parent.iterdir())  # no truncated file under the checkpoint's name
    monkeypatch.undo()
    trainer.strategy.checkpoint_io.save_checkpoint({"w": torch.ones(3)}, target)
    assert torch.equal(torch.load(target, weights_only=True)["w"], torch.ones(3))


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 1 MiB tmpfs: another filesystem than the temp dir, and one that fills up."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_filesystem_leaves_no_truncated_checkpoint(small_tmpfs):
    from trainlab.checkpoint_io import AtomicCheckpointIO

    io = AtomicCheckpointIO()
    last = small_tmpfs / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"w": torch.zeros(1000)}, last)  # 4 KB: fits
    before = last.read_bytes()
    with pytest.raises(OSError) as caught:  # 4 MB: does not
        io.save_checkpoint({"w": torch.zeros(1_000_000)}, last)
    assert caught.value.errno == errno.ENOSPC
    with pytest.raises(OSError):
        io.save_checkpoint({"w": torch.zeros(1_000_000)}, small_tmpfs / "checkpoints" / "best-epoch03.ckpt")
    assert sorted(p.name for p in last.parent.iterdir()) == ["last.ckpt"]
    assert last.read_bytes() == before


SAVE_LOOP = """
import sys, torch
from trainlab.checkpoint_io import AtomicCheckpointIO
io, i = AtomicCheckpointIO(), 0
while True:
    i += 1
    io.save_checkpoint({"i": i, "w": torch.full((60_000,), float(i))}, sys.argv[1])
    print(i, flush=True)
"""


@pytest.mark.e2e
def test_a_kill_during_saves_on_another_filesystem_leaves_a_whole_checkpoint(small_tmpfs):
    last = small_tmpfs / "last.ckpt"
    for delay in (0.0, 0.013, 0.031, 0.057):
        proc = subprocess.Popen([sys.executable, "-c", SAVE_LOOP, str(last)], stdout=subprocess.PIPE,
                                text=True, cwd=ROOT)
        assert proc.stdout.readline().strip() == "1"  # one whole save
        time.sleep(delay)
        proc.kill()
        proc.wait()
        proc.stdout.close()
        saved = torch.load(last, weights_only=True)
        assert torch.equal(saved["w"], torch.full((60_000,), float(saved["i"])))


def launch(run: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), "data=digits", "net=mlp",
                             "callbacks.progress_bar=null", f"hydra.run.dir={run}", *args],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None and time.time() < deadline, f"{path} never appeared"
        time.sleep(0.05)


HYDRA_FILES = ("config.yaml", "hydra.yaml", "overrides.yaml")
FIRST = ("data.batch_size=4", "trainer.max_epochs=50", "seed=7")
SECOND = ("data.batch_size=16", "trainer.max_epochs=1", "seed=8")


@pytest.mark.e2e
def test_a_second_run_resume_or_sweep_into_an_owned_dir_is_refused_before_hydra_writes(tmp_path):
    """The run-dir guard issue's case: the second command, started once the first has saved its
    config and again while it trains, is refused with the first's pid and changes none of its files."""
    run = tmp_path / "run"
    first = launch(run, *FIRST)
    wait_for(run / ".hydra" / "config.yaml", first)
    time.sleep(0.3)  # Hydra has written the three files
    hydra_files = {name: (run / ".hydra" / name).read_bytes() for name in HYDRA_FILES}
    refused = [run_cli("data=digits", *SECOND, f"hydra.run.dir={run}")]
    wait_for(run / rundir.LAST, first)  # training
    refused.append(run_cli(f"resume={run}"))
    refused.append(run_cli("-m", "data=digits", *SECOND, f"hydra.sweep.dir={run.parent}",
                           f"hydra.sweep.subdir={run.name}"))
    still_training = first.poll() is None
    first.send_signal(signal.SIGTERM)
    out, _ = first.communicate(timeout=120)
    assert still_training and first.returncode == 143, out[-3000:]
    for proc in refused:
        assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
        assert f"{run} is in use by pid {first.pid} on " in proc.stderr
        assert "Traceback" not in proc.stderr + proc.stdout
        assert proc.stderr.count("is in use by") == 1  # printed once
    assert {name: (run / ".hydra" / name).read_bytes() for name in HYDRA_FILES} == hydra_files
    assert json.loads((run / rundir.RESULTS).read_text())["seed"] == 7
    assert not (run / rundir.RESUME_CONFIG_DIR).exists()


@pytest.mark.e2e
def test_resuming_a_run_that_has_ended_does_nothing_and_says_so(tmp_path):
    run = tmp_path / "run"
    assert run_cli("data=digits", "net=mlp", "trainer.max_epochs=1", "callbacks.progress_bar=null",
                   "tag=mine", "seed=5", f"hydra.run.dir={run}").returncode == 0
    before = snapshot(run)
    done = run_cli(f"resume={run}")
    assert done.returncode == 0 and "has ended (status ok); nothing to do" in done.stdout
    assert "raise trainer.max_epochs or trainer.max_steps on the resume command (now 1, -1)" in done.stdout
    assert snapshot(run) == before
    longer = run_cli(f"resume={run}", "trainer.max_epochs=2")
    assert longer.returncode == 0, longer.stderr[-2000:]
    results = json.loads((run / rundir.RESULTS).read_text())
    assert (results["epoch"], results["seed"], results["tag"]) == (2, 5, "mine")  # the run's own
    other = run_cli(f"resume={run}", f"hydra.run.dir={tmp_path / 'elsewhere'}")
    assert other.returncode == 1 and "drop hydra.run.dir" in other.stderr


@pytest.mark.e2e
def test_two_runs_started_together_into_one_dir_one_trains_the_other_is_refused(tmp_path):
    run = tmp_path / "run"
    procs = [launch(run, *FIRST[:1], "trainer.max_epochs=1", f"seed={seed}") for seed in (1, 2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 1], outs
    winner = next(p for p in procs if p.returncode == 0)
    loser_out = outs[[p.returncode for p in procs].index(1)]
    assert "is in use by pid" in loser_out or "already holds a run" in loser_out
    seed = 1 if winner is procs[0] else 2
    assert json.loads((run / rundir.RESULTS).read_text())["seed"] == seed
    assert f"seed: {seed}" in (run / rundir.CONFIG).read_text()


@pytest.mark.e2e
def test_a_refused_sweep_continuation_changes_nothing_in_the_sweep_dir(tmp_path):
    sweep = tmp_path / "sweep"
    args = ("-m", "data=digits", "net=mlp", "trainer.max_epochs=1", "callbacks.progress_bar=null",
            f"hydra.sweep.dir={sweep}")
    assert run_cli(*args, "seed=1,2").returncode == 0
    before = snapshot(sweep)
    other = run_cli(*args, "seed=3,4")
    assert other.returncode == 1 and "Traceback" not in other.stderr
    assert f"{sweep} holds another sweep (its overrides ['seed=1,2'], this one's ['seed=3,4'])" \
        in other.stderr
    assert snapshot(sweep) == before


@pytest.mark.e2e
@needs_fashion_mnist
def test_a_run_killed_while_testing_resumes_to_the_results_of_an_uninterrupted_twin(tmp_path):
    """results.json says 'testing' with the training's metrics before the test starts: a resume
    (or a sweep continued) tests the run and records every key the uninterrupted run has."""
    args = ("data.train_subset=1000", "data.val_size=500", "trainer.max_epochs=1",
            "callbacks.progress_bar=null")
    straight = tmp_path / "straight"
    assert run_cli(*args, f"hydra.run.dir={straight}").returncode == 0
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args, f"hydra.run.dir={run}"],
                            cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        if "`Trainer.fit` stopped" in line:  # the test starts now
            break
    wait_for(run / rundir.RESULTS, proc, timeout=30)
    proc.kill()
    proc.wait()
    proc.stdout.close()
    killed = json.loads((run / rundir.RESULTS).read_text())
    assert killed["status"] == rundir.TESTING and "test/acc" not in killed and "val/acc" in killed
    resumed = run_cli(f"resume={run}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = json.loads((straight / rundir.RESULTS).read_text())
    b = json.loads((run / rundir.RESULTS).read_text())
    def same(results: dict) -> dict:  # the code's version is the attempt's (provenance/*)
        return {k: v for k, v in results.items()
                if k not in ("wall_s", "run_dir") and not k.startswith("provenance/")}
    assert same(b) == same(a)


@pytest.mark.e2e
def test_a_corrupt_results_json_in_a_continued_sweep_is_named_with_how_to_go_on(tmp_path):
    sweep = tmp_path / "sweep"
    args = ("-m", "data=digits", "net=mlp", "trainer.max_epochs=1", "callbacks.progress_bar=null",
            "seed=1,2", f"hydra.sweep.dir={sweep}")
    assert run_cli(*args).returncode == 0
    (sweep / "0" / rundir.RESULTS).write_text('{"status": "ok", "test/acc": 0.9')  # cut short
    before = snapshot(sweep)
    proc = run_cli(*args)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"{sweep / '0' / rundir.RESULTS} is not valid JSON" in proc.stderr
    assert "Move it away to continue that run from its checkpoints/last.ckpt" in proc.stderr
    assert snapshot(sweep) == before
    (sweep / "0" / rundir.RESULTS).unlink()  # as the message says: the trial continues from last.ckpt
    again = run_cli(*args)
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads((sweep / "0" / rundir.RESULTS).read_text())["status"] == "ok"


@pytest.mark.e2e
@pytest.mark.parametrize("resume, says", [
    ("{tmp}/nope", "resume='{tmp}/nope': not a trainlab run directory"),
    ("{tmp}", "resume='{tmp}': not a trainlab run directory"),
])
def test_a_resume_of_no_run_is_one_line_naming_the_value(tmp_path, resume, says):
    proc = run_cli(f"resume={resume.format(tmp=tmp_path)}")
    assert proc.returncode == 1
    line = (f"error: {says.format(tmp=tmp_path)} (no .hydra/config.yaml); pass the directory of an "
            "earlier run, e.g. resume=outputs/runs/<date>_<time>")
    assert proc.stderr.strip().splitlines() == [line]
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.e2e
def test_a_kill_between_the_best_and_the_last_save_resumes_to_the_uninterrupted_results(tmp_path):
    """The state a kill leaves after an epoch's best-*.ckpt is saved and before its last.ckpt:
    the resume repeats that epoch and writes the same best checkpoint again, not a -v1 copy."""
    args = ("data.batch_size=4", "trainer.max_epochs=2", "seed=3")
    straight = tmp_path / "straight"
    assert run_cli("data=digits", "net=mlp", "callbacks.progress_bar=null", *args,
                   f"hydra.run.dir={straight}").returncode == 0
    run = tmp_path / "run"
    proc = launch(run, *args)
    wait_for(run / rundir.LAST, proc)  # epoch 0's
    epoch0 = (run / rundir.LAST).read_bytes()
    assert proc.wait(timeout=300) == 0
    assert torch.load(run / rundir.LAST, weights_only=True)["epoch"] == 1
    (run / rundir.LAST).write_bytes(epoch0)  # best-epoch01.ckpt saved, last.ckpt still epoch 0's
    (run / rundir.RESULTS).unlink()
    resumed = run_cli(f"resume={run}")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert sorted(p.name for p in (run / rundir.CHECKPOINTS).iterdir()) == \
        sorted(p.name for p in (straight / rundir.CHECKPOINTS).iterdir())

    def same(results: dict) -> dict:
        return {k: v for k, v in results.items()
                if k not in ("wall_s", "run_dir") and not k.startswith("provenance/")}
    assert same(json.loads((run / rundir.RESULTS).read_text())) == \
        same(json.loads((straight / rundir.RESULTS).read_text()))
