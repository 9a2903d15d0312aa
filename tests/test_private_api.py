"""Lightning's private API is used in one module only (trainlab.ddp: DDP under Hydra, which has no
public way to change how the ranks are started), and each use breaks a test here when an upgrade
moves it. No other module imports a library's private names, reads another object's private
attributes or Lightning's loop internals."""

from __future__ import annotations

import ast
import inspect

import pytest
import torch
from conftest import ROOT
from lightning_fabric.plugins.environments import LightningEnvironment
from pytorch_lightning.strategies import DDPStrategy
from pytorch_lightning.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

from trainlab import ddp

LIBRARIES = ("pytorch_lightning", "lightning_fabric", "lightning", "torch")
# the Trainer's loops and their progress counters: Lightning's internals, whatever their spelling
LOOP_INTERNALS = frozenset({"fit_loop", "epoch_loop", "batch_progress", "epoch_progress"})


def private_imports(path) -> set[str]:
    """``module.name`` of every private name (or private module) imported from the libraries."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(LIBRARIES):
            for alias in node.names:
                if alias.name.startswith("_") or any(p.startswith("_") for p in node.module.split(".")):
                    found.add(f"{node.module}.{alias.name}")
    return found


def is_internal(name: str) -> bool:
    """A private name (``_x``; not a ``__dunder__`` nor a Hydra key such as ``_target_``) or a loop."""
    return (name.startswith("_") and not name.endswith("_")) or name in LOOP_INTERNALS


def internal_attributes(source: str) -> set[str]:
    """Every read or write of another object's private attribute (``x._name``, ``getattr(x,
    "_name")``; a class's own ``self._name``/``cls._name`` is its business) or of a loop internal."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and is_internal(node.attr):
            own = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls") \
                and node.attr not in LOOP_INTERNALS
            if not own:
                found.add(ast.unparse(node))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id in ("getattr", "setattr", "hasattr", "delattr") and len(node.args) > 1 \
                and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str) \
                and is_internal(node.args[1].value):
            found.add(ast.unparse(node))
    return found


def test_the_attribute_scan_finds_private_and_loop_reads_and_passes_the_rest():
    source = """
done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
self.ident = trial._trial_id
getattr(loader, "_index_sampler")
super()._configure_launcher()
self._cache = type(x).__name__, cls._registry, node._target_, getattr(x, "__name__"), x.__dict__
"""
    assert internal_attributes(source) == {
        "trainer.fit_loop.epoch_loop.batch_progress", "trainer.fit_loop.epoch_loop", "trainer.fit_loop",
        "trial._trial_id", "getattr(loader, '_index_sampler')", "super()._configure_launcher"}


def test_only_the_ddp_module_reads_private_attributes_or_loop_internals():
    users = {p.relative_to(ROOT).as_posix(): found for p in (ROOT / "src").rglob("*.py")
             if (found := internal_attributes(p.read_text()))}
    assert users == {"src/trainlab/ddp.py": {"super()._call_children_scripts",
                                             "super()._configure_launcher"}}


def test_only_the_ddp_module_imports_private_library_names():
    users = {p.relative_to(ROOT).as_posix(): names for p in (ROOT / "src").rglob("*.py")
             if (names := private_imports(p))}
    assert users == {"src/trainlab/ddp.py": {
        "pytorch_lightning.strategies.launchers.subprocess_script._SubprocessScriptLauncher"}}


def test_the_private_launcher_api_ddp_relies_on_is_there():
    params = list(inspect.signature(_SubprocessScriptLauncher.__init__).parameters)
    assert params[:4] == ["self", "cluster_environment", "num_processes", "num_nodes"]
    for name in ("_call_children_scripts", "_check_can_spawn_children", "launch"):
        assert callable(getattr(_SubprocessScriptLauncher, name)), name
    launcher = _SubprocessScriptLauncher(LightningEnvironment(), num_processes=2, num_nodes=1)
    assert launcher.procs == []  # release_job() waits for and clears this list
    assert callable(DDPStrategy._configure_launcher)


def test_the_hydra_strategy_installs_its_launcher_where_lightning_looks_for_it():
    strategy = ddp.HydraDDPStrategy(cluster_environment=LightningEnvironment(),
                                    parallel_devices=[torch.device("cpu")] * 2)
    assert strategy._start_method == "popen"
    strategy._configure_launcher()
    assert isinstance(strategy.launcher, ddp.HydraJobLauncher)  # the public property reads it
    assert strategy.launcher.num_processes == 2


@pytest.mark.parametrize("start_method", ["spawn"])
def test_other_start_methods_keep_lightnings_launcher(start_method):
    strategy = ddp.HydraDDPStrategy(cluster_environment=LightningEnvironment(),
                                    parallel_devices=[torch.device("cpu")] * 2,
                                    start_method=start_method)
    strategy._configure_launcher()
    assert not isinstance(strategy.launcher, ddp.HydraJobLauncher)


def test_the_trial_id_the_search_passes_to_its_jobs_rebuilds_the_trial(tmp_path):
    """trainlab.optuna_search.trial_id asks the storage (public API), not the trial's private id."""
    optuna = pytest.importorskip("optuna")
    from trainlab.optuna_search import trial_id

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    optuna.create_study(storage=url, study_name="first").ask()  # ids count per storage
    study = optuna.create_study(storage=url, study_name="second")
    space = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}
    trials = [study.ask(space) for _ in range(2)]
    ids = [trial_id(trial) for trial in trials]
    assert len(set(ids)) == 2 and ids != [trial.number for trial in trials]  # "first" has one too
    for trial, ident in zip(trials, ids, strict=True):
        again = optuna.trial.Trial(study, ident)  # as trainlab.callbacks.OptunaPruning does
        assert again.number == trial.number and again.params == trial.params
