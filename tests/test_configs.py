"""Every YAML of every config group composes, instantiates and trains one epoch on digits; every
experiment's own keys reach the objects they configure."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import ROOT, run_cli
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from trainlab.ddp import HydraJobLauncher
from trainlab.pipeline import build

CONF = ROOT / "conf"
GROUPS = ["data", "augmentation", "model", "net", "optimizer", "regularization", "init", "scheduler",
          "grad_clip", "callbacks", "early_stopping", "weight_averaging", "logger", "trainer", "debug",
          "scaler"]
NEEDS_DOWNLOAD = {("data", "mnist"), ("data", "cifar10")}
NEEDS_GPU = {("trainer", "gpu"), ("trainer", "ddp")}
TABULAR = {"wine", "breast_cancer", "csv"}


def user_data(option: str, tmp_path: Path) -> list[str]:
    """Overrides pointing the user-data options at digits written as the user would."""
    import numpy as np
    from sklearn.datasets import load_digits

    from trainlab.data.sources import save_png

    bunch = load_digits()
    images = (bunch.images * 255 / 16).round().astype(np.uint8)
    if option == "image_arrays":
        np.savez(tmp_path / "d.npz", x_train=images[:400], y_train=bunch.target[:400],
                 x_test=images[400:500], y_test=bunch.target[400:500])
        return [f"data.source.path={tmp_path / 'd.npz'}", "data.input_shape=[1,8,8]", "data.num_classes=10"]
    if option == "image_folder":
        for i, (image, label) in enumerate(zip(images[:300], bunch.target[:300], strict=True)):
            folder = tmp_path / ("test" if i % 4 == 0 else "train") / f"class_{label}"
            folder.mkdir(parents=True, exist_ok=True)
            save_png(torch.from_numpy(image)[None], folder / f"{i}.png")
        return [f"data.source.root={tmp_path}", "data.source.channels=1", "data.input_shape=[1,8,8]",
                "data.num_classes=10", "data.val_size=50"]
    frame = load_digits(as_frame=True).frame.iloc[:300]
    frame.to_csv(tmp_path / "d.csv", index=False)
    return [f"data.source.path={tmp_path / 'd.csv'}", "data.target=target", "data.input_shape=[64]",
            "data.num_classes=10"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def experiments() -> list[str]:
    return sorted(str(p.relative_to(CONF / "experiment").with_suffix(""))
                  for p in (CONF / "experiment").rglob("*.yaml"))


def overrides_for(group: str, option: str, tmp_path: Path) -> list[str]:
    """Overrides selecting ``group=option`` on a setup small enough to train in a second."""
    prefix = "+" if group == "scaler" else ""
    data = option if group == "data" else ("wine" if group == "scaler" else "digits")
    out = [f"data={data}", f"{prefix}{group}={option}", "trainer.max_epochs=1",
           "trainer.limit_train_batches=3", "trainer.limit_val_batches=1",
           "trainer.limit_test_batches=1", "trainer.log_every_n_steps=1", "test=false"]
    if not (group == "callbacks" and option == "none"):
        out.append("callbacks.progress_bar=null")
    if data in TABULAR:
        out.append("net=mlp")
    if data in ("image_arrays", "image_folder", "csv"):
        out += user_data(data, tmp_path)
    if group == "init" and option == "pretrained":
        weights = tmp_path / "weights.pt"
        torch.save({"layers.1.weight": torch.zeros(256, 64)}, weights)
        out += [f"model.init.path={weights}", "model.init.strict=false", "net=mlp"]
    if group == "debug" and option == "fast":
        out = [o for o in out if not o.startswith("trainer.limit")]
    return out


CASES = [(g, o) for g in GROUPS for o in options(g)]


def test_every_group_has_options():
    for group in GROUPS:
        assert options(group), f"conf/{group}/ is empty"


@pytest.mark.parametrize(("group", "option"), CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_option_composes_instantiates_and_trains(group, option, cfg_factory, tmp_path):
    if (group, option) in NEEDS_GPU and not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    cfg = cfg_factory(*overrides_for(group, option, tmp_path))
    datamodule, model, trainer = build(cfg)
    if (group, option) == ("trainer", "ddp_cpu"):  # fit starts processes: tests/test_ddp.py
        assert isinstance(trainer.strategy.launcher, HydraJobLauncher)
        assert trainer.world_size == trainer.strategy.launcher.num_processes == 2
        assert trainer.strategy.process_group_backend == "gloo"
        return
    if (group, option) in NEEDS_DOWNLOAD:
        pytest.skip("instantiated; training needs torchvision's download (offline here)")
    trainer.fit(model, datamodule=datamodule)
    assert trainer.global_step >= 1 and model.status == "ok"
    assert torch.isfinite(trainer.callback_metrics["train/loss"])


def leaves(node: Any, prefix: str = "") -> dict[str, Any]:
    """``{dotted key: value}`` of every leaf of a plain dict (a list is one leaf)."""
    if not isinstance(node, dict) or not node:
        return {prefix: node}
    return {k: v for key, child in node.items()
            for k, v in leaves(child, f"{prefix}.{key}" if prefix else str(key)).items()}


def experiment_settings(name: str) -> dict[str, Any]:
    """The keys an experiment file sets, unresolved (not Hydra's node): its own and those of the
    experiment files its defaults list includes (``- /experiment/<name>``), which it overrides."""
    raw = OmegaConf.to_container(OmegaConf.load(CONF / "experiment" / f"{name}.yaml"), resolve=False)
    settings: dict[str, Any] = {}
    for entry in raw.get("defaults", []):
        if isinstance(entry, str) and entry.startswith("/experiment/"):
            settings.update(experiment_settings(entry.removeprefix("/experiment/")))
    settings.update({key: value for key, value in leaves(raw).items()
                     if key != "defaults" and key.split(".")[0] != "hydra"})
    return settings


def owner(cfg: DictConfig, key: str) -> tuple[type, str]:
    """The class the innermost ``_target_`` node above ``key`` builds, and the argument ``key`` is."""
    parts = key.split(".")
    for i in range(len(parts) - 1, 0, -1):
        node = OmegaConf.select(cfg, ".".join(parts[:i]))
        if isinstance(node, DictConfig) and "_target_" in node:
            assert i == len(parts) - 1, f"{key}: a nested argument of {node._target_}"
            return get_class(node._target_), parts[-1]
    raise AssertionError(f"{key} is under no _target_")


def constructor_arguments(monkeypatch, classes) -> dict[type, dict[str, Any]]:
    """``{class: keyword arguments of its latest construction}``, filled as ``classes`` are built."""
    received: dict[type, dict[str, Any]] = {}
    for cls in classes:  # the defaults bind this class; no constructor takes these two names
        def recorded(self, *args, __init=cls.__init__, __cls=cls, **kwargs):
            received[__cls] = kwargs
            __init(self, *args, **kwargs)
        monkeypatch.setattr(cls, "__init__", functools.wraps(cls.__init__)(recorded))
    return received


def plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


@pytest.mark.parametrize("name", experiments())
def test_experiment_settings_reach_the_config_and_the_objects_they_configure(name, cfg_factory,
                                                                             monkeypatch):
    """Each key the experiment file sets is in the composed config as written, and each one
    under data, model and trainer is an argument the built object was constructed with."""
    settings = experiment_settings(name)
    cfg = cfg_factory(f"+experiment={name}")
    composed = leaves(OmegaConf.to_container(cfg, resolve=False))
    assert {key: composed.get(key, "<missing>") for key in settings} == settings
    built = {key: owner(cfg, key) for key in settings if key.split(".")[0] in ("data", "model", "trainer")}
    assert built, f"experiment {name} changes no data, model or trainer key"
    received = constructor_arguments(monkeypatch, {cls for cls, _ in built.values()})
    _, model, _ = build(cfg)
    model.configure_optimizers()  # the optimizer is a partial until the parameters exist
    for key, (cls, argument) in built.items():
        assert argument in received.get(cls, {}), f"{key}: {cls.__name__} never received {argument}"
        assert plain(received[cls][argument]) == plain(OmegaConf.select(cfg, key)), key


@pytest.mark.e2e
def test_unknown_group_option_exits_nonzero_with_hydra_message(tmp_path):
    proc = run_cli("optimizer=nadamax", f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode != 0
    assert "Could not find 'optimizer/nadamax'" in proc.stderr
    assert "Available options" in proc.stderr and "adam" in proc.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.e2e
def test_help_and_cfg_job_do_not_import_torch():
    probe = ("import sys, runpy; sys.argv=['train.py','--cfg','job'];"
             "\ntry: runpy.run_path('train.py', run_name='__main__')"
             "\nexcept SystemExit: pass"
             "\nprint('TORCH_LOADED' if 'torch' in sys.modules else 'NO_TORCH')")
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert "optimizer:" in out.stdout and out.stdout.strip().endswith("NO_TORCH"), out.stderr


EXAMPLES_CONF = f"hydra.searchpath=[file://{ROOT / 'examples' / 'conf'}]"
KEY_CASES = [f"{'+' if g == 'scaler' else ''}{g}={o}" for g, o in CASES] + \
    [f"+experiment={e}" for e in experiments()] + [f"hparams_search={o}" for o in options("hparams_search")]


@pytest.mark.parametrize("override", [*KEY_CASES, f"+experiment=resnet_width {EXAMPLES_CONF}"])
def test_every_option_and_experiment_sets_only_known_top_level_keys(override, cfg_factory):
    """The top-level keys an experiment, a search or a group option adds (gpu_pack, ...) are
    known to validation, from conf/ and from a user's config folder (hydra.searchpath)."""
    from trainlab.validate import check_top_level_keys

    check_top_level_keys(cfg_factory(*override.split(" ")))
