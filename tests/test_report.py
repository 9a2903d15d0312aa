"""Tests for the sweep report (trainlab.report), its Hydra callback and scripts/report.py."""

from __future__ import annotations

import csv
import json
import logging
import math
import re
import struct
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from omegaconf import OmegaConf

from trainlab.hydra_callbacks import SweepReport
from trainlab.report import configured_report, load_trials, summarize, write_report
from trainlab.report.load import Trials, parse_overrides, read_curve
from trainlab.report.render import format_markdown, plot_metric, short_labels, y_scale
from trainlab.report.stats import (
    default_metrics,
    failed_trials,
    mean_curves,
    option_labels,
    option_settings,
)
from trainlab.rundir import trial_dirs

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
L1, L2 = "regularization=l1", "regularization=l2"

# (job, regularization, seed, test/acc, test/loss, wall_s); seeds interleaved as a sweep
# with seed as the outer axis would run them, so option order is l1 then l2.
OK_TRIALS = [
    ("0", "l1", 1, 0.90, 0.30, 10.0),
    ("1", "l2", 1, 0.80, 0.50, 20.0),
    ("2", "l1", 2, 0.92, 0.25, 12.0),
    ("3", "l2", 2, 0.85, 0.40, 20.0),
    ("4", "l1", 3, 0.94, 0.20, 14.0),
    ("5", "l2", 3, 0.90, 0.30, 20.0),
]
EXPECTED_HEADER = [
    "job", "regularization", "seed", "trainer.max_epochs", "status", "error",
    "test/acc", "test/loss", "val/acc", "gap/acc", "wall_s", "epoch",
    "weights/l1", "grad/first_layer",
]  # fmt: skip


def val_acc(seed: int, epoch: int) -> float:
    """Validation accuracy written into the fake metrics.csv files."""
    return 0.5 + 0.1 * epoch + 0.01 * seed


