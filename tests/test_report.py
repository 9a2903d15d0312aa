"""Tests for the sweep report (trainlab.report), its Hydra callback and scripts/report.py."""

from __future__ import annotations

import csv
import json
import logging
import math
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from trainlab.hydra_callbacks import SweepReport
from trainlab.report import (
    configured_report,
    default_metrics,
    failed_trials,
    format_markdown,
    load_trials,
    mean_curves,
    mean_std,
    option_labels,
    option_settings,
    parse_overrides,
    plot_metric,
    read_curve,
    short_labels,
    summarize,
    summary_table,
    write_report,
    y_scale,
)
from trainlab.rundir import trial_dirs

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

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


def stats_by_option(stats: list[dict]) -> dict[str, dict]:
    return {s["option"]: s for s in stats}


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the PNG's IHDR chunk, after checking the magic bytes."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    return struct.unpack(">II", data[16:24])


def test_parse_overrides_strips_hydra_prefixes() -> None:
    parsed = parse_overrides(["regularization=l1", "+trainer.foo=a=b", "++seed=2", "~callbacks.x"])
    assert parsed == {"regularization": "l1", "trainer.foo": "a=b", "seed": "2", "callbacks.x": ""}


def test_mean_std_is_sample_std() -> None:
    assert mean_std([1.0, 2.0, 3.0, 4.0]) == pytest.approx((2.5, math.sqrt(5 / 3)))
    mean, std = mean_std([0.7])
    assert mean == 0.7 and math.isnan(std)
    assert all(math.isnan(v) for v in mean_std([]))


def test_load_trials_reads_status_and_numeric_results(sweep: Path) -> None:
    trials = load_trials(sweep)
    # Natural order: "10" after "7"; the sweep dir's own multirun.yaml is no trial.
    assert [t["job"] for t in trials] == ["0", "1", "2", "3", "4", "5", "6", "7", "10"]
    assert [t["status"] for t in trials] == ["ok"] * 6 + ["failed", "failed", "diverged"]
    assert trials[7]["error"] == "no results.json" and trials[7]["results"] == {}
    assert trials[6]["results"] == {"seed": 4}  # status and error are not numeric results
    assert trials[0]["overrides"] == {
        "regularization": "l1", "seed": "1", "trainer.max_epochs": "3",
    }  # fmt: skip
    assert trials[0]["results"]["test/acc"] == 0.90
    assert trial_dirs(sweep)[-1] == sweep / "10"


def test_unreadable_results_json_is_a_failed_trial(tmp_path: Path) -> None:
    job = make_job(tmp_path, "0", ["seed=1"], None)
    (job / "results.json").write_text("{not json")
    (trial,) = load_trials(tmp_path)
    assert trial["status"] == "failed"
    assert trial["error"].startswith("unreadable results.json")


def test_default_metrics_adds_weights_and_grad_keys(sweep: Path) -> None:
    assert default_metrics(load_trials(sweep)) == [
        "test/acc", "test/loss", "gap/acc", "wall_s", "weights/l1", "grad/first_layer",
    ]  # fmt: skip


def test_option_labels_drop_seed_and_constant_keys(sweep: Path) -> None:
    trials = load_trials(sweep)
    labels = option_labels(trials)
    assert labels == ["regularization=l1", "regularization=l2"] * 3 + [
        "regularization=l2", "regularization=l1", "regularization=l1",
    ]  # fmt: skip
    explicit = option_labels(trials, option_keys=["regularization", "trainer.max_epochs"])
    assert explicit[0] == "regularization=l1,trainer.max_epochs=3"
    # A sweep over seeds only has a single option.
    assert option_labels(trials[:1]) == ["default"]


