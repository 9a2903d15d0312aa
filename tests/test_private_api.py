"""Lightning's private API is used in one module only (trainlab.ddp: DDP under Hydra, which has no
public way to change how the ranks are started), and each use breaks a test here when an upgrade
moves it."""

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


def private_imports(path) -> set[str]:
    """``module.name`` of every private name (or private module) imported from the libraries."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(LIBRARIES):
            for alias in node.names:
                if alias.name.startswith("_") or any(p.startswith("_") for p in node.module.split(".")):
                    found.add(f"{node.module}.{alias.name}")
    return found


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


def test_the_private_optuna_trial_id_the_search_passes_to_its_jobs_is_there():
    """trainlab.optuna_search.trial_id (the one private Optuna name used) rebuilds the trial."""
    optuna = pytest.importorskip("optuna")
    from trainlab.optuna_search import trial_id

    study = optuna.create_study()
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0.0, 1.0)})
    again = optuna.trial.Trial(study, trial_id(trial))  # as trainlab.callbacks.OptunaPruning does
    assert again.number == trial.number and again.params == trial.params
    sources = {p.relative_to(ROOT).as_posix() for p in (ROOT / "src").rglob("*.py")
               if "._trial_id" in p.read_text()}
    assert sources == {"src/trainlab/optuna_search.py"}
