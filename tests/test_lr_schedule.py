"""LR decay callbacks give the formula's LR at the boundaries and survive a resume."""

from __future__ import annotations

import csv
import logging
import math
from functools import partial
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from tiny import LRRecorder, tiny_datamodule, tiny_model, tiny_trainer
from torch.optim import lr_scheduler as sched

from trainlab.callbacks import LRSchedule
from trainlab.callbacks.lr_schedule import run_intervals
from trainlab.errors import ConfigError
from trainlab.pipeline import build, fit_and_test, setup_error
from trainlab.train import CONFIG_DIR


def lrs_by_epoch(callback: LRSchedule, epochs: int, tmp_path) -> list[float]:
    rec = LRRecorder()
    trainer = tiny_trainer(tmp_path, max_epochs=epochs, callbacks=[callback, rec])
    trainer.fit(tiny_model(lr=0.1), datamodule=tiny_datamodule())
    return rec.by_epoch


def test_step_lr_boundaries(tmp_path):
    got = lrs_by_epoch(LRSchedule(partial(sched.StepLR, step_size=2, gamma=0.1)), 6, tmp_path)
    assert got == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])


def test_multistep_and_exponential(tmp_path):
    multi = lrs_by_epoch(LRSchedule(partial(sched.MultiStepLR, milestones=[1, 3], gamma=0.5)), 5,
                         tmp_path)
    assert multi == pytest.approx([0.1, 0.05, 0.05, 0.025, 0.025])
    expo = lrs_by_epoch(LRSchedule(partial(sched.ExponentialLR, gamma=0.8)), 4, tmp_path)
    assert expo == pytest.approx([0.1 * 0.8 ** e for e in range(4)])


def test_cosine_reaches_eta_min_at_t_max(tmp_path):
    got = lrs_by_epoch(LRSchedule(partial(sched.CosineAnnealingLR, T_max=4, eta_min=0.0)), 5,
                       tmp_path)
    assert got == pytest.approx([0.1 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(5)],
                                abs=1e-12)


def test_warmup_then_step(tmp_path):
    cb = LRSchedule(partial(sched.StepLR, step_size=2, gamma=0.1), warmup=2, warmup_start_factor=0.25)
    got = lrs_by_epoch(cb, 6, tmp_path)
    # linear 0.25 -> 1 over 2 epochs, then StepLR counts from the end of warmup
    assert got == pytest.approx([0.025, 0.0625, 0.1, 0.1, 0.01, 0.01])


def test_onecycle_per_step_fills_total_steps(tmp_path):
    rec = LRRecorder()
    cb = LRSchedule(partial(sched.OneCycleLR, max_lr=1.0, pct_start=0.25, div_factor=10.0,
                            final_div_factor=100.0, anneal_strategy="linear"), interval="step")
    trainer = tiny_trainer(tmp_path, max_epochs=4, callbacks=[cb, rec])
    trainer.fit(tiny_model(), datamodule=tiny_datamodule(batch_size=16))  # 80 imgs -> 5 steps/epoch
    total = 20
    assert len(rec.by_step) == total
    assert rec.by_step[0] == pytest.approx(0.1)                    # max_lr / div_factor
    peak = round(0.25 * total) - 1                                  # end of the warm-up phase
    assert rec.by_step[peak] == pytest.approx(1.0)
    assert max(rec.by_step) == pytest.approx(1.0)
    assert rec.by_step[-1] == pytest.approx(0.1 / 100.0)  # max_lr / div / final_div at the end
    assert cb.scheduler.get_last_lr()[0] == pytest.approx(0.1 / 100.0)  # not stepped past it


def test_plateau_reduces_when_monitored_metric_stalls(tmp_path):
    cb = LRSchedule(partial(sched.ReduceLROnPlateau, mode="max", factor=0.5, patience=0),
                    monitor="val/acc")
    got = lrs_by_epoch(cb, 8, tmp_path)
    assert got[0] == 0.1 and min(got) < 0.1
    assert all(b in (a, a * 0.5) for a, b in zip(got, got[1:], strict=False))


def test_resume_continues_schedule_where_it_stopped(tmp_path):
    def callback():
        return LRSchedule(partial(sched.StepLR, step_size=2, gamma=0.1))
    dm = tiny_datamodule()
    first = tiny_trainer(tmp_path, max_epochs=3, callbacks=[callback()])
    first.fit(tiny_model(), datamodule=dm)
    ckpt = tmp_path / "stop.ckpt"
    first.save_checkpoint(ckpt)
    rec = LRRecorder()
    resumed = tiny_trainer(tmp_path, max_epochs=6, callbacks=[callback(), rec])
    resumed.fit(tiny_model(), datamodule=tiny_datamodule(), ckpt_path=ckpt, weights_only=True)
    assert rec.by_epoch == pytest.approx([0.01, 0.001, 0.001])  # epochs 3, 4, 5


