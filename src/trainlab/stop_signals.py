"""SLURM's pre-timeout SIGUSR1 noted from the moment the job starts.

The signal's default action ends the process, and ``PreemptionCheckpoint`` handles it only once
training runs. A USR1 that arrives while torch loads or the data is read is noted here, and the
callback acts on it after the first step (saves, requeues). Light: no torch.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Mapping
from types import FrameType

NOTED: list[str] = []


def slurm_job_id(environ: Mapping[str, str] | None = None) -> str | None:
    """This SLURM job's id as ``scontrol requeue`` takes it (``<array job>_<task>`` in a job
    array); None outside SLURM."""
    env = os.environ if environ is None else environ
    if env.get("SLURM_ARRAY_JOB_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID")


def _note(signum: int, frame: FrameType | None) -> None:
    NOTED.append(signal.Signals(signum).name)


def note_early() -> None:
    """In a SLURM job, note SIGUSR1 until ``PreemptionCheckpoint`` takes it over."""
    if slurm_job_id() and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGUSR1, _note)