def test_summarize_means_and_stds_over_ok_seeds(sweep: Path) -> None:
    stats = summarize(load_trials(sweep))
    assert [s["option"] for s in stats] == ["regularization=l1", "regularization=l2"]
    l1, l2 = stats
    # The diverged (test/acc 0.1) and crashed trials of l1 are counted but not averaged.
    assert (l1["n"], l1["n_diverged"], l1["n_failed"], l1["seeds"]) == (3, 1, 1, ["1", "2", "3"])
    assert (l2["n"], l2["n_diverged"], l2["n_failed"], l2["seeds"]) == (3, 0, 1, ["1", "2", "3"])
    assert l1["settings"] == {"regularization": "l1"}
    assert l1["values"]["test/acc"] == [0.90, 0.92, 0.94]
    assert l1["mean"]["test/acc"] == pytest.approx(0.92)
    assert l1["std"]["test/acc"] == pytest.approx(0.02)
    assert l2["mean"]["test/acc"] == pytest.approx(0.85)
    assert l2["std"]["test/acc"] == pytest.approx(0.05)
    assert l1["mean"]["test/loss"] == pytest.approx(0.25)
    assert l1["std"]["test/loss"] == pytest.approx(0.05)
    assert l2["mean"]["test/loss"] == pytest.approx(0.40)
    assert l2["std"]["test/loss"] == pytest.approx(0.10)
    assert l1["mean"]["wall_s"] == pytest.approx(12.0)
    assert l1["std"]["wall_s"] == pytest.approx(2.0)
    assert l2["std"]["wall_s"] == pytest.approx(0.0)
    assert l1["mean"]["weights/l1"] == pytest.approx(102.0)
    assert l1["std"]["grad/first_layer"] == pytest.approx(0.1)


def test_summarize_single_seed_has_mean_only(sweep: Path) -> None:
    (only,) = summarize(load_trials(sweep)[:1], metrics=["test/acc", "missing"])
    assert only["option"] == "default" and only["n"] == 1
    assert only["mean"]["test/acc"] == pytest.approx(0.90)
    assert math.isnan(only["std"]["test/acc"])
    assert only["values"]["missing"] == [] and math.isnan(only["mean"]["missing"])
    markdown = format_markdown([only], [], ["test/acc", "missing"])
    assert "| default | 1 | 0.9 | - |" in markdown
    assert "±" not in markdown.split("\n", 3)[3]  # no spread in the table for one seed


def test_failed_trials_lists_non_ok(sweep: Path) -> None:
    failed = failed_trials(load_trials(sweep))
    assert [(f["job"], f["option"], f["seed"], f["status"]) for f in failed] == [
        ("6", "regularization=l2", "4", "failed"),
        ("7", "regularization=l1", "4", "failed"),
        ("10", "regularization=l1", "5", "diverged"),
    ]
    assert failed[1]["error"] == "no results.json"


def test_write_report_summary_csv(sweep: Path) -> None:
    files = write_report(sweep)
    with files["summary.csv"].open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == EXPECTED_HEADER
    assert len(rows) == 1 + 9
    assert all(len(row) == len(EXPECTED_HEADER) for row in rows)
    first = dict(zip(rows[0], rows[1], strict=True))
    assert first["job"] == "0" and first["regularization"] == "l1" and first["seed"] == "1"
    assert first["status"] == "ok" and first["error"] == ""
    assert float(first["test/acc"]) == 0.90 and float(first["weights/l1"]) == 101.0
    crashed = dict(zip(rows[0], rows[8], strict=True))
    assert crashed["job"] == "7" and crashed["status"] == "failed"
    assert crashed["error"] == "no results.json" and crashed["test/acc"] == ""


def test_write_report_markdown(sweep: Path) -> None:
    markdown = write_report(sweep)["summary.md"].read_text()
    table, failed = markdown.split("## Failed or diverged trials")
    assert "9 trials: 6 ok, 1 diverged, 2 failed; 2 options" in table
    assert (
        "| option | n | not ok | test/acc | test/loss | gap/acc | wall_s | weights/l1 "
        "| grad/first_layer |" in table
    )
    assert (
        "| regularization=l1 | 3 | 1 diverged, 1 failed | 0.92 ± 0.02 | 0.25 ± 0.05 | 0.05 ± 0 "
        "| 12 ± 2 |" in table
    )
    assert "| regularization=l2 | 3 | 1 failed | 0.85 ± 0.05 | 0.4 ± 0.1 |" in table
    assert "nan" not in table  # the diverged trial (test/acc 0.1, test/loss nan) stays out
    oom = "| 6 | regularization=l2 | 4 | failed | CUDA out of memory \\| at step 3 Traceback |"
    assert oom in failed
    assert "| 7 | regularization=l1 | 4 | failed | no results.json |" in failed
    assert "| 10 | regularization=l1 | 5 | diverged | loss is nan |" in failed


