"""Compose ``conf/train.yaml`` in-process, as ``train.py`` would, for tests, scripts and notebooks."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from trainlab import resolvers  # noqa: F401  (registers the resolvers the configs use)
from trainlab.config_dir import CONFIG_DIR


def compose_config(overrides: list[str], output_dir: str | Path, config_name: str = "train"
                   ) -> DictConfig:
    """The composed config with ``overrides``; ``${hydra:runtime.output_dir}`` is ``output_dir``.

    Sets Hydra's global config so interpolations into ``hydra:`` resolve, and returns the job's
    config without the ``hydra`` node, ready for ``trainlab.pipeline.build``.
    """
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name, overrides=list(overrides), return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg
