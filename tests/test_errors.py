"""A bad setting is one line naming it; a bug in user code keeps its traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

USER_NET = '''
from torch import nn


class Net(nn.Module):
    def __init__(self, input_shape, num_classes, width: int = 8):
        super().__init__()
        self.head = nn.Linear(width, num_classes)
        self.scale = 1 / (width - 8)  # the user's bug: width 8 divides by zero
'''
USER_NET_YAML = """# @package model.net
_target_: user_nets.Net
input_shape: ${data.input_shape}
num_classes: ${data.num_classes}
"""


def run_with_user_net(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    """``python train.py`` with a user's network module and config dir outside the repository."""
    (tmp_path / "user_nets.py").write_text(USER_NET)
    (tmp_path / "conf" / "net").mkdir(parents=True)
    (tmp_path / "conf" / "net" / "user.yaml").write_text(USER_NET_YAML)
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "HYDRA_FULL_ERROR": "0"}
    return subprocess.run([sys.executable, str(ROOT / "train.py"), "--config-dir", str(tmp_path / "conf"),
                           "data=digits", "net=user", *overrides,
                           f"hydra.run.dir={tmp_path / 'run'}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.e2e
def test_a_bug_in_a_users_network_shows_its_traceback(tmp_path):
    proc = run_with_user_net(tmp_path)
    assert proc.returncode != 0
    assert "ZeroDivisionError" in proc.stderr and "Traceback" in proc.stderr
    assert "user_nets.py" in proc.stderr and "self.scale = 1 / (width - 8)" in proc.stderr
    assert not (tmp_path / "run" / "results.json").exists()


@pytest.mark.e2e
def test_a_bad_setting_of_the_same_network_is_one_line(tmp_path):
    proc = run_with_user_net(tmp_path, "+model.net.width=abc")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "error: model.net.width='abc' is not allowed: an integer (a parameter of user_nets.Net)" \
        in proc.stderr