def test_markdown_has_no_not_ok_column_when_all_ok(sweep: Path) -> None:
    trials = load_trials(sweep)[:6]
    markdown = format_markdown(summarize(trials), failed_trials(trials), ["test/acc"])
    assert "6 trials: 6 ok, 0 diverged, 0 failed; 2 options" in markdown
    assert "| option | n | test/acc |" in markdown and "not ok" not in markdown
    assert "| regularization=l1 | 3 | 0.92 ± 0.02 |" in markdown


def test_markdown_std_has_two_significant_digits() -> None:
    stat = {"option": "default", "n": 3, "n_diverged": 0, "n_failed": 0,
            "values": {"test/acc": [0.9489, 0.9533, 0.9556]},
            "mean": {"test/acc": 0.952593}, "std": {"test/acc": 0.003394}}  # fmt: skip
    assert "| default | 3 | 0.9526 ± 0.0034 |" in format_markdown([stat], [], ["test/acc"])


def test_diverged_trial_without_message_says_where_it_stopped(tmp_path: Path) -> None:
    make_job(tmp_path, "0", ["grad_clip=none", "seed=1"],
             {"status": "diverged", "epoch": 2, "global_step": 27, "seed": 1})
    make_job(tmp_path, "1", ["grad_clip=norm", "seed=1"],
             {"status": "ok", "test/acc": 0.9, "seed": 1})  # fmt: skip
    trials = load_trials(tmp_path)
    (failed,) = failed_trials(trials)
    assert failed["error"] == "non-finite loss after 27 optimizer steps"
    header, rows = summary_table(trials)
    assert rows[0][header.index("error")] == "non-finite loss after 27 optimizer steps"
    markdown = format_markdown(summarize(trials), [failed], ["test/acc"])
    assert "| grad_clip=none | 0 | 1 diverged | - |" in markdown
    assert "| grad_clip=norm | 1 |  | 0.9 |" in markdown


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
    assert option_settings(trials) == [{"model.regularization": "{}"},
                                       {"model.regularization": "{l1:0.001,l2:0.002}"}]  # fmt: skip
    assert option_labels(trials)[1] == "model.regularization={l1:0.001,l2:0.002}"


def test_plot_uses_log_axis_for_values_spanning_decades(tmp_path: Path) -> None:
    stats = [{"option": f"init={name}", "settings": {"init": name},
              "values": {"grad/first_layer": [v, v * 1.1]}, "mean": {"grad/first_layer": v},
              "std": {"grad/first_layer": 0.1 * v}}
             for name, v in (("normal", 1e-10), ("xavier", 1e-1))]  # fmt: skip
    assert plot_metric(stats, "grad/first_layer", tmp_path / "grad.png")
    assert png_size(tmp_path / "grad.png") == (600, 350)
    stats[0]["values"]["grad/first_layer"].append(0.0)  # a dead network: symlog, no error
    assert plot_metric(stats, "grad/first_layer", tmp_path / "dead.png")


def test_plot_keeps_an_option_whose_trials_all_diverged(tmp_path: Path) -> None:
    make_job(tmp_path, "0", ["grad_clip=none", "seed=1"], {"status": "diverged", "seed": 1})
    make_job(tmp_path, "1", ["grad_clip=norm", "seed=1"], {"status": "ok", "test/acc": 0.9})
    stats = summarize(load_trials(tmp_path))
    assert [(s["option"], s["n"], s["n_diverged"]) for s in stats] == [
        ("grad_clip=none", 0, 1), ("grad_clip=norm", 1, 0)]
    assert plot_metric(stats, "test/acc", tmp_path / "acc.png")
    assert not plot_metric(stats, "test/loss", tmp_path / "loss.png")  # no option has it


