"""Experiment trackers for real, offline: ``logger=[csv,mlflow,wandb]`` through ``python train.py``,
read back with each library's own client (MLflow's ``MlflowClient``; W&B's offline ``.wandb``
file, whose records are W&B's own protobuf ``Record``: ``wandb.Api`` cannot read offline runs)."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli
from omegaconf import OmegaConf

from trainlab.tracking import flat_config

mlflow = pytest.importorskip("mlflow")
wandb_pb = pytest.importorskip("wandb.proto.wandb_internal_pb2")
# MLflow 3's SQLAlchemy store still uses a loader SQLAlchemy 2.1 deprecates; nothing of ours
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated")

FAST = ("data=digits", "trainer.max_epochs=1", "callbacks.progress_bar=null",
        "logger=[csv,mlflow,wandb]")


def train(tmp_path: Path, *args: str, multirun: bool = False) -> None:
    """``python train.py`` with every run, sweep and MLflow store under ``tmp_path/outputs``."""
    proc = run_cli(*(["-m"] if multirun else []), *FAST, f"paths.log_dir={tmp_path / 'outputs'}", *args)
    assert proc.returncode == 0, proc.stderr[-3000:]


def mlflow_client(tmp_path: Path) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'outputs' / 'mlflow' / 'mlflow.db'}")


def mlflow_runs(client: mlflow.MlflowClient) -> list[Any]:
    """Every run of the ``trainlab`` experiment, oldest first."""
    experiment = client.get_experiment_by_name("trainlab")
    return client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])


def wandb_records(run_file: Path) -> list[Any]:
    """The records of an offline run's ``.wandb`` file: a 7-byte header (``:W&B``, magic,
    version), then LevelDB-log blocks of 32 KiB whose chunks (crc32, length, type) join into
    protobuf ``Record`` messages."""
    data, block = run_file.read_bytes(), 32768
    assert data[:4] == b":W&B"
    records, pos, payload = [], 7, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a chunk header is padding
            pos += block - pos % block
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == 0:  # zero padding to the end of the block
            pos += -pos % block
            continue
        assert crc == zlib.crc32(chunk, zlib.crc32(bytes([kind]))), f"corrupt chunk at {pos}"
        payload = chunk if kind in (1, 2) else payload + chunk  # FULL, FIRST | MIDDLE, LAST
        if kind in (1, 4):
            record = wandb_pb.Record()
            record.ParseFromString(payload)
            records.append(record)
    return records


def wandb_run(run_dir: Path) -> list[dict[str, Any]]:
    """Each offline attempt of the run in ``run_dir`` (oldest first) as ``{"run": the run
    record, "config": {key: value}, "summary": {key: last value}, "steps": [trainer/global_step
    of each history row], "exit_code": int | None}``."""
    attempts = []
    for run_file in sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb")):
        out: dict[str, Any] = {"config": {}, "summary": {}, "steps": [], "exit_code": None}
        for record in wandb_records(run_file):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                out["run"] = record.run
                out["config"].update({u.key: json.loads(u.value_json) for u in record.run.config.update})
            elif kind == "config":
                out["config"].update({u.key: json.loads(u.value_json) for u in record.config.update})
            elif kind == "summary":
                out["summary"].update({u.key or "/".join(u.nested_key): json.loads(u.value_json)
                                       for u in record.summary.update})
            elif kind == "history":
                row = {i.key or "/".join(i.nested_key): i.value_json for i in record.history.item}
                if "trainer/global_step" in row:
                    out["steps"].append(json.loads(row["trainer/global_step"]))
            elif kind == "exit":
                out["exit_code"] = record.exit.exit_code
        attempts.append(out)
    return attempts


def test_flat_config_has_dotted_leaves_and_keeps_lists():
    cfg = OmegaConf.create({"model": {"optimizer": {"lr": 0.1}, "shape": [1, 8]}, "x": None, "e": {}})
    assert flat_config(cfg) == {"model.optimizer.lr": 0.1, "model.shape": [1, 8], "x": None, "e": {}}


@pytest.mark.e2e
def test_run_logs_its_config_and_results_to_mlflow_and_wandb(tmp_path):
    run = tmp_path / "run"
    train(tmp_path, f"hydra.run.dir={run}", "model.optimizer.lr=0.002")
    results = json.loads((run / "results.json").read_text())
    ids = json.loads((run / "trackers.json").read_text())
    assert (run / "csv" / "version_0" / "metrics.csv").is_file()  # csv still beside them

    client = mlflow_client(tmp_path)
    [logged] = mlflow_runs(client)
    assert logged.info.run_id == ids["mlflow"]["run_id"] and logged.info.status == "FINISHED"
    assert logged.info.run_name == "run" and logged.data.tags["run_dir"] == str(run)
    params = logged.data.params
    assert params["model.optimizer.lr"] == "0.002" and params["trainer.max_epochs"] == "1"
    assert params["data.num_classes"] == "10" and params["logger.mlflow.experiment_name"] == "trainlab"
    assert len(params) > 50  # the whole config, not only the LightningModule's hparams
    assert logged.data.metrics["test/acc"] == pytest.approx(results["test/acc"])
    assert logged.data.metrics["global_step"] == results["global_step"] > 0
    assert logged.data.tags["status"] == "ok" and "sweep" not in logged.data.tags
    artifacts = {a.path for a in client.list_artifacts(logged.info.run_id)}
    assert {"curves.png", "confusion.png"} <= artifacts  # the run's pictures

    [attempt] = wandb_run(run)
    assert attempt["run"].run_id == ids["wandb"]["id"] and attempt["run"].display_name == "run"
    assert attempt["run"].project == "trainlab" and attempt["run"].run_group == ""
    assert attempt["config"]["model.optimizer.lr"] == 0.002
    assert attempt["summary"]["test/acc"] == pytest.approx(results["test/acc"])
    assert attempt["summary"]["status"] == "ok"
    assert max(attempt["steps"]) == results["global_step"] and attempt["exit_code"] == 0


@pytest.mark.e2e
def test_multirun_trials_are_separate_tracker_runs_grouped_by_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    train(tmp_path, "seed=1,2", f"hydra.sweep.dir={sweep}", multirun=True)
    trials = [sweep / "0", sweep / "1"]
    results = [json.loads((t / "results.json").read_text()) for t in trials]

    logged = mlflow_runs(mlflow_client(tmp_path))
    assert [r.info.run_name for r in logged] == ["sweep/0", "sweep/1"]
    assert [r.data.tags["sweep"] for r in logged] == ["sweep", "sweep"]
    assert [r.data.params["seed"] for r in logged] == ["1", "2"]
    assert [r.info.status for r in logged] == ["FINISHED", "FINISHED"]
    assert [r.data.metrics["test/acc"] for r in logged] == \
        pytest.approx([r["test/acc"] for r in results])

    # each trial wrote its own W&B run (none reused the first: FinishTrackers ended it)
    attempts = [wandb_run(t) for t in trials]
    assert [len(a) for a in attempts] == [1, 1]
    runs = [a[0] for a in attempts]
    assert runs[0]["run"].run_id != runs[1]["run"].run_id
    assert [r["run"].run_group for r in runs] == ["sweep", "sweep"]
    assert [r["run"].display_name for r in runs] == ["sweep/0", "sweep/1"]
    assert [r["config"]["seed"] for r in runs] == [1, 2]
    assert [r["summary"]["test/acc"] for r in runs] == pytest.approx([r["test/acc"] for r in results])
    assert [r["exit_code"] for r in runs] == [0, 0]


@pytest.mark.e2e
def test_resume_continues_the_same_tracker_runs(tmp_path):
    run = tmp_path / "run"
    train(tmp_path, f"hydra.run.dir={run}")
    first = json.loads((run / "results.json").read_text())
    ids = json.loads((run / "trackers.json").read_text())
    proc = run_cli(f"resume={run}", "trainer.max_epochs=2")  # a resume takes no other overrides
    assert proc.returncode == 0, proc.stderr[-3000:]
    second = json.loads((run / "results.json").read_text())
    assert second["global_step"] == 2 * first["global_step"]
    assert json.loads((run / "trackers.json").read_text()) == ids

    client = mlflow_client(tmp_path)
    [logged] = mlflow_runs(client)  # one run, continued
    assert logged.info.run_id == ids["mlflow"]["run_id"] and logged.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(logged.info.run_id, "global_step")]
    assert steps == [first["global_step"], second["global_step"]]
    assert logged.data.metrics["test/acc"] == pytest.approx(second["test/acc"])
    assert logged.data.params["trainer.max_epochs"] == "1"  # MLflow keeps the first value

    attempts = wandb_run(run)  # two offline dirs of one W&B run, synced in order by `wandb sync`
    assert [a["run"].run_id for a in attempts] == [ids["wandb"]["id"]] * 2
    assert max(attempts[0]["steps"]) == first["global_step"]
    assert min(attempts[1]["steps"]) > first["global_step"]
    assert max(attempts[1]["steps"]) == second["global_step"]
    assert attempts[1]["summary"]["test/acc"] == pytest.approx(second["test/acc"])
