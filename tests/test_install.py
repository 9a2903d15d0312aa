"""``pip install .`` gives a working trainlab: the wheel carries conf/ and its scripts run anywhere.

The wheel is built from a copy of the checkout's build inputs (an in-place build would leave
``build/`` in the checkout and race with any other build there), installed with ``pip --target``
into a temporary folder that ``PYTHONPATH`` puts ahead of the editable install, and its console
scripts run from a temporary directory, so neither the checkout's ``src/`` nor its ``conf/`` can
be what runs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

import trainlab
from trainlab.config_dir import CONFIG_DIR

ROOT = Path(__file__).resolve().parents[1]
# what setuptools reads to build the wheel: pyproject.toml names the readme, src/ and conf/
BUILD_INPUTS = ("pyproject.toml", "README.md", "src", "conf")


def packages_under(src: Path) -> set[str]:
    """Dotted names of the regular packages (folders with ``__init__.py``) below ``src``."""
    return {".".join(p.parent.relative_to(src).parts) for p in src.rglob("__init__.py")}


def test_pyproject_lists_every_package_under_src():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    setuptools_cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert set(setuptools_cfg["packages"]) == packages_under(ROOT / "src") | {"trainlab.conf"}
    assert setuptools_cfg["package-dir"]["trainlab.conf"] == "conf"


def test_editable_install_reads_the_checkouts_conf():
    if Path(trainlab.__file__).resolve().parents[1] != ROOT / "src":
        pytest.skip(f"trainlab is imported from {trainlab.__file__}, not from this checkout")
    assert Path(CONFIG_DIR) == ROOT / "conf"  # read in place: an edit needs no reinstall


@dataclass(frozen=True)
class WheelInstall:
    tree: Path  # the copy of the checkout the wheel was built from
    wheel: Path
    site: Path  # pip --target folder: trainlab/ and bin/ with the console scripts
    work: Path  # the working directory the scripts run in, outside the checkout

    def run(self, script: str, *args: str) -> subprocess.CompletedProcess:
        """Run an installed console script (or ``python`` itself) with only the wheel's trainlab."""
        exe = sys.executable if script == "python" else str(self.site / "bin" / script)
        env = {**os.environ, "PYTHONPATH": str(self.site), "PYTHONUNBUFFERED": "1",
               "HYDRA_FULL_ERROR": "0"}
        return subprocess.run([exe, *args], cwd=self.work, env=env, capture_output=True,
                              text=True, timeout=180)


def pip(*args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", "-q", *args], capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> WheelInstall:
    tmp = tmp_path_factory.mktemp("install")
    tree = tmp / "tree"
    tree.mkdir()
    for name in BUILD_INPUTS:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, tree / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(ROOT / name, tree / name)
    # absolute paths: a bare word would be read as a project name on the package index
    pip("wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(tmp / "dist"), str(tree))
    (wheel,) = (tmp / "dist").glob("trainlab-*.whl")
    pip("install", "--no-deps", "--target", str(tmp / "site"), str(wheel))
    (tmp / "work").mkdir()
    return WheelInstall(tree, wheel, tmp / "site", tmp / "work")


@pytest.mark.e2e
def test_wheel_holds_every_module_and_every_hydra_config(installed):
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    modules = {p.relative_to(installed.tree / "src").as_posix()
               for p in (installed.tree / "src" / "trainlab").rglob("*.py")}
    configs = {f"trainlab/conf/{p.relative_to(installed.tree / 'conf').as_posix()}"
               for p in (installed.tree / "conf").rglob("*.yaml")}
    assert modules and modules <= names
    assert "trainlab/conf/train.yaml" in configs and "trainlab/conf/eval.yaml" in configs
    assert {n for n in names if n.startswith("trainlab/conf/")} == configs


@pytest.mark.e2e
def test_installed_scripts_train_and_evaluate_outside_the_checkout(installed, tmp_path):
    probe = installed.run("python", "-c", "import trainlab, trainlab.config_dir as c; "
                          "print(trainlab.__file__); print(c.CONFIG_DIR)")
    assert probe.returncode == 0, probe.stderr[-3000:]
    module_file, config_dir = probe.stdout.split()
    assert Path(module_file) == installed.site / "trainlab" / "__init__.py"
    assert Path(config_dir) == installed.site / "trainlab" / "conf"

    run = tmp_path / "run"
    proc = installed.run("trainlab-train", "data=digits", "trainer.max_epochs=1",
                         f"hydra.run.dir={run}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((run / "results.json").read_text())
    assert results["status"] == "ok" and results["epoch"] == 1
    assert isinstance(results["test/acc"], float) and 0.5 < results["test/acc"] <= 1.0
    # Hydra records where the primary configs came from: the wheel's copy
    assert f"path: {installed.site / 'trainlab' / 'conf'}\n" in \
        (run / ".hydra" / "hydra.yaml").read_text()

    evaluation = tmp_path / "ev"
    proc = installed.run("trainlab-eval", f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
                         f"hydra.run.dir={evaluation}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    evaluated = json.loads((evaluation / "eval.json").read_text())
    # one epoch: the best checkpoint the run tested is the last one, so the accuracies agree
    assert evaluated["test/acc"] == pytest.approx(results["test/acc"], abs=1e-6)
    assert not any(installed.work.iterdir())  # every output went where it was told


@pytest.mark.e2e
def test_installed_train_help_lists_the_shipped_config_groups(installed):
    proc = installed.run("trainlab-train", "--help")
    assert proc.returncode == 0, proc.stderr[-3000:]
    listing = proc.stdout.split("== Config groups")[1].split("Any key of the composed config")[0]
    groups = dict(line.split(": ", 1) for line in listing.splitlines() if ": " in line)
    assert "digits" in groups["data"].split(", ") and "adam" in groups["optimizer"].split(", ")
