"""No key a user sets is silently ignored: it reaches the object it configures, or the run stops
before training with a message that says where the setting lives."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from conftest import ROOT
from hydra.utils import instantiate
from omegaconf import ListConfig

from trainlab.errors import ConfigError
from trainlab.train import CONFIG_DIR
from trainlab.validate import validate

OPTIMIZERS = sorted(p.stem for p in (Path(CONFIG_DIR) / "optimizer").glob("*.yaml"))
HYDRA_KEYS = {"_target_", "_partial_"}


def as_group_value(value):
    return tuple(value) if isinstance(value, ListConfig) else value


@pytest.mark.parametrize("exclude", [True, False])
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_key_reaches_the_parameter_groups(cfg_factory, name, exclude):
    """Each hyper-parameter of the optimizer's config, weight decay included, is what the
    regularized parameters are stepped with; the 1-D group differs only in weight_decay=0,
    and only with exclude_bias_and_norm (its documented job)."""
    cfg = cfg_factory("data=digits", f"optimizer={name}", "model.optimizer.weight_decay=0.125",
                      f"model.regularization.exclude_bias_and_norm={str(exclude).lower()}")
    validate(cfg)
    optimizer = instantiate(cfg.model).configure_optimizers()
    keys = [k for k in cfg.model.optimizer if k not in HYDRA_KEYS]
    assert "weight_decay" in keys
    regularized, *rest = optimizer.param_groups
    for key in keys:
        assert regularized[key] == as_group_value(cfg.model.optimizer[key]), key
    if exclude:
        (one_d,) = rest
        assert one_d["weight_decay"] == 0.0
        assert all(one_d[k] == regularized[k] for k in keys if k != "weight_decay")
    else:
        assert rest == []


def test_adamw_weight_decay_from_the_command_line_is_the_one_used(cfg_factory):
    cfg = cfg_factory("data=digits", "optimizer=adamw", "model.optimizer.weight_decay=0.5")
    optimizer = instantiate(cfg.model).configure_optimizers()
    assert optimizer.param_groups[0]["weight_decay"] == 0.5


@pytest.mark.parametrize(("override", "message"), [
    ("+model.optimizer.momentun=0.9", "model.optimizer.momentun is not a parameter of torch.optim.Adam"),
    ("+callbacks.lr_schedule.scheduler.gama=0.5",
     "callbacks.lr_schedule.scheduler.gama is not a parameter of torch.optim.lr_scheduler.CosineAnnealingLR"),
    ("+trainer.gradient_clip=0.1", "trainer.gradient_clip is not a parameter of pytorch_lightning.Trainer"),
    ("+data.shuffle=false", "data.shuffle is not a parameter of trainlab.data.ImageDataModule"),
])
def test_a_key_no_constructor_takes_stops_the_run_naming_it_and_what_is_taken(cfg_factory, override,
                                                                               message):
    with pytest.raises(ConfigError, match=re.escape(message) + r" \(it takes: .*\); remove it"):
        validate(cfg_factory("data=digits", override))


def test_the_moved_weight_decay_points_to_where_it_lives(cfg_factory):
    with pytest.raises(ConfigError, match=r"model.regularization.weight_decay is not a parameter .*"
                                          r"weight decay is the optimizer's: model.optimizer.weight_decay"):
        validate(cfg_factory("data=digits", "+model.regularization.weight_decay=0.1"))


def test_every_top_level_setting_of_train_yaml_is_read_by_the_code():
    """A plain key of conf/train.yaml (no _target_, not a group) must be read somewhere in
    src/trainlab or interpolated by a config (``${site.data_root}``): a new one that nothing
    reads fails here."""
    config = yaml.safe_load((ROOT / "conf" / "train.yaml").read_text())
    groups = {next(iter(d)) for d in config["defaults"] if isinstance(d, dict)}
    source = "\n".join(p.read_text() for p in (ROOT / "src" / "trainlab").rglob("*.py"))
    configs = "\n".join(p.read_text() for p in (ROOT / "conf").rglob("*.yaml"))
    plain = {k: v for k, v in config.items() if k != "defaults" and k not in groups}
    assert {"seed", "resume", "optimized_metric", "test", "tag", "process"} <= set(plain)
    for key, value in plain.items():
        names = [f"{key}.{sub}" for sub in value] if isinstance(value, dict) else [key]
        for name in names:
            assert re.search(rf"cfg\.{re.escape(name)}\b|get\(\"{re.escape(name)}\"", source) or \
                f"${{{name}}}" in configs, f"conf/train.yaml's {name} is read nowhere"


@pytest.mark.parametrize(("override", "where"), [
    ("trainer.enable_progress_bar=false", "callbacks.progress_bar"),
    ("+trainer.enable_checkpointing=false", "callbacks.model_checkpoint"),
])
def test_a_trainer_flag_that_contradicts_a_configured_callback_names_the_one_key(cfg_factory, override,
                                                                                 where):
    from trainlab.pipeline import build

    with pytest.raises(ConfigError, match=rf"while {where} is set: .* set {where}=null"):
        build(cfg_factory("data=digits", override))
    build(cfg_factory("data=digits", override, f"{where}=null"))  # one key: it builds
