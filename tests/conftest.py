"""Shared fixtures: compose configs the way ``train.py`` does, run the CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from trainlab.compose import compose_config

ROOT = Path(__file__).resolve().parents[1]
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
