"""OmegaConf resolvers the configs use. Importing this module registers them (cheap: no torch)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from omegaconf import OmegaConf

from trainlab import rundir, slurm_check
from trainlab.errors import ConfigError

# trainer.accelerator values that ask SLURM for GPUs (Lightning's names for CUDA devices)
GPU_ACCELERATORS = ("gpu", "cuda")


def run_dir(resume: str | None, new_dir: str) -> str:
    """``hydra.run.dir``: the run being resumed, else a new directory.

    Raises at composition time, before any directory is created, when ``resume`` is not a run.
    """
    return new_dir if resume is None else str(rundir.check_resumable(resume))


def config_subdir(resume: str | None, output_dir: str | None = None) -> str:
    """``hydra.output_subdir``: a resumed or requeued run, and a trial of a sweep run again into
    its sweep dir (``output_dir`` already holds results or checkpoints), keep the original
    ``.hydra/`` and record the later invocation beside it."""
    earlier = bool(output_dir) and bool(rundir.run_files(Path(output_dir)))
    if resume is None and rundir.slurm_restarts() == 0 and not earlier:
        return rundir.CONFIG.parent.name
    return rundir.RESUME_CONFIG_DIR


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

    for name, fn in (("trainlab_run_dir", run_dir), ("trainlab_config_subdir", config_subdir),
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
