"""Features where they meet: each pair of {accumulation 3, a resume with a raised horizon, SIGTERM
inside an accumulation cycle, EMA, compile toggled between save and load, float64, test-time
views, clipping, every scheduler, ddp_cpu}, run on 8x8 digits and checked against what each
promises:

- no crash, finite results;
- a stopped-and-resumed run ends with the weights of the uninterrupted one, bit for bit (a
  resume that raises the horizon re-plans schedules that depend on it, so there only the LR
  after the resume is compared);
- the LR every optimizer step used is the one of the same schedule run straight;
- the test metrics of a run equal those of its tested checkpoint loaded afresh, as eval.py
  loads it (across ``model.compile`` too).

The pairs trainlab refuses before training (an L2 penalty beside a decoupled weight decay, the
Trainer's clipping beside the callback) are tested where they are refused (test_regularization,
test_grad_clip) and listed in README. About four minutes in all: ``make test-e2e`` runs it.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from conftest import CONFIG_DIR, compose_cfg, run_cli
from pytorch_lightning.utilities.exceptions import SIGTERMException

from trainlab.evaluation import load_weights
from trainlab.pipeline import build, fit_and_test

pytestmark = pytest.mark.slow

BASE = ("data=digits", "net=mlp", "model.net.hidden=[32]", "data.batch_size=128",
        "callbacks.progress_bar=null", "logger=none", "trainer.log_every_n_steps=1")
EPOCHS = 3
SCHEDULERS = sorted(p.stem for p in (Path(CONFIG_DIR) / "scheduler").glob("*.yaml"))
# what each feature sets; "resume", "sigterm" and "compile" also change how the pair is run
FEATURES = {
    "accumulation": ("trainer.accumulate_grad_batches=3",),
    "ema": ("weight_averaging=ema", "callbacks.weight_averaging.decay=0.9"),
    "float64": ("trainer.precision=64-true",),
    "tta": ("model.tta_flip=true", "model.tta_shift=1"),
    "clipping": ("grad_clip=norm",),
    "resume": (),
    "sigterm": (),
    "compile": (),
}
# schedules whose LR at a step does not depend on the run's horizon: a run to 1 epoch resumed
# to EPOCHS trains as a run to EPOCHS (the default, cosine, does depend on it)
HORIZON_FREE = ("scheduler=none", "scheduler=step", "scheduler=multistep", "scheduler=exponential",
                "scheduler=plateau")
PAIRS = [*itertools.combinations(FEATURES, 2),
         *((f"scheduler={s}", other) for s in SCHEDULERS for other in ("accumulation", "resume", "sigterm"))]


class StepLRs(pl.Callback):
    """The LR each optimizer step used, by global step."""

    def __init__(self) -> None:
        self.lrs: dict[int, float] = {}

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.lrs[trainer.global_step] = optimizer.param_groups[0]["lr"]


class SigtermAt(pl.Callback):
    """A real SIGTERM as batch 0 of epoch 1 starts: inside an accumulation cycle."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if (trainer.current_epoch, batch_idx) == (1, 0):
            os.kill(os.getpid(), signal.SIGTERM)


def overrides_of(pair: tuple[str, ...], epochs: int = EPOCHS) -> list[str]:
    out = [*BASE, f"trainer.max_epochs={epochs}"]
    for feature in pair:
        out += [feature] if feature.startswith("scheduler=") else list(FEATURES[feature])
    if "sigterm" in pair and "accumulation" not in pair:
        out.append("trainer.accumulate_grad_batches=2")  # so the signal falls inside a cycle
    return out


def fit(cfg, root: Path, *callbacks: pl.Callback, ckpt_path: str | None = None):
    datamodule, model, trainer = build(cfg)
    trainer.callbacks.extend(callbacks)
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    return model, trainer


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    wa, wb = a.state_dict(), b.state_dict()
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.equal(wa[name], wb[name]), name


