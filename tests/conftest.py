"""Shared fixtures (compose configs the way ``train.py`` does, run it in a subprocess) and the
tier of every test.

Tiers, each a marker registered in pyproject.toml:

- ``unit``: pure functions and single objects; no Trainer, no process started. ``make test-unit``.
- ``integration``: in one process, the parts together: composes configs, builds the objects,
  runs a Trainer. ``make test`` runs unit and integration.
- ``e2e``: starts a process: train.py, eval.py, trainlab-cli, scripts/, a wheel install, a
  fresh interpreter. ``make test-e2e`` runs it with the ``slow`` tests (minutes each).

``e2e``, ``slow``, ``gpu`` (needs CUDA) and ``slurm`` (needs a SLURM cluster) are marked by hand
and such a test gets no other tier. Every other test is given ``unit`` or ``integration`` at
collection by one rule: it is ``integration`` when it requests a fixture of
:data:`INTEGRATION_FIXTURES`, or when its code, or a function or class of its own module that the
code names (followed through), names one of :data:`INTEGRATION_NAMES`; else ``unit``. A test
marked ``unit`` or ``integration`` by hand keeps that mark.

The rule is checked as the tests run (:func:`_tier_guard`): a unit test that constructs a
Trainer, or a unit or integration test that starts a Python process, fails saying which mark
it needs.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import os
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from trainlab.compose import compose_config
from trainlab.train import CONFIG_DIR

ROOT = Path(__file__).resolve().parents[1]
# the user's own runs and MLflow store (conf/paths/default.yaml): no test writes there
OUTPUTS = ROOT / "outputs"
# unpacked dataset copies (trainlab.data.idx) go to a temporary dir, not the user's ~/.cache
os.environ.setdefault("TRAINLAB_CACHE", tempfile.mkdtemp(prefix="trainlab-test-cache-"))
# nor do W&B's debug logs (~/.cache/wandb/logs) or MLflow's telemetry id (~/.config/mlflow);
# the processes the tests start inherit these
os.environ.setdefault("WANDB_CACHE_DIR", os.path.join(os.environ["TRAINLAB_CACHE"], "wandb"))
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

TIERS = ("unit", "integration")
# marks that name their own run (make test-e2e, a GPU, make test-cluster): no tier besides
OWN_RUN = frozenset({"e2e", "slow", "gpu", "slurm"})
INTEGRATION_FIXTURES = frozenset({"cfg_factory", "compose_hydra"})
# what composes configs, builds the objects from them or makes a Trainer
INTEGRATION_NAMES = frozenset({"compose", "compose_cfg", "compose_config", "build", "build_cli",
                               "fit_and_test", "tiny_trainer", "Trainer"})


compose_cfg = compose_config


def _code_names(code: types.CodeType) -> set[str]:
    """Global, attribute and imported names of ``code`` and of the functions nested in it."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


def _names_used(obj: object, module: types.ModuleType, seen: set[int]) -> set[str]:
    """Names in a function's or a class's code, and in the module's own helpers they name."""
    if id(obj) in seen:
        return set()
    seen.add(id(obj))
    functions = [f for f in vars(obj).values() if inspect.isfunction(f)] if inspect.isclass(obj) \
        else [obj]
    names = set().union(*(_code_names(f.__code__) for f in functions))
    for name in list(names):
        helper = getattr(module, name, None)
        if (inspect.isfunction(helper) or inspect.isclass(helper)) and \
                helper.__module__ == module.__name__:
            names |= _names_used(helper, module, seen)
    return names


def tier(item: pytest.Function) -> str:
    """``integration`` or ``unit`` by the rule of this module's docstring."""
    if INTEGRATION_FIXTURES & set(item.fixturenames):
        return "integration"
    if INTEGRATION_NAMES & _names_used(item.function, item.module, set()):
        return "integration"
    return "unit"


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by these marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        marks = {mark.name for mark in item.iter_markers()}
        if isinstance(item, pytest.Function) and not marks & (OWN_RUN | set(TIERS)):
            item.add_marker(tier(item))


def _starts_python(args) -> bool:
    program = Path(args if isinstance(args, (str, os.PathLike)) else args[0])
    return program.name.startswith("python") or program.parent == Path(sys.executable).parent


@pytest.fixture(autouse=True)
def _tier_guard(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail a unit test that constructs a Trainer and a unit or integration test that starts a
    Python process (train.py, a script, ``python -c``), naming the mark the test needs."""
    current = next((t for t in TIERS if request.node.get_closest_marker(t)), None)
    if current is None:
        return

    def refuse(original, what: str, mark: str, check=lambda *a, **k: True):
        @functools.wraps(original)
        def guarded(self, *args, **kwargs):
            if check(*args, **kwargs):
                pytest.fail(f"this {current} test {what}: mark it @pytest.mark.{mark} "
                            "(tiers: tests/conftest.py)", pytrace=False)
            return original(self, *args, **kwargs)
        return guarded

    monkeypatch.setattr(subprocess.Popen, "__init__",
                        refuse(subprocess.Popen.__init__, "starts a Python process", "e2e",
                               check=lambda args, *a, **k: _starts_python(args)))
    if current == "unit":
        import pytorch_lightning as pl

        monkeypatch.setattr(pl.Trainer, "__init__",
                            refuse(pl.Trainer.__init__, "constructs a Trainer", "integration"))


def outputs_listing(folder: Path = OUTPUTS, depth: int = 2) -> dict[str, int]:
    """``{path: mtime_ns}`` of what ``folder`` holds, ``depth`` levels down: a folder's mtime
    changes when an entry is added to it, so a new run dir (``runs/<new>``), a new file in one
    (``runs/<run>/<new>``) and a write into ``mlflow/mlflow.db`` all show, without walking every
    checkpoint of the user's runs."""
    listing = {}
    if depth and folder.is_dir():
        for entry in os.scandir(folder):
            listing[os.path.relpath(entry.path, OUTPUTS)] = entry.stat(follow_symlinks=False).st_mtime_ns
            if entry.is_dir(follow_symlinks=False):
                listing |= outputs_listing(Path(entry.path), depth - 1)
    return listing


@pytest.fixture(autouse=True, scope="session")
def _outputs_untouched():
    """Fail the session when a test wrote under the repository's ``outputs/`` (the user's own
    runs and MLflow store): a test writes under its ``tmp_path``."""
    before = outputs_listing()
    yield
    after = outputs_listing()
    changed = sorted(path for path, mtime in after.items() if before.get(path) != mtime)
    if changed:
        pytest.fail(f"tests wrote under {OUTPUTS} (new or changed: {', '.join(changed)}); point "
                    "hydra.run.dir, hydra.sweep.dir or paths.log_dir at tmp_path (or another "
                    "process wrote there during the session)", pytrace=False)


@pytest.fixture
def cfg_factory(tmp_path):
    """``make(*overrides)`` -> composed config writing into a fresh tmp dir (its run dir, and
    ``paths.log_dir``, where ``logger=mlflow`` keeps its store, unless ``overrides`` set it)."""
    def make(*overrides: str) -> DictConfig:
        return compose_cfg([f"paths.log_dir={tmp_path / 'outputs'}", *overrides], tmp_path)
    yield make
    GlobalHydra.instance().clear()


def load_script(name: str) -> types.ModuleType:
    """``scripts/<name>.py`` imported as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
