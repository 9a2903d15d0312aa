"""SLURM's pre-timeout SIGUSR1 noted from the moment the job starts.

The signal's default action ends the process, and ``PreemptionCheckpoint`` handles it only once
training runs. A USR1 that arrives while torch loads or the data is read is noted here, and the
callback acts on it after the first step (saves, requeues). Light: no torch.
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType

NOTED: list[str] = []


def _note(signum: int, frame: FrameType | None) -> None:
    NOTED.append(signal.Signals(signum).name)


def note_early() -> None:
    """In a SLURM job, note SIGUSR1 until ``PreemptionCheckpoint`` takes it over."""
    if os.environ.get("SLURM_JOB_ID") and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGUSR1, _note)
