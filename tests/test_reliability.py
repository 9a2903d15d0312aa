"""Resume exactly, same seed same result, divergence as a result, clear errors, nothing lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import fsspec.implementations.local as fs_local
import pytest
import torch
from conftest import ROOT, compose_cfg, run_cli
from tiny import tiny_datamodule, tiny_model, tiny_trainer

from trainlab.pipeline import build, fit_and_test
from trainlab.rundir import metrics_files, read_metrics

STABLE = ("wall_s", "run_dir", "tested_checkpoint")


def metrics_of(results: dict) -> dict:
    return {k: v for k, v in results.items() if k not in STABLE}


@pytest.mark.e2e
def test_same_seed_same_results(tmp_path):
    runs = []
    for i in range(2):
        cfg = compose_cfg(["data=digits", "trainer.max_epochs=2", "callbacks.progress_bar=null",
                           "augmentation=gaussian_noise", "trainer.log_every_n_steps=1"],
                          tmp_path / str(i))
        datamodule, model, trainer = build(cfg)
        runs.append(metrics_of(fit_and_test(cfg, datamodule, model, trainer, None)))
    assert runs[0] == runs[1]
    assert runs[0]["test/acc"] > 0.5


def test_divergence_stops_cleanly_and_keeps_good_weights(cfg_factory, tmp_path):
    cfg = cfg_factory("data=digits", "trainer.max_epochs=3", "optimizer=sgd",
                      "model.optimizer.lr=1e6", "model.net.batchnorm=false",
                      "callbacks.progress_bar=null", "trainer.log_every_n_steps=1")
    datamodule, model, trainer = build(cfg)
    results = fit_and_test(cfg, datamodule, model, trainer, None)
    assert results["status"] == "diverged"
    assert trainer.global_step < 3 * 21  # stopped early
    assert all(torch.isfinite(p).all() for p in model.parameters())
    last = torch.load(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point())


def test_interrupted_checkpoint_write_leaves_previous_last_ckpt_intact(tmp_path, monkeypatch):
    trainer = tiny_trainer(tmp_path, max_epochs=1)
    model = tiny_model()
    trainer.fit(model, datamodule=tiny_datamodule())
    path = tmp_path / "last.ckpt"
    trainer.save_checkpoint(path)
    before = path.read_bytes()
    original = fs_local.LocalFileOpener.write

    def die_halfway(self, data):
        original(self, data[: len(data) // 2])
        raise KeyboardInterrupt("killed during save")

    monkeypatch.setattr(fs_local.LocalFileOpener, "write", die_halfway)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    with pytest.raises(KeyboardInterrupt):
        trainer.save_checkpoint(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    torch.load(path, weights_only=True)


@pytest.mark.e2e
def test_resume_dir_that_does_not_exist_is_a_clear_error(tmp_path):
    proc = run_cli(f"resume={tmp_path / 'nope'}")
    assert proc.returncode != 0
    assert "not a trainlab run directory" in proc.stderr
    assert not (tmp_path / "nope").exists()


@pytest.mark.e2e
def test_corrupt_data_file_fails_before_training_naming_the_file(tmp_path):
    root = tmp_path / "fm"
    root.mkdir()
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (root / stem).write_bytes(b"\x00\x00\x08\x01" + (5).to_bytes(4, "big") + b"abc")
    proc = run_cli(f"data.source.root={root}", f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode != 0
    out = proc.stderr + proc.stdout
    assert "t10k-images-idx3-ubyte" in out or "train-images-idx3-ubyte" in out
    assert "truncated or corrupt" in out
    assert "Epoch 0" not in out
    assert not (tmp_path / "run" / "checkpoints").exists()


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        if proc.poll() is not None or time.time() > deadline:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"{path} never appeared (rc={proc.poll()}):\n{out[-3000:]}")
        time.sleep(0.2)


def launch(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


COMMON = ("data=digits", "trainer.max_epochs=6", "callbacks.progress_bar=null",
          "augmentation=flip", "model.net.dropout=0.3", "data.batch_size=16")


@pytest.mark.slow
def test_kill_9_then_resume_equals_uninterrupted_run(tmp_path):
    straight = tmp_path / "straight"
    assert run_cli(*COMMON, f"hydra.run.dir={straight}").returncode == 0
    killed = tmp_path / "killed"
    with launch(*COMMON, f"hydra.run.dir={killed}") as proc:  # closes its stdout pipe
        wait_for(killed / "checkpoints" / "last.ckpt", proc)  # mid-run: after the first epoch
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not (killed / "results.json").exists()
    resumed = run_cli(f"resume={killed}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = json.loads((straight / "results.json").read_text())
    b = json.loads((killed / "results.json").read_text())
    assert metrics_of(a) == {**metrics_of(b), "tag": a["tag"]}
    assert (killed / ".hydra" / "overrides.yaml").read_text().count("max_epochs=6") == 1
    # one metrics file per attempt; joined, the learning curve is the uninterrupted run's
    assert [p.parent.name for p in metrics_files(killed)] == ["version_0", "version_1"]

    def val_curve(rows):
        return {r["epoch"]: r["val/acc"] for r in rows if r.get("val/acc")}
    assert val_curve(read_metrics(killed)) == val_curve(read_metrics(straight))


def interrupt_inside_an_epoch(run: Path, signum: int, *args: str) -> dict:
    """Launch a run, signal it a moment after its first checkpoint (inside epoch 1), check that
    it stopped inside an epoch with status interrupted, saying by what."""
    with launch(*args, f"hydra.run.dir={run}") as proc:  # closes its stdout pipe
        wait_for(run / "checkpoints" / "last.ckpt", proc)
        time.sleep(0.5)
        proc.send_signal(signum)
        assert proc.wait(timeout=120) == (130 if signum == signal.SIGINT else 143)
    results = json.loads((run / "results.json").read_text())
    assert results["status"] == "interrupted"
    assert results["stopped_by"] == signal.Signals(signum).name
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    (loader,) = ckpt["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert loader["batches_done"] > 0, loader  # stopped inside an epoch, not at its end
    return results


@pytest.mark.slow
@pytest.mark.parametrize(("trainer", "signum", "accumulate"), [
    ("default", signal.SIGTERM, 1), ("ddp_cpu", signal.SIGTERM, 1), ("default", signal.SIGINT, 1),
    ("ddp_cpu", signal.SIGTERM, 2), ("ddp_cpu", signal.SIGTERM, 3)])  # stopped at a cycle's end
def test_a_signal_inside_an_epoch_then_resume_equals_uninterrupted_run(tmp_path, trainer, signum,
                                                                        accumulate):
    args = [*COMMON, f"trainer={trainer}", f"trainer.accumulate_grad_batches={accumulate}"]
    straight = tmp_path / "straight"
    assert run_cli(*args, f"hydra.run.dir={straight}").returncode == 0
    run = tmp_path / "run"
    first = interrupt_inside_an_epoch(run, signum, *args)
    resumed = run_cli(f"resume={run}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = json.loads((straight / "results.json").read_text())
    b = json.loads((run / "results.json").read_text())
    assert b["status"] == "ok" and b["epoch"] == 6 and "stopped_by" not in b
    assert b["wall_s"] > first["wall_s"]  # both attempts counted
    assert metrics_of(a) == {**metrics_of(b), "tag": a["tag"]}
    weights = [torch.load(r / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
               for r in (straight, run)]
    for name, tensor in weights[0].items():
        assert torch.equal(tensor, weights[1][name]), name  # bit for bit


@pytest.mark.e2e
def test_resume_trains_longer_when_asked_and_refuses_other_changes(tmp_path):
    run = tmp_path / "run"
    assert run_cli("data=digits", "trainer.max_epochs=1", "callbacks.progress_bar=null",
                   f"hydra.run.dir={run}").returncode == 0
    refused = run_cli(f"resume={run}", "model.net.dropout=0.5", "trainer.max_epochs=3")
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "Refused: model.net.dropout=0.5" in refused.stderr
    assert json.loads((run / "results.json").read_text())["epoch"] == 1  # untouched
    longer = run_cli(f"resume={run}", "trainer.max_epochs=3")
    assert longer.returncode == 0, longer.stderr[-3000:]
    results = json.loads((run / "results.json").read_text())
    assert results["status"] == "ok" and results["epoch"] == 3 and results["global_step"] == 3 * 17


@pytest.mark.parametrize(("after_every_epoch", "last_epoch"), [(False, 1), (True, 2)])
def test_last_ckpt_keeps_up_with_epochs_that_skip_validation_only_when_saved_after_each(
        cfg_factory, after_every_epoch, last_epoch):
    """Why +experiment=fmnist_94, which validates every third epoch, sets
    callbacks.model_checkpoint.save_on_train_epoch_end: Lightning otherwise writes last.ckpt
    only after a validation, and a resume would start from the last validated epoch."""
    cfg = cfg_factory("data=digits", "net=mlp", "trainer.max_epochs=3", "trainer.check_val_every_n_epoch=2",
                      "callbacks.model_checkpoint.monitor=null",
                      f"+callbacks.model_checkpoint.save_on_train_epoch_end={after_every_epoch}")
    datamodule, module, trainer = build(cfg)
    fit_and_test(cfg, datamodule, module, trainer, None)
    last = torch.load(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt", weights_only=False)
    assert (last["epoch"], trainer.current_epoch) == (last_epoch, 3)
