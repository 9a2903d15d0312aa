"""`--help` is trainlab's own: the groups with their options, the entry points, where outputs go."""

from __future__ import annotations

import pytest
from conftest import run_cli

pytestmark = pytest.mark.e2e  # every test runs train.py or eval.py


def test_train_help_lists_groups_entry_points_and_outputs():
    proc = run_cli("--help")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith("trainlab: ")
    assert "\nnet: cnn, mlp\n" in out and "\nmodel: classifier\n" in out
    assert "experiment/study: augmentation, batchnorm, dropout" in out
    assert "+experiment=NAME" in out and "--config-dir DIR" in out
    assert "outputs/runs/<date>_<time>/" in out and "trainlab-cli fit --config cli/digits.yaml" in out
    assert "\ncli:" not in out  # the LightningCLI configs are not a Hydra group
    assert "Powered by Hydra" not in out


def test_eval_help_says_what_it_reads_and_writes():
    proc = run_cli("--help", script="eval.py")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("trainlab-eval: ")
    assert "ckpt_path: ???" in proc.stdout and "outputs/eval/<date>_<time>/" in proc.stdout
