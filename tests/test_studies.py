"""The studies (conf/experiment/study/*.yaml, and the full-scale tier study_full/*.yaml): every
arm of every sweep composes and builds, and a real sweep writes the report with one row per
trial, failed trials included."""

from __future__ import annotations

import csv
import itertools
import json
import math
from pathlib import Path

import pytest
import torch
from conftest import ROOT, compose_cfg, run_cli
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from trainlab.pipeline import build
from trainlab.report import load_trials, summarize
from trainlab.train import CONFIG_DIR

EXPERIMENT_DIR = ROOT / "conf" / "experiment"
TIERS = ("study", "study_full")  # study_full/base/ holds what its studies share, not studies
STUDIES = sorted(f"{tier}/{p.stem}" for tier in TIERS for p in (EXPERIMENT_DIR / tier).glob("*.yaml"))
REQUIRED = {"regularization", "dropout", "batchnorm", "init", "lr_decay", "grad_clip",
            "optimizers", "augmentation", "normalization", "precision"}
REQUIRED_FULL = {"lr_decay", "regularization", "dropout", "augmentation", "batchnorm",
                 "early_stopping", "weight_averaging"}
MIN_SEEDS = 3


def sweep_params(study: str) -> dict[str, list[str]]:
    """``hydra.sweeper.params`` of a study (``study/<name>``) as ``{override key: [value, ...]}``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[f"+experiment={study}"], return_hydra_config=True)
    GlobalHydra.instance().clear()
    parser = OverridesParser.create()
    params = {}
    for key, value in OmegaConf.to_container(cfg.hydra.sweeper.params).items():
        (override,) = parser.parse_overrides([f"{key}={value}"])
        params[override.get_key_element()] = list(override.sweep_string_iterator())
    return params


def arms(study: str) -> list[list[str]]:
    """Every combination of the study's swept values except the seed (first seed only)."""
    params = sweep_params(study)
    seeds = params.pop("seed")
    grid = itertools.product(*([f"{k}={v}" for v in values] for k, values in params.items()))
    return [[f"+experiment={study}", *combo, f"seed={seeds[0]}"] for combo in grid]


def test_every_required_study_exists():
    for tier, required in (("study", REQUIRED), ("study_full", REQUIRED_FULL)):
        missing = {f"{tier}/{name}" for name in required} - set(STUDIES)
        assert not missing, f"missing: {sorted(missing)}"


@pytest.mark.parametrize("study", STUDIES)
def test_study_is_a_global_sweep_over_seeds(study):
    text = (EXPERIMENT_DIR / f"{study}.yaml").read_text()
    assert text.startswith("# @package _global_\n")
    assert f"python train.py -m +experiment={study}" in text  # the command, documented
    params = sweep_params(study)
    assert len(params.pop("seed")) >= MIN_SEEDS
    assert params and all(len(values) >= 2 for values in params.values()), params


@pytest.mark.parametrize("study", STUDIES)
def test_every_arm_composes_and_builds(study, tmp_path):
    for overrides in arms(study):
        cfg = compose_cfg(overrides, tmp_path)
        assert cfg.tag == study.replace("/", "_")
        datamodule, model, trainer = build(cfg)
        checkpoint = trainer.checkpoint_callback  # studies test the final weights: none picked
        assert checkpoint is None or checkpoint.monitor is None  # by a validation metric
    GlobalHydra.instance().clear()


def test_arms_really_differ(tmp_path):
    """The dict-valued and group sweeps reach the objects they are meant to change."""
    reg = {o[1]: o for o in arms("study/regularization")}
    decoupled = "model={optimizer:{weight_decay:4.0,decoupled_weight_decay:True}}"
    _, model, _ = build(compose_cfg(reg[decoupled], tmp_path))
    optimizer = model.configure_optimizers()
    assert (optimizer.defaults["weight_decay"], optimizer.defaults["decoupled_weight_decay"]) == (4.0, True)
    assert optimizer.param_groups[0]["weight_decay"] == 4.0 and model.regularization.l1 == 0.0
    _, model, _ = build(compose_cfg(reg["model={}"], tmp_path))
    optimizer = model.configure_optimizers()
    assert not model.regularization.has_penalty
    assert {g["weight_decay"] for g in optimizer.param_groups} == {0.0}
    init = {tuple(o[1:3]): o for o in arms("study/init")}
    _, model, _ = build(compose_cfg(init[("model.net.activation=ReLU", "init=normal_std1")],
                                    tmp_path))
    hidden = model.net.layers[3]  # Flatten, Linear 64->64, ReLU, Linear 64->64, ...
    assert isinstance(model.net.layers[2], torch.nn.ReLU)
    assert hidden.weight.std().item() == pytest.approx(1.0, abs=0.05)  # N(0, 1), not N(0, .01)
    assert torch.all(hidden.bias == 0.01)
    _, model, _ = build(compose_cfg(init[("model.net.activation=Sigmoid", "init=default")],
                                    tmp_path))
    assert isinstance(model.net.layers[2], torch.nn.Sigmoid)
    bound = 1 / 64**0.5  # PyTorch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert model.net.layers[3].weight.abs().max().item() <= bound
    GlobalHydra.instance().clear()


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def md_rows(markdown: str) -> list[list[str]]:
    """The cells of every markdown table row, separator rows left out."""
    return [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in markdown.splitlines()
            if line.startswith("|") and not set(line) <= set("|:- ")]


