"""Shared fixtures: compose configs the way ``train.py`` does, run the CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from trainlab.compose import compose_config
from trainlab.train import CONFIG_DIR

ROOT = Path(__file__).resolve().parents[1]
# unpacked dataset copies (trainlab.data.idx) go to a temporary dir, not the user's ~/.cache
os.environ.setdefault("TRAINLAB_CACHE", tempfile.mkdtemp(prefix="trainlab-test-cache-"))
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


compose_cfg = compose_config


@pytest.fixture
def cfg_factory(tmp_path):
    """``make(*overrides)`` -> composed config writing into a fresh tmp dir."""
    def make(*overrides: str) -> DictConfig:
        return compose_cfg(list(overrides), tmp_path)
    yield make
    GlobalHydra.instance().clear()


def run_cli(*args: str, cwd: Path = ROOT, timeout: int = 300, script: str = "train.py"
            ) -> subprocess.CompletedProcess:
    """Run ``python train.py ARGS`` and return the finished process (output captured)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run([sys.executable, str(ROOT / script), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


needs_fashion_mnist = pytest.mark.skipif(
    not (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file(),
    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)",
)


@pytest.fixture
def compose_hydra():
    """``make(*overrides)`` -> the composed config with its ``hydra`` node, as a multirun job."""
    def make(*overrides: str, job_num: int = 0):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose("train", overrides=list(overrides), return_hydra_config=True)
        with open_dict(cfg):
            cfg.hydra.job.num = job_num
            cfg.hydra.runtime.output_dir = "unused"
        HydraConfig.instance().set_config(cfg)
        return cfg
    yield make
    GlobalHydra.instance().clear()
