"""OmegaConf resolvers the configs use. Importing this module registers them (cheap: no torch)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf

from trainlab import run_owner, rundir, slurm_check
from trainlab.errors import ConfigError

# trainer.accelerator values that ask SLURM for GPUs (Lightning's names for CUDA devices)
GPU_ACCELERATORS = ("gpu", "cuda")


def run_dir(resume: str | None, new_dir: str) -> str:
    """``hydra.run.dir``: the run being resumed, else a new directory.

    Raises at composition time, before any directory is created, when ``resume`` is not a run.
    """
    if resume is None:
        return new_dir
    try:
        return str(rundir.check_resumable(resume))
    except ConfigError as err:  # one line, not Hydra's wrapped resolver error
        raise run_owner.refuse(err) from None


def config_subdir(resume: str | None, output_dir: str | None = None) -> str:
    """``hydra.output_subdir``: a resumed or requeued run, and a trial of a sweep run again into
    its sweep dir (``output_dir`` already holds results or checkpoints), keep the original
    ``.hydra/`` and record the later invocation beside it."""
    earlier = bool(output_dir) and bool(rundir.run_files(Path(output_dir)))
    if resume is None and rundir.slurm_restarts() == 0 and not earlier:
        return rundir.CONFIG.parent.name
    return rundir.RESUME_CONFIG_DIR


def claimed_config_subdir(resume: str | None, output_dir: str | None = None) -> str | None:
    """``hydra.output_subdir`` of a job, resolved by Hydra just before it saves the job's config:
    the job's dir is claimed and checked first (:mod:`trainlab.run_owner`,
    :func:`trainlab.rundir.check_job_dir`), so a refused job writes nothing into it.

    Returns :func:`config_subdir`; None (no ``.hydra/`` at all) for a rank > 0 of a job whose
    rank 0 owns the dir. Outside a job (``output_dir`` unset: the launcher, ``--cfg``) it only
    answers. A refused job stops with one line (``SystemExit``, which no resolver or Hydra
    wrapper rewrites); a resume with nothing to do stops with exit code 0.
    """
    if output_dir is None:
        return config_subdir(resume)
    if run_owner.follows_an_owner():
        return None
    run = Path(output_dir)
    hydra = HydraConfig.get() if HydraConfig.initialized() else None
    multirun = hydra is not None and hydra.mode == RunMode.MULTIRUN
    overrides = [str(o) for o in hydra.overrides.task] if hydra is not None else []
    subdir = config_subdir(resume, output_dir)  # read before the owner file exists

    def check() -> None:
        message = rundir.check_job_dir(run, resume, multirun, overrides)
        if message:
            raise _NothingToDo(message)

    try:
        run_owner.claim(run, check)
    except ConfigError as err:
        raise run_owner.refuse(err) from None
    except _NothingToDo as done:
        raise run_owner.finish_early(str(done)) from None
    return subdir


class _NothingToDo(Exception):
    """A resumed run that has ended: stop before claiming, with this message."""


def _device_count(devices: object) -> int | None:
    """Number of devices ``trainer.devices`` names, None for ``-1``/``auto`` (decided at run time)."""
    if isinstance(devices, Sequence) and not isinstance(devices, str):  # ListConfig too
        return len(devices)
    if isinstance(devices, int) and not isinstance(devices, bool) and devices >= 1:
        return devices
    if isinstance(devices, str) and devices.strip().isdigit() and int(devices) >= 1:
        return int(devices)
    return None


def tasks_per_node(devices: object) -> int:
    """``hydra.launcher.tasks_per_node`` for SLURM: one task (process) per device of the trainer.

    Raises when ``trainer.devices`` is ``-1``/``auto``: srun starts the processes before any GPU
    is counted, so the number must be written down.
    """
    count = _device_count(devices)
    if count is None:
        raise ConfigError(f"trainer.devices={devices!r} cannot size a SLURM job: set it to the "
                          "number of GPUs per node (e.g. trainer.devices=4) with hydra/launcher=slurm")
    return count


def gpus_per_node(accelerator: str, devices: object) -> int:
    """``gpus_per_node`` of the local submitit launcher: the trainer's devices, or 0 for
    ``accelerator=cpu`` (``auto`` takes this machine's GPUs, which it can see)."""
    return 0 if str(accelerator) == "cpu" else tasks_per_node(devices)


def slurm_gpus_per_node(accelerator: str, devices: object) -> int:
    """``hydra.launcher.gpus_per_node`` for SLURM: the trainer's devices for
    ``accelerator=gpu``/``cuda``, else 0.

    ``auto`` asks for no GPU: the machine that submits cannot see the compute nodes, and a GPU
    request is refused outright on a CPU-only partition, so GPUs are asked for only by name
    (``trainer=gpu``, ``trainer=ddp``, ``trainer.accelerator=gpu``).
    """
    return tasks_per_node(devices) if str(accelerator) in GPU_ACCELERATORS else 0


def slurm_cpus_per_task(at_most: int, partition: str | None, tasks: int) -> int:
    """``hydra.launcher.cpus_per_task`` for SLURM: ``at_most``, fewer where the partition's
    largest node has fewer CPUs for each of ``tasks`` tasks (:func:`trainlab.slurm_check.cpus_per_task`)."""
    return slurm_check.cpus_per_task(int(at_most), partition, int(tasks))


def register() -> None:
    """Register every trainlab resolver (idempotent)."""
    from trainlab import gpu_slots  # light: no torch at import

    for name, fn in (("trainlab_run_dir", run_dir), ("trainlab_config_subdir", claimed_config_subdir),
                     ("trainlab_log_suffix", rundir.log_suffix),
                     ("trainlab_tasks_per_node", tasks_per_node),
                     ("trainlab_gpus_per_node", gpus_per_node),
                     ("trainlab_slurm_gpus_per_node", slurm_gpus_per_node),
                     ("trainlab_slurm_cpus_per_task", slurm_cpus_per_task),
                     ("trainlab_pack_jobs", gpu_slots.pack_jobs),
                     ("trainlab_trial_devices", gpu_slots.trial_devices)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


register()