def straight_and_stopped(pair: tuple[str, ...], tmp_path: Path) -> None:
    """The pair run straight, and run with its stop (a resume that raises the horizon, or a
    SIGTERM mid-cycle) then resumed: the LRs and, where promised, the weights agree. With
    ``compile`` the stopped run is compiled and the resumed one is not."""
    straight_lrs, resumed_lrs = StepLRs(), StepLRs()
    plain = tuple(p for p in pair if p != "compile")
    straight, _ = fit(compose_cfg(overrides_of(plain), tmp_path / "straight"), tmp_path / "straight",
                      straight_lrs)
    run = tmp_path / "stopped"
    first = overrides_of(plain, epochs=1 if "resume" in pair else EPOCHS)
    if "compile" in pair:
        first.append("model.compile=true")
    if "resume" in pair:  # one epoch, then the horizon raised to EPOCHS
        fit(compose_cfg(first, run), run)
    else:
        with pytest.raises(SIGTERMException):
            fit(compose_cfg(first, run), run, SigtermAt())
    last = str(run / "checkpoints" / "last.ckpt")
    resumed, trainer = fit(compose_cfg(overrides_of(plain), run), run, resumed_lrs, ckpt_path=last)
    assert trainer.global_step == max(straight_lrs.lrs) + 1
    assert resumed_lrs.lrs
    for step, lr in resumed_lrs.lrs.items():  # after the resume: the schedule planned for EPOCHS
        assert lr == pytest.approx(straight_lrs.lrs[step], rel=1e-12, abs=1e-15), step
    if "compile" in pair:  # compiled kernels may round differently: the compiled checkpoint
        return  # loaded and trained on uncompiled; the weights are not compared
    if "resume" not in pair or any(p in pair for p in HORIZON_FREE):
        assert_same_weights(straight, resumed)


def check_tested_equals_eval(pair: tuple[str, ...], tmp_path: Path) -> None:
    """The run's test metrics equal its tested checkpoint's, loaded afresh into a model built
    from the same config (as eval.py does; with ``compile`` the fresh model is not compiled)."""
    overrides = overrides_of(pair)
    if "compile" in pair:
        overrides.append("model.compile=true")
    cfg = compose_cfg(overrides, tmp_path / "run")
    datamodule, model, trainer = build(cfg)
    results = fit_and_test(cfg, datamodule, model, trainer, None)
    assert results["status"] == "ok" and torch.isfinite(torch.tensor(results["test/loss"]))
    ckpt = trainer.checkpoint_callback.best_model_path
    eval_overrides = [o for o in overrides if o != "model.compile=true"]
    cfg = compose_cfg(eval_overrides, tmp_path / "eval")
    datamodule, fresh, tester = build(cfg)
    load_weights(fresh, datamodule, Path(ckpt))
    (tested,) = tester.test(fresh, datamodule=datamodule, verbose=False)
    for key in ("test/acc", "test/loss"):
        assert tested[key] == pytest.approx(results[key], rel=1e-6, abs=1e-7), key


@pytest.mark.parametrize("pair", PAIRS, ids=["+".join(p) for p in PAIRS])
def test_a_pair_of_features_keeps_what_each_promises(pair, tmp_path):
    if "compile" in pair and not hasattr(torch, "compile"):
        pytest.skip("torch.compile is not available")
    if any(p in pair for p in ("resume", "sigterm")):
        if "resume" in pair and "sigterm" in pair:  # stopped by a signal, resumed to a longer run
            pair = tuple(p for p in pair if p != "sigterm")
        straight_and_stopped(pair, tmp_path)
    else:
        check_tested_equals_eval(pair, tmp_path)


DDP_PAIRS = ("accumulation", "ema", "float64", "tta", "clipping")


@pytest.mark.e2e
@pytest.mark.parametrize("feature", DDP_PAIRS)
def test_ddp_cpu_with_a_feature_tests_what_it_trained(feature, tmp_path):
    """Two ranks with the feature: the run ends ok, and its test metrics (synced over the ranks'
    halves of the test split) are those of its tested checkpoint tested afresh in one process."""
    run = tmp_path / "run"
    overrides = [*overrides_of((feature,), epochs=2), "data.batch_size=32"]
    proc = run_cli(*overrides, "trainer=ddp_cpu", f"hydra.run.dir={run}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((run / "results.json").read_text())
    assert results["status"] == "ok" and results["epoch"] == 2
    cfg = compose_cfg(overrides, tmp_path / "eval")
    datamodule, fresh, tester = build(cfg)
    load_weights(fresh, datamodule, run / "checkpoints" / results["tested_checkpoint"])
    (tested,) = tester.test(fresh, datamodule=datamodule, verbose=False)
    for key in ("test/acc", "test/loss"):
        assert tested[key] == pytest.approx(results[key], rel=1e-5, abs=1e-6), key
    assert not subprocess.run(["pgrep", "-f", str(run)], capture_output=True).stdout  # ranks ended