def make_job(sweep: Path, job: str, overrides: list[str], results: dict | None) -> Path:
    """One fake job dir; ``results=None`` leaves out results.json."""
    job_dir = sweep / job
    (job_dir / ".hydra").mkdir(parents=True)
    (job_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (job_dir / ".hydra" / "config.yaml").write_text("seed: 0\n")
    if results is not None:
        (job_dir / "results.json").write_text(json.dumps(results))
    return job_dir


def write_metrics_csv(job_dir: Path, seed: int, epochs: int = 3, offset: float = 0.0) -> None:
    """Sparse CSVLogger-style rows: train rows and val rows interleaved."""
    lines = ["epoch,step,train/loss,train/acc,val/loss,val/acc"]
    for epoch in range(epochs):
        step = 10 * epoch + 9
        lines.append(f"{epoch},{step},0.5,0.8,,")
        lines.append(f"{epoch},{step},,,0.4,{val_acc(seed, epoch) + offset}")
    (job_dir / "metrics.csv").write_text("\n".join(lines) + "\n")


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """2 options x 3 ok seeds, one failed, one crashed (no results.json), one diverged."""
    sweep_dir = tmp_path / "multirun" / "2026-11-22_10-00-00"
    sweep_dir.mkdir(parents=True)
    (sweep_dir / "multirun.yaml").write_text("hydra: {}\n")
    for job, reg, seed, acc, loss, wall in OK_TRIALS:
        overrides = [f"regularization={reg}", f"seed={seed}", "trainer.max_epochs=3"]
        results = {
            "test/acc": acc,
            "test/loss": loss,
            "val/acc": acc + 0.01,
            "gap/acc": 0.05,
            "wall_s": wall,
            "epoch": 3,
            "seed": seed,
            "weights/l1": 100.0 + seed,
            "grad/first_layer": 0.1 * seed,
            "status": "ok",
        }
        write_metrics_csv(make_job(sweep_dir, job, overrides, results), seed)
    make_job(
        sweep_dir,
        "6",
        ["regularization=l2", "seed=4", "trainer.max_epochs=3"],
        {"status": "failed", "error": "CUDA out of memory | at step 3\nTraceback", "seed": 4},
    )
    make_job(sweep_dir, "7", ["regularization=l1", "seed=4", "trainer.max_epochs=3"], None)
    diverged = make_job(
        sweep_dir,
        "10",
        ["regularization=l1", "seed=5", "trainer.max_epochs=3"],
        {"test/acc": 0.1, "test/loss": float("nan"), "seed": 5, "status": "diverged",
         "error": "loss is nan"},
    )  # fmt: skip
    write_metrics_csv(diverged, 5, offset=-0.5)
    return sweep_dir


def head(trials: Trials, n: int) -> Trials:
    """The first ``n`` trials."""
    return Trials(trials.info.iloc[:n], trials.overrides.iloc[:n], trials.results.iloc[:n])


def labels_of(trials: Trials, option_keys: list[str] | None = None) -> list[str]:
    return option_labels(trials, option_keys).tolist()


def md_rows(markdown: str) -> list[list[str]]:
    """The cells of every markdown table row (separator rows left out); ``\\|`` stays in a cell."""
    return [
        [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        for line in markdown.splitlines()
        if line.startswith("|") and not re.fullmatch(r"[|:\- ]+", line)
    ]


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the PNG's IHDR chunk, after checking the magic bytes."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    return struct.unpack(">II", data[16:24])


def test_parse_overrides_strips_hydra_prefixes() -> None:
    parsed = parse_overrides(["regularization=l1", "+trainer.foo=a=b", "++seed=2", "~callbacks.x"])
    assert parsed == {"regularization": "l1", "trainer.foo": "a=b", "seed": "2", "callbacks.x": ""}


def test_summarize_std_is_sample_std(tmp_path: Path) -> None:
    """ddof=1 over the seeds; one seed gives a mean and no spread, none gives neither."""
    for job, (opt, acc) in enumerate([("a", 1.0), ("a", 2.0), ("a", 3.0), ("a", 4.0), ("b", 0.7)]):
        make_job(tmp_path, str(job), [f"opt={opt}", f"seed={job}"], {"test/acc": acc})
    make_job(tmp_path, "5", ["opt=c", "seed=5"], {"status": "failed", "test/acc": 9.0})
    stats = summarize(load_trials(tmp_path), metrics=["test/acc"])["test/acc"]
    assert stats.loc["opt=a"].tolist() == pytest.approx([2.5, math.sqrt(5 / 3), 4])
    assert stats.at["opt=b", "mean"] == 0.7 and math.isnan(stats.at["opt=b", "std"])
    assert stats.at["opt=c", "count"] == 0 and math.isnan(stats.at["opt=c", "mean"])


def test_load_trials_reads_status_and_numeric_results(sweep: Path) -> None:
    trials = load_trials(sweep)
    # Natural order: "10" after "7"; the sweep dir's own multirun.yaml is no trial.
    assert list(trials.info.index) == ["0", "1", "2", "3", "4", "5", "6", "7", "10"]
    assert trials.info["status"].tolist() == ["ok"] * 6 + ["failed", "failed", "diverged"]
    assert trials.info.at["7", "error"] == "no results.json"
    assert trials.results.loc["7"].isna().all()
    assert trials.results.loc["6"].dropna().to_dict() == {"seed": 4}  # status, error: not results
    assert trials.overrides.loc["0"].to_dict() == {
        "regularization": "l1", "seed": "1", "trainer.max_epochs": "3",
    }  # fmt: skip
    assert trials.results.at["0", "test/acc"] == 0.90
    assert trials.info["seed"].tolist() == ["1", "1", "2", "2", "3", "3", "4", "4", "5"]
    assert trials.info.at["0", "path"] == sweep / "0"
    assert trial_dirs(sweep)[-1] == sweep / "10"


def test_unreadable_results_json_is_a_failed_trial(tmp_path: Path) -> None:
    job = make_job(tmp_path, "0", ["seed=1"], None)
    (job / "results.json").write_text("{not json")
    make_job(tmp_path, "1", ["seed=2"], [0.9])
    info = load_trials(tmp_path).info
    assert info["status"].tolist() == ["failed", "failed"]
    assert info.at["0", "error"].startswith("unreadable results.json")
    assert info.at["1", "error"].startswith(f"unreadable results.json: {job.parent / '1' / 'results.json'} "
                                            "is not a JSON object")


def test_seed_falls_back_to_the_results(tmp_path: Path) -> None:
    for job, seed in enumerate([3, 2.0, 2.5]):
        make_job(tmp_path, str(job), ["lr=0.1"], {"test/acc": 0.9, "seed": seed})
    assert load_trials(tmp_path).info["seed"].tolist() == ["3", "2", "2.5"]


def test_default_metrics_adds_weights_and_grad_keys(sweep: Path) -> None:
    assert default_metrics(load_trials(sweep).results) == [
        "test/acc", "test/loss", "val/acc", "gap/acc", "wall_s", "weights/l1", "grad/first_layer",
    ]  # fmt: skip
    assert default_metrics(load_trials(sweep).results, optimized="wall_s")[:3] == [
        "wall_s", "test/acc", "test/loss"]  # a search's metric first, once


def test_option_labels_drop_seed_and_constant_keys(sweep: Path) -> None:
    trials = load_trials(sweep)
    assert labels_of(trials) == [L1, L2] * 3 + [L2, L1, L1]
    explicit = labels_of(trials, option_keys=["regularization", "trainer.max_epochs"])
    assert explicit[0] == "regularization=l1,trainer.max_epochs=3"
    # A sweep over seeds only has a single option.
    assert labels_of(head(trials, 1)) == ["default"]


def test_summarize_means_and_stds_over_ok_seeds(sweep: Path) -> None:
    trials = load_trials(sweep)
    stats = summarize(trials)
    assert list(stats.index) == [L1, L2]
    # The diverged (test/acc 0.1) and crashed trials of l1 are counted but not averaged.
    none_stopped = {"pruned": 0, "interrupted": 0}
    assert stats.loc[L1, "n"].to_dict() == {"ok": 3, "diverged": 1, "failed": 1, **none_stopped}
    assert stats.loc[L2, "n"].to_dict() == {"ok": 3, "diverged": 0, "failed": 1, **none_stopped}
    ok = (trials.info["status"] == "ok") & (pd.Series(labels_of(trials), trials.info.index) == L1)
    assert trials.info["seed"][ok].tolist() == ["1", "2", "3"]
    assert trials.results["test/acc"][ok].tolist() == [0.90, 0.92, 0.94]
    assert option_settings(trials).groupby(labels_of(trials)).first().loc[L1].to_dict() == {
        "regularization": "l1"}
    expected = {
        (L1, "test/acc"): (0.92, 0.02), (L2, "test/acc"): (0.85, 0.05),
        (L1, "test/loss"): (0.25, 0.05), (L2, "test/loss"): (0.40, 0.10),
        (L1, "wall_s"): (12.0, 2.0), (L2, "wall_s"): (20.0, 0.0),
        (L1, "weights/l1"): (102.0, 1.0), (L1, "grad/first_layer"): (0.2, 0.1),
    }  # fmt: skip
    for (option, metric), (mean, std) in expected.items():
        assert stats.loc[option, metric].tolist() == pytest.approx([mean, std, 3]), (option, metric)


def test_summarize_single_seed_has_mean_only(sweep: Path) -> None:
    stats = summarize(head(load_trials(sweep), 1), metrics=["test/acc", "missing"])
    assert list(stats.index) == ["default"] and stats.at["default", ("n", "ok")] == 1
    assert stats.at["default", ("test/acc", "mean")] == pytest.approx(0.90)
    assert math.isnan(stats.at["default", ("test/acc", "std")])
    assert stats.at["default", ("missing", "count")] == 0
    assert math.isnan(stats.at["default", ("missing", "mean")])
    markdown = format_markdown(stats, failed_trials(head(load_trials(sweep), 1)),
                               ["test/acc", "missing"])
    assert md_rows(markdown)[1] == ["default", "1", "0.9", "-"]
    assert "±" not in markdown.split("\n", 3)[3]  # no spread in the table for one seed


def test_failed_trials_lists_non_ok(sweep: Path) -> None:
    trials = load_trials(sweep)
    failed = failed_trials(trials)
    assert failed[["job", "option", "seed", "status"]].values.tolist() == [
        ["6", L2, "4", "failed"],
        ["7", L1, "4", "failed"],
        ["10", L1, "5", "diverged"],
    ]
    assert failed["error"].tolist() == [
        "CUDA out of memory | at step 3\nTraceback", "no results.json", "loss is nan"]


def test_write_report_summary_csv(sweep: Path) -> None:
    files = write_report(sweep)
    assert files["summary.csv"].read_bytes().count(b"\r\n") == 1 + 9  # CRLF, as the csv module
    with files["summary.csv"].open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == EXPECTED_HEADER
    assert len(rows) == 1 + 9
    assert all(len(row) == len(EXPECTED_HEADER) for row in rows)
    first = dict(zip(rows[0], rows[1], strict=True))
    assert first["job"] == "0" and first["regularization"] == "l1" and first["seed"] == "1"
    assert first["status"] == "ok" and first["error"] == ""
    assert float(first["test/acc"]) == 0.90 and float(first["weights/l1"]) == 101.0
    assert first["epoch"] == "3"  # an int in results.json stays one, though trial 7 has none
    crashed = dict(zip(rows[0], rows[8], strict=True))
    assert crashed["job"] == "7" and crashed["status"] == "failed"
    assert crashed["error"] == "no results.json" and crashed["test/acc"] == ""
    failed = dict(zip(rows[0], rows[7], strict=True))
    assert failed["error"] == "CUDA out of memory | at step 3\nTraceback"  # whole, in the csv


def test_write_report_markdown(sweep: Path) -> None:
    markdown = write_report(sweep)["summary.md"].read_text()
    assert markdown.startswith("# Sweep 2026-11-22_10-00-00\n")
    table, failed = markdown.split("## Failed or diverged trials")
    assert "9 trials: 6 ok, 1 diverged, 2 failed; 2 options" in table
    header, l1, l2 = md_rows(table)
    assert header == ["option", "n", "not ok", "test/acc", "test/loss", "val/acc", "gap/acc",
                      "wall_s", "weights/l1", "grad/first_layer"]  # fmt: skip
    assert l1 == [L1, "3", "1 diverged, 1 failed", "0.92 ± 0.02", "0.25 ± 0.05", "0.93 ± 0.02",
                  "0.05 ± 0", "12 ± 2", "102 ± 1", "0.2 ± 0.1"]  # fmt: skip
    assert l2[:5] == [L2, "3", "1 failed", "0.85 ± 0.05", "0.4 ± 0.1"]
    # Numbers right-aligned, text left-aligned.
    assert re.search(r"\n\|:-+\|-+:\|:-+\|(-+:\|){7}\n", table)
    assert "nan" not in table  # the diverged trial (test/acc 0.1, test/loss nan) stays out
    assert md_rows(failed) == [
        ["job", "option", "seed", "status", "error"],
        ["6", L2, "4", "failed", "CUDA out of memory \\| at step 3 Traceback"],
        ["7", L1, "4", "failed", "no results.json"],
        ["10", L1, "5", "diverged", "loss is nan"],
    ]


def test_markdown_truncates_long_errors(tmp_path: Path) -> None:
    make_job(tmp_path, "0", ["seed=1"], {"status": "failed", "error": "x" * 500})
    markdown = write_report(tmp_path)["summary.md"].read_text()
    assert md_rows(markdown.split("## Failed")[1])[1][-1] == "x" * 197 + "..."


def test_markdown_has_no_not_ok_column_when_all_ok(sweep: Path) -> None:
    trials = head(load_trials(sweep), 6)
    failed = failed_trials(trials)
    markdown = format_markdown(summarize(trials), failed, ["test/acc"])
    assert "6 trials: 6 ok, 0 diverged, 0 failed; 2 options" in markdown
    assert "not ok" not in markdown
    assert md_rows(markdown) == [["option", "n", "test/acc"], [L1, "3", "0.92 ± 0.02"],
                                 [L2, "3", "0.85 ± 0.05"]]  # fmt: skip
    assert markdown.endswith("## Failed or diverged trials\n\nNone.\n")


def test_markdown_std_has_two_significant_digits(tmp_path: Path) -> None:
    for job, acc in enumerate([0.9489, 0.9533, 0.9556]):
        make_job(tmp_path, str(job), [f"seed={job}"], {"test/acc": acc})
    trials = load_trials(tmp_path)
    markdown = format_markdown(summarize(trials), failed_trials(trials), ["test/acc"])
    assert md_rows(markdown)[1] == ["default", "3", "0.9526 ± 0.0034"]


def test_diverged_trial_without_message_says_where_it_stopped(tmp_path: Path) -> None:
    make_job(tmp_path, "0", ["grad_clip=none", "seed=1"],
             {"status": "diverged", "epoch": 2, "global_step": 27, "seed": 1})
    make_job(tmp_path, "1", ["grad_clip=norm", "seed=1"],
             {"status": "ok", "test/acc": 0.9, "seed": 1})  # fmt: skip
    files = write_report(tmp_path, metrics=["test/acc"])
    with files["summary.csv"].open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows[0]["error"] == "non-finite loss after 27 optimizer steps"
    table, failed = files["summary.md"].read_text().split("## Failed or diverged trials")
    assert md_rows(table)[1:] == [["grad_clip=none", "0", "1 diverged", "-"],
                                  ["grad_clip=norm", "1", "", "0.9"]]  # fmt: skip
    assert md_rows(failed)[1] == ["0", "grad_clip=none", "1", "diverged",
                                  "non-finite loss after 27 optimizer steps"]  # fmt: skip


def test_pruned_and_interrupted_trials_count_apart_and_no_metric_is_needed(tmp_path: Path) -> None:
    make_job(tmp_path, "0", ["a=1", "seed=1"], None)
    make_job(tmp_path, "1", ["a=2", "seed=1"], {"status": "interrupted", "error": "SIGTERM"})
    make_job(tmp_path, "2", ["a=3", "seed=1"], {"status": "pruned"})
    make_job(tmp_path, "3", ["a=4", "seed=1"], {"status": "testing"})  # killed while testing
    make_job(tmp_path, "4", ["a=5", "seed=1"], {"status": "odd"})
    files = write_report(tmp_path)
    assert sorted(files) == ["summary.csv", "summary.md"]  # nothing to plot
    markdown = files["summary.md"].read_text()
    assert "5 trials: 0 ok, 0 diverged, 2 failed, 1 pruned, 2 interrupted; 5 options" in markdown
    assert md_rows(markdown)[:6] == [["option", "n", "not ok"], ["a=1", "0", "1 failed"],
                                     ["a=2", "0", "1 interrupted"], ["a=3", "0", "1 pruned"],
                                     ["a=4", "0", "1 interrupted"], ["a=5", "0", "1 failed"]]  # fmt: skip
    assert md_rows(markdown)[-4] == ["1", "a=2", "1", "interrupted", "SIGTERM"]


def test_the_metric_a_search_optimizes_comes_first_and_is_named(tmp_path: Path) -> None:
    for job, acc in enumerate((0.8, 0.9)):
        make_job(tmp_path, str(job), [f"a={job}", "seed=1"], {"test/acc": acc, "val/acc": acc + 0.01})
    (tmp_path / "multirun.yaml").write_text("optimized_metric: val/acc\nhydra: {}\n")
    markdown = write_report(tmp_path)["summary.md"].read_text()
    assert "The search optimizes `val/acc`." in markdown
    assert md_rows(markdown)[0] == ["option", "n", "val/acc", "test/acc"]


def test_short_labels_drop_keys_shared_by_every_option() -> None:
    settings = [{"model.net.activation": "ReLU", "init": "default"},
                {"model.net.activation": "Sigmoid", "init": "normal"}]  # fmt: skip
    assert short_labels(settings) == (["ReLU\ndefault", "Sigmoid\nnormal"],
                                      "model.net.activation / init")  # fmt: skip
    mixed = [{"optimizer": "sgd"}, {"optimizer": "adam", "model.optimizer.lr": "0.1"}]
    assert short_labels(mixed) == (["optimizer=sgd", "optimizer=adam\nmodel.optimizer.lr=0.1"], "")
    assert short_labels([{}]) == (["default"], "")


def test_option_settings_keep_dict_valued_overrides_whole(tmp_path: Path) -> None:
    for job, reg in enumerate(["{}", "{l1:0.001,l2:0.002}"]):
        make_job(tmp_path, str(job), [f"model.regularization={reg}", "seed=1"],
                 {"status": "ok", "test/acc": 0.9})  # fmt: skip
    trials = load_trials(tmp_path)
    assert option_settings(trials).to_dict("records") == [
        {"model.regularization": "{}"}, {"model.regularization": "{l1:0.001,l2:0.002}"}]
    assert labels_of(trials)[1] == "model.regularization={l1:0.001,l2:0.002}"


def test_options_set_by_only_some_trials(tmp_path: Path) -> None:
    make_job(tmp_path, "0", ["optimizer=sgd", "seed=1"], {"test/acc": 0.8})
    make_job(tmp_path, "1", ["optimizer=adam", "+model.optimizer.lr=0.1", "seed=1"],
             {"test/acc": 0.9})  # fmt: skip
    assert labels_of(load_trials(tmp_path)) == ["optimizer=sgd",
                                                "optimizer=adam,model.optimizer.lr=0.1"]


def grad_sweep(tmp_path: Path, values: dict[str, list[float]]) -> tuple[Any, Any, Any]:
    """plot_metric's stats, points and settings for a sweep over ``init`` with these
    ``grad/first_layer`` values per option."""
    for init, grads in values.items():
        for seed, grad in enumerate(grads):
            make_job(tmp_path, f"{init}{seed}", [f"init={init}", f"seed={seed}"],
                     {"grad/first_layer": grad})  # fmt: skip
    trials = load_trials(tmp_path)
    settings = option_settings(trials)
    labels = option_labels(trials)
    points = trials.results["grad/first_layer"].astype(float).set_axis(labels)
    return summarize(trials, labels=labels), points, settings.groupby(labels, sort=False).first()


def test_plot_uses_log_axis_for_values_spanning_decades(tmp_path: Path) -> None:
    stats, points, settings = grad_sweep(tmp_path / "a", {"normal": [1e-10, 1.1e-10],
                                                          "xavier": [1e-1, 1.1e-1]})
    assert y_scale(points) == ("log", {})
    assert plot_metric(stats, points, settings, tmp_path / "grad.png")
    assert png_size(tmp_path / "grad.png") == (600, 350)
    # A dead network (a gradient of exactly 0): symlog, no error.
    stats, points, settings = grad_sweep(tmp_path / "b", {"normal": [1e-10, 1.1e-10, 0.0],
                                                          "xavier": [1e-1, 1.1e-1]})
    assert y_scale(points) == ("symlog", {"linthresh": 1e-10})
    assert plot_metric(stats, points, settings, tmp_path / "dead.png")


def test_plot_keeps_an_option_whose_trials_all_diverged(tmp_path: Path) -> None:
    make_job(tmp_path, "0", ["grad_clip=none", "seed=1"], {"status": "diverged", "seed": 1})
    make_job(tmp_path, "1", ["grad_clip=norm", "seed=1"], {"status": "ok", "test/acc": 0.9})
    files = write_report(tmp_path)
    stats = summarize(load_trials(tmp_path))
    assert stats["n"][["ok", "diverged"]].to_dict("index") == {
        "grad_clip=none": {"ok": 0, "diverged": 1}, "grad_clip=norm": {"ok": 1, "diverged": 0}}
    assert png_size(files["plot_test_acc.png"]) == (600, 350)
    assert "plot_test_loss.png" not in files  # no option has it
    empty = pd.Series([float("nan")], index=["grad_clip=norm"], name="test/loss")
    assert not plot_metric(stats, empty, pd.DataFrame(), tmp_path / "loss.png")


def test_y_scale() -> None:
    assert y_scale([1e-10, 0.5, 1.0]) == ("log", {})
    assert y_scale([0.0, 1e-9, 1.0]) == ("symlog", {"linthresh": 1e-9})
    assert y_scale([0.9, 0.95]) == ("linear", {})
    assert y_scale([-1.0, 1e-9, 1.0]) == ("linear", {})  # signed values: no log axis
    assert y_scale([0.0, 0.0]) == ("linear", {})


def test_read_and_mean_curves(sweep: Path) -> None:
    assert read_curve(sweep / "0").to_dict() == pytest.approx({0: 0.51, 1: 0.61, 2: 0.71})
    assert read_curve(sweep / "7").empty
    trials = load_trials(sweep)
    curves = mean_curves(trials)
    assert list(curves.columns) == [L1, L2]
    # Mean over seeds 1, 2, 3 adds 0.02; the diverged trial's curve (-0.5) is left out.
    assert list(curves.index) == [0, 1, 2]
    for option in (L1, L2):
        assert curves[option].tolist() == pytest.approx([0.52, 0.62, 0.72])


def test_mean_curves_average_the_trials_that_logged_each_epoch(tmp_path: Path) -> None:
    write_metrics_csv(make_job(tmp_path, "0", ["seed=1"], {"test/acc": 0.9}), seed=1, epochs=3)
    write_metrics_csv(make_job(tmp_path, "1", ["seed=2"], {"test/acc": 0.9}), seed=2, epochs=2)
    make_job(tmp_path, "2", ["seed=3"], {"test/acc": 0.9})  # no metrics.csv
    trials = load_trials(tmp_path)
    curves = mean_curves(trials)
    assert curves["default"].to_dict() == pytest.approx({0: 0.515, 1: 0.615, 2: 0.71})


def test_read_curve_joins_the_csvlogger_attempts(tmp_path: Path) -> None:
    """A resumed run: version_1 logs epoch 1 again (the last row wins) and epoch 2."""
    for version, (seed, epochs) in enumerate([(2, 2), (3, 3)]):
        nested = tmp_path / "csv" / f"version_{version}"
        nested.mkdir(parents=True)
        write_metrics_csv(nested, seed=seed, epochs=epochs)
    assert read_curve(tmp_path).to_dict() == pytest.approx({0: 0.53, 1: 0.63, 2: 0.73})
    (tmp_path / "csv" / "version_1" / "metrics.csv").unlink()
    assert read_curve(tmp_path).to_dict() == pytest.approx({0: 0.52, 1: 0.62})
    assert read_curve(tmp_path, "test/acc").empty  # no such column


def test_write_report_plots_are_small_pngs(sweep: Path) -> None:
    files = write_report(sweep)
    assert sorted(files) == [
        "curves.png", "curves_val_loss.png", "plot_gap_acc.png", "plot_test_acc.png",
        "plot_test_loss.png", "plot_val_acc.png", "plot_wall_s.png", "summary.csv", "summary.md",
    ]  # fmt: skip
    for name in ("plot_test_acc.png", "curves.png", "curves_val_loss.png"):
        assert files[name] == sweep / name
        assert png_size(files[name]) == (600, 350)  # 6 x 3.5 in at 100 dpi


def test_write_report_with_chosen_metrics(sweep: Path) -> None:
    files = write_report(sweep, metrics=["test/acc"])
    assert "plot_test_loss.png" not in files and "plot_test_acc.png" in files
    assert md_rows(files["summary.md"].read_text())[0] == ["option", "n", "not ok", "test/acc"]


def test_write_report_with_chosen_option_keys(sweep: Path) -> None:
    files = write_report(sweep, metrics=["test/acc"], option_keys=["trainer.max_epochs"])
    table = files["summary.md"].read_text().split("## Failed")[0]
    # One option of all six ok seeds: mean 0.885, sample std sqrt(0.01315 / 5) = 0.0513.
    assert md_rows(table)[1] == ["trainer.max_epochs=3", "6", "1 diverged, 2 failed", "0.885 ± 0.051"]


def test_write_report_rejects_empty_or_missing_dir(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no trials"):
        write_report(tmp_path)
    with pytest.raises(FileNotFoundError):
        write_report(tmp_path / "missing")


@pytest.mark.e2e
def test_script_regenerates_report(sweep: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "report.py"), str(sweep), "--metrics",
         "test/acc", "test/loss"],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    assert [L1, "3", "1 diverged, 1 failed", "0.92 ± 0.02", "0.25 ± 0.05"] in md_rows(result.stdout)
    for name in ("summary.csv", "summary.md", "plot_test_acc.png", "plot_test_loss.png"):
        assert (sweep / name).is_file()
    assert png_size(sweep / "curves.png") == (600, 350)
    assert not (sweep / "plot_wall_s.png").exists()


@pytest.mark.e2e
def test_script_reuses_the_metrics_the_sweep_chose(sweep: Path) -> None:
    (sweep / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {"callbacks": {"report": {
        "_target_": "trainlab.hydra_callbacks.SweepReport", "metrics": ["test/acc", "weights/l1"],
    }}}}))  # fmt: skip
    assert configured_report(sweep) == {"metrics": ["test/acc", "weights/l1"], "option_keys": None}
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "report.py"), str(sweep)],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    assert md_rows(result.stdout)[0] == ["option", "n", "not ok", "test/acc", "weights/l1"]
    assert (sweep / "plot_weights_l1.png").is_file()
    assert not (sweep / "plot_test_loss.png").exists()