@pytest.mark.e2e
def test_study_sweep_writes_the_report(tmp_path):
    """2 options x 2 seeds of the regularization study, 1 epoch: one row per trial and the
    means in summary.md are those of the trials' results.json."""
    sweep = tmp_path / "sweep"
    proc = run_cli("-m", "+experiment=study/regularization", "model={},{regularization:{l1:1e-3}}",
                   "seed=1,2", "trainer.max_epochs=1", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = read_csv(sweep / "summary.csv")
    l1_arm = "{regularization:{l1:0.001}}"
    assert [(r["model"], r["seed"], r["status"]) for r in rows] == [
        ("{}", "1", "ok"), ("{}", "2", "ok"), (l1_arm, "1", "ok"), (l1_arm, "2", "ok"),
    ]  # fmt: skip
    results = [json.loads((sweep / str(job) / "results.json").read_text()) for job in range(4)]
    assert all(r["status"] == "ok" and r["epoch"] == 1 for r in results)
    none, l1 = (row for _, row in summarize(load_trials(sweep)).iterrows())
    assert none.name == "model={}" and none["n", "ok"] == 2
    mean_acc = (results[0]["test/acc"] + results[1]["test/acc"]) / 2
    assert none["test/acc", "mean"] == pytest.approx(mean_acc)
    assert l1["weights/l1", "std"] == pytest.approx(
        abs(results[2]["weights/l1"] - results[3]["weights/l1"]) / math.sqrt(2))
    # the L1 penalty is on: it is logged, and only in the L1 arm
    assert "train/reg_loss" in results[2] and "train/reg_loss" not in results[0]
    markdown = (sweep / "summary.md").read_text()
    assert "4 trials: 4 ok, 0 diverged, 0 failed; 2 options" in markdown
    header, _, l1_row = md_rows(markdown)[:3]
    assert header[:7] == ["option", "n", "test/acc", "test/loss", "gap/acc", "weights/l1", "weights/l2"]
    assert l1_row[:2] == ["model={regularization:{l1:0.001}}", "2"]
    for plot in ("plot_test_acc.png", "plot_weights_sparsity.png", "curves.png", "curves_val_loss.png"):
        assert (sweep / plot).stat().st_size > 1000


@pytest.mark.e2e
def test_failing_trial_is_reported_and_the_sweep_goes_on(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli("-m", "+experiment=study/regularization", "model={}",
                   "model.net.dropout=0.2,1.5", "seed=1", "trainer.max_epochs=1",
                   f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    ok, bad = (json.loads((sweep / job / "results.json").read_text()) for job in ("0", "1"))
    assert ok["status"] == "ok" and 0 < ok["test/acc"] <= 1
    assert bad["status"] == "failed" and "dropout" in bad["error"]
    markdown = (sweep / "summary.md").read_text()
    assert "2 trials: 1 ok, 0 diverged, 1 failed; 2 options" in markdown
    table, failed_section = markdown.split("## Failed or diverged trials")
    assert md_rows(table)[1][:3] == ["model.net.dropout=0.2", "1", ""]
    assert md_rows(table)[2][:4] == ["model.net.dropout=1.5", "0", "1 failed", "-"]
    assert md_rows(failed_section)[1][:4] == ["1", "model.net.dropout=1.5", "1", "failed"]


def test_full_scale_lr_decay_arms_all_peak_at_the_recipes_lr(tmp_path):
    """The constant, cosine and OneCycle arms share one LR: OneCycle's peak is the optimizer's."""
    by_arm = {o[1]: o for o in arms("study_full/lr_decay")}
    peaks = {}
    for arm, overrides in by_arm.items():
        cfg = compose_cfg(overrides, tmp_path)
        schedule = cfg.callbacks.get("lr_schedule") or {"scheduler": {}}
        peaks[arm] = schedule["scheduler"].get("max_lr", cfg.model.optimizer.lr)
    GlobalHydra.instance().clear()
    assert peaks == {"scheduler=none": 0.1, "scheduler=cosine": 0.1, "scheduler=onecycle": 0.1}


@pytest.mark.e2e
def test_full_scale_trials_run_two_at_a_time_with_the_cores_split(tmp_path):
    """study_full sweeps run on joblib's two workers, each trial on half the cores."""
    from joblib import cpu_count

    sweep = tmp_path / "sweep"
    proc = run_cli("-m", "+experiment=study_full/dropout", "model.net.dropout=0.0,0.5", "seed=1",
                   "data=digits", "data.val_size=200", "trainer.max_epochs=1",
                   f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads((sweep / job / "results.json").read_text()) for job in ("0", "1")]
    threads = max(cpu_count() // 2, 1)
    assert [r["process/threads"] for r in results] == [f"{threads} (OMP_NUM_THREADS={threads})"] * 2
    assert all("trials share the cores" in r["process/openmp"] for r in results)
    assert md_rows((sweep / "summary.md").read_text())[1][:2] == ["model.net.dropout=0.0", "1"]


@pytest.mark.parametrize("study", [s for s in STUDIES if s.startswith("study_full/")])
def test_full_scale_study_also_runs_one_trial_at_a_time(study):
    """``hydra/launcher=basic`` (one by one, all cores per trial) composes: the studies leave
    the joblib launcher's own keys to conf/hydra/launcher/joblib.yaml."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[f"+experiment={study}", "hydra/launcher=basic"],
                      return_hydra_config=True)
        two = compose("train", overrides=[f"+experiment={study}"], return_hydra_config=True)
    GlobalHydra.instance().clear()
    assert cfg.hydra.launcher._target_.endswith("BasicLauncher")
    assert two.hydra.launcher._target_.endswith("JoblibLauncher") and two.hydra.launcher.n_jobs == 2