def test_bad_arguments_name_the_key():
    with pytest.raises(ValueError, match="callbacks.lr_schedule.interval must be one of"):
        LRSchedule(partial(sched.StepLR, step_size=1), interval="batch")
    with pytest.raises(ValueError, match="callbacks.lr_schedule.monitor must name a metric"):
        LRSchedule(partial(sched.ReduceLROnPlateau))
    with pytest.raises(ValueError, match="callbacks.lr_schedule.warmup must be an integer >= 0, got -1"):
        LRSchedule(partial(sched.StepLR, step_size=1), warmup=-1)


def test_the_logged_lr_is_the_one_the_last_step_used(tmp_path):
    trainer = tiny_trainer(tmp_path, max_epochs=2,
                           callbacks=[LRSchedule(partial(sched.StepLR, step_size=1, gamma=0.5))])
    trainer.fit(tiny_model(), datamodule=tiny_datamodule())
    # epoch 1 trained at 0.05; the 0.025 the scheduler moved to after it is never used
    assert trainer.callback_metrics["train/lr"].item() == pytest.approx(0.05)
    assert isinstance(trainer.callback_metrics["train/lr"], torch.Tensor)


def test_a_monitor_for_a_schedule_that_does_not_read_it_stops_the_run(cfg_factory):
    with pytest.raises(ConfigError, match=r"^callbacks\.lr_schedule\.monitor='val/loss' is not read "
                       r"by StepLR: only scheduler=plateau \(ReduceLROnPlateau\) reads it"):
        LRSchedule(partial(sched.StepLR, step_size=1), monitor="val/loss")
    for option in ("step", "multistep", "exponential", "cosine", "onecycle"):
        with pytest.raises(Exception, match="only scheduler=plateau") as err:
            build(cfg_factory("data=digits", f"scheduler={option}",
                              "callbacks.lr_schedule.monitor=val/acc"))
        assert isinstance(setup_error(err.value), ConfigError)
    assert build(cfg_factory("data=digits", "scheduler=plateau",
                             "callbacks.lr_schedule.monitor=val/acc"))  # the one that reads it


# --- every scheduler option of conf/scheduler/, stepped with the optimizer ----------------

SCHEDULERS = sorted(p.stem for p in (Path(CONFIG_DIR) / "scheduler").glob("*.yaml"))
EPOCHS, BATCHES = 4, 5  # tiny_datamodule(batch_size=16): 80 training images, 5 batches


class StepLRs(pl.Callback):
    """(global_step, epoch, lr) at every optimizer step, read as the step begins."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, int, float]] = []

    def on_train_start(self, trainer, pl_module) -> None:
        def record(optimizer, args, kwargs) -> None:
            self.seen.append((trainer.global_step, trainer.current_epoch,
                              optimizer.param_groups[0]["lr"]))

        trainer.optimizers[0].register_step_pre_hook(record)


class StopAt(pl.Callback):
    """Save a checkpoint after training batch ``batch`` of epoch ``epoch`` and stop there."""

    def __init__(self, epoch: int, batch: int, path) -> None:
        self.epoch, self.batch, self.path = epoch, batch, path

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if (trainer.current_epoch, batch_idx) == (self.epoch, self.batch):
            trainer.save_checkpoint(self.path)
            trainer.should_stop = True


def scheduler_callback(cfg_factory, option: str, *overrides: str) -> LRSchedule | None:
    node = cfg_factory(f"scheduler={option}", *overrides).callbacks.get("lr_schedule")
    return instantiate(node) if node else None


def planned_lrs(callback: LRSchedule, steps_per_epoch: list[int]) -> list[float]:
    """The LR of each optimizer step of a run with ``steps_per_epoch[e]`` steps in epoch ``e``,
    from the same scheduler on its own optimizer, planned for that run's length."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    total = sum(steps_per_epoch) if callback.interval == "step" else len(steps_per_epoch)
    scheduler = callback.build(optimizer, total)
    lrs = []
    for steps in steps_per_epoch:
        for _ in range(steps):
            lrs.append(optimizer.param_groups[0]["lr"])
            optimizer.step()  # no gradient: changes nothing, but the scheduler steps after it
            if callback.interval == "step" and len(lrs) < total:
                scheduler.step()
        if callback.interval == "epoch":
            scheduler.step()
    return lrs


def expected_lrs(callback: LRSchedule, steps_per_epoch: int) -> list[float]:
    """The LR of each optimizer step of an EPOCHS-epoch run."""
    return planned_lrs(callback, [steps_per_epoch] * EPOCHS)