def test_configured_report_without_multirun_yaml(tmp_path: Path) -> None:
    assert configured_report(tmp_path) == {"metrics": None, "option_keys": None}
    (tmp_path / "multirun.yaml").write_text("hydra: {callbacks: {report: {option_keys: [a, 1]}}}")
    assert configured_report(tmp_path) == {"metrics": None, "option_keys": ["a", "1"]}


@pytest.mark.e2e
def test_script_fails_cleanly_on_empty_dir(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "report.py"), str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1
    assert "no trials" in result.stderr


def test_sweep_report_callback_writes_files(
    sweep: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}})
    SweepReport(metrics=OmegaConf.create(["test/acc"])).on_multirun_end(config)
    assert (sweep / "summary.csv").is_file()
    assert png_size(sweep / "plot_test_acc.png") == (600, 350)
    assert not (sweep / "plot_test_loss.png").exists()
    assert str(sweep / "summary.md") in capsys.readouterr().out


@pytest.mark.parametrize("config", [{"hydra": {"sweep": {"dir": "EMPTY"}}}, {}])
def test_sweep_report_callback_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, config: dict
) -> None:
    if config:
        config["hydra"]["sweep"]["dir"] = str(tmp_path)
    with caplog.at_level(logging.WARNING, logger="trainlab.hydra_callbacks"):
        SweepReport().on_multirun_end(OmegaConf.create(config))
    assert "Sweep report not written" in caplog.text
    assert list(tmp_path.iterdir()) == []