def test_y_scale() -> None:
    assert y_scale([1e-10, 0.5, 1.0]) == ("log", {})
    assert y_scale([0.0, 1e-9, 1.0]) == ("symlog", {"linthresh": 1e-9})
    assert y_scale([0.9, 0.95]) == ("linear", {})
    assert y_scale([-1.0, 1e-9, 1.0]) == ("linear", {})  # signed values: no log axis
    assert y_scale([0.0, 0.0]) == ("linear", {})


def test_read_and_mean_curves(sweep: Path) -> None:
    assert read_curve(sweep / "0") == pytest.approx({0: 0.51, 1: 0.61, 2: 0.71})
    assert read_curve(sweep / "7") == {}
    trials = load_trials(sweep)
    curves = mean_curves(trials, option_labels(trials))
    assert list(curves) == ["regularization=l1", "regularization=l2"]
    # Mean over seeds 1, 2, 3 adds 0.02; the diverged trial's curve (-0.5) is left out.
    for epochs in curves.values():
        assert [e for e, _ in epochs] == [0, 1, 2]
        assert [v for _, v in epochs] == pytest.approx([0.52, 0.62, 0.72])


def test_read_curve_finds_csvlogger_version_dir(tmp_path: Path) -> None:
    nested = tmp_path / "csv" / "version_0"
    nested.mkdir(parents=True)
    write_metrics_csv(nested, seed=2, epochs=2)
    assert read_curve(tmp_path) == pytest.approx({0: 0.52, 1: 0.62})


def test_write_report_plots_are_small_pngs(sweep: Path) -> None:
    files = write_report(sweep)
    assert sorted(files) == [
        "curves.png", "plot_gap_acc.png", "plot_test_acc.png", "plot_test_loss.png",
        "plot_wall_s.png", "summary.csv", "summary.md",
    ]  # fmt: skip
    for name in ("plot_test_acc.png", "curves.png"):
        assert files[name] == sweep / name
        assert png_size(files[name]) == (600, 350)  # 6 x 3.5 in at 100 dpi


def test_write_report_with_chosen_metrics(sweep: Path) -> None:
    files = write_report(sweep, metrics=["test/acc"])
    assert "plot_test_loss.png" not in files and "plot_test_acc.png" in files
    assert "| option | n | not ok | test/acc |\n" in files["summary.md"].read_text()


def test_write_report_rejects_empty_or_missing_dir(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no trials"):
        write_report(tmp_path)
    with pytest.raises(FileNotFoundError):
        write_report(tmp_path / "missing")


def test_script_regenerates_report(sweep: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "report.py"), str(sweep), "--metrics",
         "test/acc", "test/loss"],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    assert "| regularization=l1 | 3 | 1 diverged, 1 failed | 0.92 ± 0.02 | 0.25 ± 0.05 |" in (
        result.stdout
    )
    for name in ("summary.csv", "summary.md", "plot_test_acc.png", "plot_test_loss.png"):
        assert (sweep / name).is_file()
    assert png_size(sweep / "curves.png") == (600, 350)
    assert not (sweep / "plot_wall_s.png").exists()


def test_script_reuses_the_metrics_the_sweep_chose(sweep: Path) -> None:
    (sweep / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {"callbacks": {"report": {
        "_target_": "trainlab.hydra_callbacks.SweepReport", "metrics": ["test/acc", "weights/l1"],
    }}}}))  # fmt: skip
    assert configured_report(sweep) == {"metrics": ["test/acc", "weights/l1"], "option_keys": None}
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "report.py"), str(sweep)],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    assert "| option | n | not ok | test/acc | weights/l1 |" in result.stdout
    assert (sweep / "plot_weights_l1.png").is_file()
    assert not (sweep / "plot_test_loss.png").exists()


def test_configured_report_without_multirun_yaml(tmp_path: Path) -> None:
    assert configured_report(tmp_path) == {"metrics": None, "option_keys": None}


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
    stats = stats_by_option(summarize(load_trials(sweep_dir)))
    assert stats["regularization=l1"]["mean"]["test/acc"] == pytest.approx(0.92)
    assert stats["regularization=l2"]["std"]["test/acc"] == pytest.approx(0.01)
    assert (sweep_dir / "summary.md").is_file()
    assert png_size(sweep_dir / "plot_test_acc.png") == (600, 350)
