"""Packed GPU sweeps: ``per_gpu`` trials at once on each of ``n_gpus`` GPUs of one machine.

Small models leave most of a big GPU idle, so a sweep runs several trials per GPU at a time:
the joblib launcher runs ``n_gpus * per_gpu`` jobs in parallel and trial ``k`` (Hydra's
``hydra.job.num``) trains on GPU ``k % n_gpus`` (``trainer.devices=[k % n_gpus]``). Trials start
in order and take similar time in a sweep, so each GPU holds about ``per_gpu`` of them. The GPU
is chosen by device index rather than ``CUDA_VISIBLE_DEVICES`` because joblib reuses worker
processes, and a process that has initialized CUDA ignores later changes to that variable.

Used through ``conf/hydra/launcher/gpu_pack.yaml`` and ``conf/experiment/gpu_pack.yaml`` (which
set ``n_jobs`` and ``trainer.devices`` with the resolvers below). Imports stay light: Hydra
resolves these in the launching process.
"""

from __future__ import annotations

from trainlab.errors import ConfigError


def _positive_int(key: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key} must be an integer >= 1, got {value!r}")
    return value


def gpu_for_trial(trial: int, n_gpus: int) -> int:
    """GPU index of trial ``trial`` (0-based) when a sweep is spread over ``n_gpus`` GPUs."""
    _positive_int("gpu_pack.n_gpus", n_gpus)
    if isinstance(trial, bool) or not isinstance(trial, int) or trial < 0:
        raise ConfigError(f"hydra.job.num must be an integer >= 0, got {trial!r}")
    return trial % n_gpus


def pack_jobs(n_gpus: int, per_gpu: int) -> int:
    """Trials to run at once (joblib's ``n_jobs``): ``per_gpu`` on each of ``n_gpus`` GPUs."""
    return _positive_int("gpu_pack.n_gpus", n_gpus) * _positive_int("gpu_pack.per_gpu", per_gpu)


def trial_devices(n_gpus: int, trial: int | None = None, visible_gpus: int | None = None
                  ) -> list[int] | int:
    """``trainer.devices`` of the current trial: ``[gpu_for_trial(trial, n_gpus)]``.

    Args:
        n_gpus: GPUs the sweep is spread over.
        trial: the trial number; None reads ``hydra.job.num`` of the running job (a single
            run, e.g. a resumed trial, has none and takes GPU 0).
        visible_gpus: CUDA devices this process sees; None asks torch.

    Returns:
        ``[gpu index]``, or ``1`` on a machine without CUDA, where the trials run side by side
        on the CPU (``trainer.accelerator=auto``) so the same config composes and runs anywhere.
    """
    _positive_int("gpu_pack.n_gpus", n_gpus)
    if visible_gpus is None:
        visible_gpus = _cuda_device_count()
    if visible_gpus == 0:
        return 1
    if n_gpus > visible_gpus:
        raise ConfigError(f"gpu_pack.n_gpus={n_gpus} but this machine shows {visible_gpus} GPU(s); "
                          f"use at most {visible_gpus}")
    if trial is None:
        trial = _current_job_num()
    return [gpu_for_trial(trial, n_gpus)]


def _cuda_device_count() -> int:
    import torch  # resolved inside the job, where torch is loaded anyway

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _current_job_num() -> int:
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    if not HydraConfig.initialized():
        return 0
    num = OmegaConf.select(HydraConfig.get(), "job.num", default=None)
    return int(num) if num is not None else 0