@pytest.mark.e2e
def test_real_hydra_multirun_writes_report(tmp_path: Path) -> None:
    """End to end: the callback finds the sweep dir even when it uses ${now:...}."""
    (tmp_path / "config.yaml").write_text(
        textwrap.dedent(
            """
            seed: 0
            regularization: none
            hydra:
              callbacks:
                report:
                  _target_: trainlab.hydra_callbacks.SweepReport
            """
        )
    )
    (tmp_path / "app.py").write_text(
        textwrap.dedent(
            """
            import json
            from pathlib import Path

            import hydra
            from hydra.core.hydra_config import HydraConfig

            @hydra.main(version_base=None, config_path=".", config_name="config")
            def main(cfg):
                acc = {"l1": 0.9, "l2": 0.8}[cfg.regularization] + 0.01 * cfg.seed
                out = Path(HydraConfig.get().runtime.output_dir)
                results = {"test/acc": acc, "seed": cfg.seed, "status": "ok"}
                (out / "results.json").write_text(json.dumps(results))

            main()
            """
        )
    )
    sweep_root = tmp_path / "multirun"
    subprocess.run(
        [sys.executable, str(tmp_path / "app.py"), "-m", "regularization=l1,l2", "seed=1,2,3",
         f"hydra.sweep.dir={sweep_root}/${{now:%H-%M-%S-%f}}"],
        cwd=tmp_path, capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    (sweep_dir,) = sweep_root.iterdir()
    stats = summarize(load_trials(sweep_dir))
    assert stats.at[L1, ("test/acc", "mean")] == pytest.approx(0.92)
    assert stats.at[L2, ("test/acc", "std")] == pytest.approx(0.01)
    assert (sweep_dir / "summary.md").is_file()
    assert png_size(sweep_dir / "plot_test_acc.png") == (600, 350)