@pytest.mark.parametrize("accumulate", [1, 3])
@pytest.mark.parametrize("option", SCHEDULERS)
def test_every_scheduler_steps_with_the_optimizer_under_accumulation(cfg_factory, tmp_path, option,
                                                                     accumulate):
    callback = scheduler_callback(cfg_factory, option)
    probe = StepLRs()
    trainer = tiny_trainer(tmp_path, max_epochs=EPOCHS, accumulate_grad_batches=accumulate,
                           callbacks=[probe, *([callback] if callback else [])])
    trainer.fit(tiny_model(lr=0.1), datamodule=tiny_datamodule(batch_size=16))
    steps_per_epoch = math.ceil(BATCHES / accumulate)  # the epoch's last batch steps too
    assert trainer.global_step == len(probe.seen) == EPOCHS * steps_per_epoch
    got = [lr for _, _, lr in probe.seen]
    if callback is None:
        assert got == [0.1] * len(got)
    elif callback.plateau:  # its steps follow val/loss: the LR changes only between epochs
        by_epoch = {e: {lr for _, ep, lr in probe.seen if ep == e} for e in range(EPOCHS)}
        assert all(len(lrs) == 1 for lrs in by_epoch.values())
    else:
        assert got == pytest.approx(expected_lrs(callback, steps_per_epoch), rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("option", ["onecycle", "cosine"])
def test_resume_in_the_middle_of_an_accumulation_cycle_keeps_the_schedule(cfg_factory, tmp_path,
                                                                          option):
    ckpt = tmp_path / "mid_cycle.ckpt"
    first = StepLRs()
    trainer = tiny_trainer(tmp_path, max_epochs=EPOCHS, accumulate_grad_batches=3,
                           callbacks=[first, scheduler_callback(cfg_factory, option),
                                      StopAt(epoch=1, batch=1, path=ckpt)])
    trainer.fit(tiny_model(lr=0.1), datamodule=tiny_datamodule(batch_size=16))
    assert trainer.global_step == 2  # epoch 0's two steps; batches 0-1 of epoch 1 accumulated
    second = StepLRs()
    callback = scheduler_callback(cfg_factory, option)
    resumed = tiny_trainer(tmp_path, max_epochs=EPOCHS, accumulate_grad_batches=3,
                           callbacks=[second, callback])
    resumed.fit(tiny_model(lr=0.1), datamodule=tiny_datamodule(batch_size=16), ckpt_path=ckpt,
                weights_only=True)
    expected = expected_lrs(callback, steps_per_epoch=2)
    steps = first.seen + second.seen
    assert [s for s, _, _ in steps] == list(range(len(steps)))  # no step lost or repeated
    for step, epoch, lr in steps:  # each step's LR is the schedule's at that step
        index = step if callback.interval == "step" else epoch * 2
        assert lr == pytest.approx(expected[index], rel=1e-12)
    assert second.seen and resumed.global_step == EPOCHS * 2


# --- the run's length: the steps the Trainer takes, re-planned when a resume raises it ------

def test_the_run_length_is_its_optimizer_steps_or_the_epochs_they_span():
    assert run_intervals("step", 20, 5, 1) == 20
    assert run_intervals("epoch", 20, 5, 1) == 4
    assert run_intervals("epoch", 17, 5, 1) == 4  # max_steps=17 cuts the 4th epoch short
    assert run_intervals("epoch", 7, 5, 3) == 4  # 2 steps an epoch: its last batch steps too
    assert run_intervals("step", math.inf, 5, 1) is None  # unbounded (max_time alone)
    assert run_intervals("epoch", math.inf, 5, 1) is None


# (max_epochs, max_steps, accumulate_grad_batches) with 5 batches an epoch
HORIZONS = [(4, -1, 1), (-1, 17, 1), (10, 17, 1), (3, 100, 1), (-1, 7, 3), (4, -1, 3)]


@pytest.mark.parametrize(("max_epochs", "max_steps", "accumulate"), HORIZONS)
# OneCycleLR over 4 epochs would have a warm-up phase shorter than one step: torch divides by 0
@pytest.mark.parametrize(("option", "interval"), [("cosine", "epoch"), ("cosine", "step"),
                                                  ("onecycle", "step")])
def test_the_schedule_spans_the_steps_the_trainer_takes(cfg_factory, tmp_path, option, interval,
                                                        max_epochs, max_steps, accumulate):
    callback = scheduler_callback(cfg_factory, option, f"callbacks.lr_schedule.interval={interval}",
                                  f"trainer.max_epochs={max_epochs}", f"trainer.max_steps={max_steps}",
                                  f"trainer.accumulate_grad_batches={accumulate}")
    probe = StepLRs()
    trainer = tiny_trainer(tmp_path, max_epochs=max_epochs, max_steps=max_steps,
                           accumulate_grad_batches=accumulate, callbacks=[probe, callback])
    trainer.fit(tiny_model(lr=0.1), datamodule=tiny_datamodule(batch_size=16))
    epochs = probe.seen[-1][1] + 1
    steps_per_epoch = [sum(epoch == e for _, epoch, _ in probe.seen) for e in range(epochs)]
    taken = len(probe.seen) if interval == "step" else epochs
    assert getattr(callback.scheduler, callback.horizon_arg) == taken  # T_max, total_steps
    got = [lr for _, _, lr in probe.seen]
    assert got == pytest.approx(planned_lrs(callback, steps_per_epoch), rel=1e-12, abs=1e-15)
    assert min(got) > 0  # no step trains at the LR 0 that cosine reaches one interval after the end


def fit_digits(cfg_factory, tmp_path, option: str, horizon: str, ckpt_path=None) -> StepLRs:
    """Train digits with ``scheduler=option`` to ``horizon`` (4 optimizer steps an epoch),
    from ``ckpt_path`` if given, as ``python train.py resume=...`` does."""
    cfg = cfg_factory("data=digits", "net=mlp", f"scheduler={option}", *horizon.split(),
                      "trainer.limit_train_batches=4", "trainer.num_sanity_val_steps=0",
                      "callbacks.progress_bar=null", "logger=none")
    datamodule, model, trainer = build(cfg)
    probe = StepLRs()
    trainer.callbacks.append(probe)
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    return probe


# (first horizon, raised horizon, the intervals of each for an epoch and a step schedule)
RAISES = {"max_epochs": ("trainer.max_epochs=2", "trainer.max_epochs=4", (2, 4), (8, 16)),
          "max_steps": ("trainer.max_epochs=-1 trainer.max_steps=8",
                        "trainer.max_epochs=-1 trainer.max_steps=16", (2, 4), (8, 16))}


@pytest.mark.parametrize(("option", "raised"), [*((o, "max_epochs") for o in SCHEDULERS),
                                                ("cosine", "max_steps"), ("onecycle", "max_steps")])
def test_a_resume_that_raises_the_horizon_replans_the_schedule(cfg_factory, tmp_path, caplog, option,
                                                               raised):
    first_horizon, horizon, epoch_intervals, step_intervals = RAISES[raised]
    first = fit_digits(cfg_factory, tmp_path, option, first_horizon)
    (tmp_path / "checkpoints" / "last.ckpt").rename(tmp_path / "first.ckpt")  # what resume= reads
    with caplog.at_level(logging.INFO, logger="trainlab.callbacks.lr_schedule"):
        resumed = fit_digits(cfg_factory, tmp_path, option, horizon, ckpt_path=tmp_path / "first.ckpt")
    straight = fit_digits(cfg_factory, tmp_path, option, horizon)
    assert [s for s, _, _ in first.seen + resumed.seen] == [s for s, _, _ in straight.seen] == \
        list(range(16))
    # each step after the resume gets the LR of the schedule planned for the raised horizon
    assert resumed.seen == straight.seen[len(first.seen):]
    callback = scheduler_callback(cfg_factory, option)
    if callback is not None and not callback.plateau:  # plateau's LR follows val/loss, not the length
        old, new = epoch_intervals if callback.interval == "epoch" else step_intervals
        assert f"LR schedule re-planned for the run's new horizon: {old} -> {new} {callback.interval}s" \
            in caplog.text


def test_results_and_metrics_hold_the_lr_each_step_used(cfg_factory, tmp_path):
    cfg = cfg_factory("data=digits", "net=mlp", "scheduler=onecycle", "trainer.max_epochs=2",
                      "trainer.limit_train_batches=5", "trainer.log_every_n_steps=3",
                      "callbacks.progress_bar=null", "logger=csv")
    datamodule, model, trainer = build(cfg)
    probe = StepLRs()
    trainer.callbacks.append(probe)
    results = fit_and_test(cfg, datamodule, model, trainer, None)
    used = [lr for _, _, lr in probe.seen]
    assert len(used) == 10 and len(set(used)) == 10  # OneCycleLR: a new LR every step
    assert results["train/lr"] == pytest.approx(used[-1], rel=1e-6)  # the last step's
    with open(Path(trainer.logger.log_dir) / "metrics.csv") as metrics:
        logged = [(int(row["step"]), float(row["train/lr"])) for row in csv.DictReader(metrics)
                  if row.get("train/lr")]
    # every third step's, and each epoch's last step's (results.json's value)
    assert [step for step, _ in logged] == [2, 4, 5, 8, 9]
    assert all(lr == pytest.approx(used[step], rel=1e-6) for step, lr in logged)
