"""docs/EXTENDING.md holds: its examples compose, build and do what they say (fast tier), and
every command on the page runs as written from both entry points (end-to-end tier)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import ROOT
from tiny import tiny_datamodule, tiny_model, tiny_trainer

from examples.epoch_timer import EpochTimer
from examples.invert import Invert
from examples.resnet import ResNet
from examples.tables import iris_frame
from trainlab.pipeline import build
from trainlab.rundir import RESULTS, read_metrics, read_results, saved_config, trial_dirs

DOC = ROOT / "docs" / "EXTENDING.md"
EXAMPLES_CONF = f"hydra.searchpath=[file://{ROOT / 'examples' / 'conf'}]"
BIN = Path(sys.executable).parent


def test_each_example_yaml_composes_and_builds_its_object(cfg_factory):
    quick = ("data=digits", EXAMPLES_CONF)
    _, model, _ = build(cfg_factory(*quick, "net=resnet", "model.net.width=4", "model.tta_flip=true"))
    assert isinstance(model.net, ResNet) and model.tta_flip
    datamodule, _, _ = build(cfg_factory(*quick, "augmentation=invert"))
    assert isinstance(datamodule.augment.ops[0], Invert) and datamodule.augment.ops[0].p == 0.5
    _, _, trainer = build(cfg_factory(*quick, "callbacks=[default,epoch_timer]"))
    assert any(isinstance(c, EpochTimer) for c in trainer.callbacks)
    assert trainer.checkpoint_callback is not None  # the defaults are still there
    datamodule, model, _ = build(cfg_factory(EXAMPLES_CONF, "data=iris", "net=mlp"))
    datamodule.setup("fit")
    assert datamodule.splits["train"][0].shape[1] == 4 and model.hparams.num_classes == 3
    cfg = cfg_factory(EXAMPLES_CONF, "+experiment=resnet_width")
    assert cfg.model.net._target_ == "examples.resnet.ResNet" and cfg.data.num_classes == 10


def test_the_residual_net_adds_its_input_and_gives_logits():
    net = ResNet([1, 8, 8], 10, width=4, stages=2, dropout=0.5).eval()
    assert net(torch.rand(3, 1, 8, 8)).shape == (3, 10)
    block = net.features[3]  # stem conv, BN, ReLU, then the first residual block
    for module in block.body:  # a zero body leaves ReLU(input): the skip path is there
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.zeros_(module.weight)
    x = torch.randn(2, 4, 8, 8)
    assert torch.equal(block(x), torch.relu(x))
    assert any(isinstance(m, torch.nn.Dropout) for m in net.head)


def test_invert_negates_a_fraction_p_of_the_images():
    x = torch.rand(4000, 1, 2, 2)
    assert torch.equal(Invert(p=1.0)(x, None)[0], 1 - x)
    assert torch.equal(Invert(p=0.0)(x, None)[0], x)
    torch.manual_seed(0)
    out = Invert(p=0.3)(x, None)[0]
    inverted = torch.isclose(out, 1 - x).all(dim=(1, 2, 3)) & ~torch.isclose(out, x).all(dim=(1, 2, 3))
    assert inverted.float().mean().item() == pytest.approx(0.3, abs=0.03)


def test_the_epoch_timer_logs_each_epochs_seconds(tmp_path):
    trainer = tiny_trainer(tmp_path, max_epochs=2, callbacks=[EpochTimer()])
    trainer.fit(tiny_model(), datamodule=tiny_datamodule())
    assert 0 < trainer.callback_metrics["time/epoch_s"].item() < 60


def test_the_iris_frame_has_text_labels():
    frame = iris_frame()
    assert frame.shape == (150, 5) and sorted(set(frame["species"])) == ["setosa", "versicolor", "virginica"]


def doc_commands() -> list[str]:
    """Every command line in a ```bash block of EXTENDING.md."""
    blocks = re.findall(r"```bash\n(.*?)```", DOC.read_text(), flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_the_page_has_commands_for_both_entry_points_of_every_recipe():
    commands = doc_commands()
    assert sum(c.startswith("python train.py") for c in commands) >= 7
    assert sum(c.startswith("trainlab-cli") for c in commands) >= 5
    assert any(" -m " in c for c in commands)


@pytest.mark.e2e
@pytest.mark.parametrize("command", doc_commands())
def test_a_command_of_the_page_runs_as_written(command, tmp_path):
    """Run from the repository root; only the output folders (and the exported digits) are moved
    to a temporary dir."""
    exported = tmp_path / "my_digits"
    args = [a.replace("outputs/my_digits", str(exported)) for a in shlex.split(command)]
    out = tmp_path / "out"
    if args[0] == "python":
        args[0] = sys.executable
        if args[1] == "train.py":
            args += [f"paths.log_dir={out}", "callbacks.progress_bar=null"]
    elif args[0] == "trainlab-cli":
        args = [str(BIN / "trainlab-cli"), *args[1:], f"--trainer.default_root_dir={out}",
                "--trainer.enable_progress_bar=false"]
    if "image_" in command or "ImageFolder" in command:  # recipe 2 reads what export_digits wrote
        subprocess.run([sys.executable, "examples/export_digits.py", str(exported)],
                       cwd=ROOT, check=True, timeout=120)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"}
    env.pop("PYTHONPATH", None)  # user code is found from the working directory alone
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    if "export_digits" in command:
        assert len(list((exported / "train").glob("*/*.png"))) == 1347
        return
    if args[0].endswith("trainlab-cli"):
        rows = read_metrics(out / "version_0")
        accs = [float(r["val/acc"]) for r in rows if r.get("val/acc")]
        saved = yaml.safe_load((out / "version_0" / "config.yaml").read_text())
        assert accs and accs[-1] > 2 / saved["data"]["init_args"]["num_classes"], accs
        return
    runs = trial_dirs(out / "multirun") if " -m " in command else list((out / "runs").iterdir())
    assert runs and all((run / RESULTS).is_file() for run in runs)
    results = [read_results(run) for run in runs]
    chance = 1 / saved_config(runs[0]).data.num_classes
    assert all(r["status"] == "ok" and r["test/acc"] > 2 * chance for r in results), results
    if "epoch_timer" in command:
        assert all(r["time/epoch_s"] > 0 for r in results)
    if " -m " in command:
        sweep = runs[0].parent
        assert len(runs) == 4 and "model.net.width=8" in (sweep / "summary.md").read_text()
