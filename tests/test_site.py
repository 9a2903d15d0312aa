"""A machine's settings in a git-ignored conf/local/default.yaml reach every command."""

from __future__ import annotations

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from trainlab.config_dir import CONFIG_DIR
from trainlab.evaluation import run_config

SITE = """# @package _global_
site:
  data_root: /datasets
  partition: short
  account: lab
"""


def compose_with_site(tmp_path, config: str, *overrides: str):
    (tmp_path / "local").mkdir(exist_ok=True)
    (tmp_path / "local" / "default.yaml").write_text(SITE)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config, overrides=[f"hydra.searchpath=[file://{tmp_path}]", *overrides],
                       return_hydra_config=True)


def test_without_a_site_file_nothing_changes():
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train")
    assert cfg.site.data_root is None and cfg.data.source.root is None


def test_the_site_file_sets_data_roots_and_the_slurm_account(tmp_path):
    cfg = compose_with_site(tmp_path, "train", "hydra/launcher=slurm", "trainer=cpu")
    assert cfg.data.source.root == "/datasets"
    assert cfg.hydra.launcher.partition == "short" and cfg.hydra.launcher.account == "lab"
    assert cfg.hydra.launcher.qos is None
    cfg = compose_with_site(tmp_path, "train", "data=mnist", "site.data_root=/elsewhere")
    assert cfg.data.source.root == "/elsewhere"  # the command line still wins


def test_eval_rebuilds_a_run_with_this_machines_data_root(tmp_path):
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    saved = {"site": {"data_root": "/old/machine"}, "data": {"source": {"root": "${site.data_root}"}},
             "model": {"init": None}, "trainer": {}}
    OmegaConf.save(OmegaConf.create(saved), run / ".hydra" / "config.yaml")
    eval_cfg = compose_with_site(tmp_path, "eval", "ckpt_path=x")
    cfg = run_config(run, OmegaConf.create({}), [], eval_cfg.site)
    assert cfg.data.source.root == "/datasets"
