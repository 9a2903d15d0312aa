"""DDP under Hydra: each extra process re-runs this Hydra *job*, not the whole command line.

Lightning's popen launcher starts DDP ranks 1..N-1 by re-running ``sys.argv``. Under Hydra that
breaks three ways (Lightning #11300, lightning-hydra-template #393): in a multirun the argv holds
``-m`` and the sweep lists, so every child starts a sweep of its own with a new sweep dir; the
child's ``hydra.run.dir`` is the unused run dir of the sweep, not the job's; and under submitit
``sys.argv`` is submitit's runner. After the first job, the ``LOCAL_RANK`` Lightning leaves in
the environment also makes the next job believe its processes were started externally, so it
starts no ranks and reuses the first job's process group: that only works while the child's own
sweep happens to run the same trials in the same order (the basic launcher, by luck).

:class:`HydraDDPStrategy` starts each child as a plain single run of the same job:
``python -m <entry> --config-name <name> <the job's overrides> hydra.run.dir=<the job's dir>``,
with no ``.hydra/`` and no log file of its own, and :func:`release_job` (called by the
``trainlab.hydra_callbacks.ReleaseDDP`` callback when a job ends) waits for those children,
destroys the process group and clears the launcher's environment so the next job starts clean.
``start_method='spawn'`` avoids re-running the script but pickles model and data into fresh
processes for fit and again for test, returns only weights and metrics to the main process
(``model.status`` is lost) and does not apply under SLURM, where srun starts the ranks.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_original_cwd
from pytorch_lightning.strategies import DDPStrategy
from pytorch_lightning.strategies.launchers.subprocess_script import _SubprocessScriptLauncher
from typing_extensions import override

from trainlab.errors import ConfigError
from trainlab.run_owner import launch_rank  # noqa: F401  (where launchers put a rank; light)

log = logging.getLogger(__name__)

# What Lightning's launcher writes into the main process's environment for its children.
LAUNCHER_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")
CHILD_EXIT_TIMEOUT_S = 60.0

_launched: list[_SubprocessScriptLauncher] = []


def child_command(local_rank: int, entry: str, hydra_cfg: Any, cwd: str
                  ) -> tuple[list[str], str]:
    """The command that starts DDP process ``local_rank`` of the current Hydra job, and its cwd.

    Args:
        local_rank: rank of the child on this node (>= 1); only used in the log line.
        entry: module the child runs with ``python -m`` (the Hydra main).
        hydra_cfg: the job's ``HydraConfig.get()``.
        cwd: the directory the job was launched from.

    Returns:
        ``(argv, cwd)``: a single run (never ``-m``) with the job's own overrides, in the job's
        output dir, writing no ``.hydra/`` and logging to stdout only.
    """
    command = [sys.executable, "-m", entry]
    for source in hydra_cfg.runtime.config_sources:
        if source.provider == "command-line":  # --config-dir / --config-path given by the user
            command += ["--config-dir", str(source.path)]
    if hydra_cfg.job.config_name:
        command += ["--config-name", str(hydra_cfg.job.config_name)]
    command += [str(o) for o in hydra_cfg.overrides.task]
    command += [f'hydra.run.dir="{hydra_cfg.runtime.output_dir}"', "hydra.output_subdir=null",
                "hydra/job_logging=stdout"]
    if hydra_cfg.job.chdir:
        command.append("hydra.job.chdir=true")
    log.debug("DDP rank %d: %s", local_rank, " ".join(command))
    return command, cwd


class HydraJobLauncher(_SubprocessScriptLauncher):
    """Lightning's popen launcher with children that re-run the current Hydra job.

    Without Hydra it behaves exactly like Lightning's launcher.

    Args:
        cluster_environment: as for Lightning's launcher.
        num_processes: processes on this node.
        num_nodes: nodes in the job.
        entry: module the children run with ``python -m``.
    """

    def __init__(self, cluster_environment, num_processes: int, num_nodes: int, entry: str) -> None:
        super().__init__(cluster_environment, num_processes, num_nodes)
        self.entry = entry

    @override
    def launch(self, function, *args: Any, trainer=None, **kwargs: Any) -> Any:
        if not self.procs and any(launcher is not self for launcher in _launched):
            release_job()  # a job ended without the ReleaseDDP callback: clean up now
        return super().launch(function, *args, trainer=trainer, **kwargs)

    @override
    def _call_children_scripts(self) -> None:
        if not HydraConfig.initialized():
            super()._call_children_scripts()
            return
        self._check_can_spawn_children()
        self.procs = []
        os.environ["MASTER_ADDR"] = self.cluster_environment.main_address
        os.environ["MASTER_PORT"] = str(self.cluster_environment.main_port)
        os.environ["NODE_RANK"] = str(self.cluster_environment.node_rank())
        os.environ["LOCAL_RANK"] = str(self.cluster_environment.local_rank())
        os.environ["WORLD_SIZE"] = str(self.num_processes * self.num_nodes)
        _launched.append(self)
        hydra_cfg = HydraConfig.get()
        for local_rank in range(1, self.num_processes):
            env = {**os.environ, "LOCAL_RANK": str(local_rank)}
            command, cwd = child_command(local_rank, self.entry, hydra_cfg, get_original_cwd())
            self.procs.append(subprocess.Popen(command, env=env, cwd=cwd))


class HydraDDPStrategy(DDPStrategy):
    """``DDPStrategy`` whose popen children re-run the current Hydra job (see module docstring).

    Args:
        entry: module the extra processes run with ``python -m``: the Hydra main that started
            this run (``trainlab.train``).
        **kwargs: everything ``DDPStrategy`` takes (``process_group_backend``, ``start_method``...).
    """

    def __init__(self, entry: str = "trainlab.train", **kwargs: Any) -> None:
        if not entry or not isinstance(entry, str):
            raise ConfigError(f"trainer.strategy.entry must name a module (python -m), got {entry!r}")
        super().__init__(**kwargs)
        self.entry = entry

    @override
    def _configure_launcher(self) -> None:
        if self._start_method == "popen":
            self._launcher = HydraJobLauncher(self.cluster_environment, self.num_processes,
                                              self.num_nodes, self.entry)
        else:
            super()._configure_launcher()


def _wait(procs: Sequence[subprocess.Popen], timeout: float) -> list[subprocess.Popen]:
    """Wait up to ``timeout`` seconds in all for ``procs``; return those still running."""
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    return [p for p in procs if p.poll() is None]


def release_job(timeout: float = CHILD_EXIT_TIMEOUT_S) -> None:
    """End the DDP group this process launched for the job that just finished.

    Waits for the children (killing any still running after ``timeout`` seconds), destroys the
    process group and removes the launcher's variables from the environment, so that the next
    job of a multirun launches fresh ranks on a fresh port. A no-op in processes that launched
    nothing (single-device runs, DDP children, SLURM tasks).
    """
    if not _launched:
        return
    while _launched:
        launcher = _launched.pop()
        stuck = _wait(list(launcher.procs), timeout)
        # Lightning's child observer watches this very list and kills the main process when a
        # child dies with a nonzero code: empty it before killing anything.
        launcher.procs.clear()
        for proc in stuck:
            log.warning("DDP child %d still running %.0f s after the job ended; killing it",
                        proc.pid, timeout)
            proc.kill()
            proc.wait()
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    for key in LAUNCHER_ENV:
        os.environ.pop(key, None)
