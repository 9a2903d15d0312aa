"""One owner per run directory, taken before Hydra writes anything into it.

A process that trains, resumes or continues a sweep in a directory holds an exclusive
``fcntl.flock`` on ``<dir>/.owner`` for as long as it works there. The kernel drops the lock
when the process ends, however it ends (``kill -9`` included), so a dead owner never blocks;
the file keeps the owner's pid and host for the message a refused process prints. DDP ranks
and SLURM tasks > 0 of the owner's job take no lock: their rank 0 holds it for them.

Hydra saves ``.hydra/config.yaml`` into a job's dir before the task function and before any
job callback runs (``hydra.core.utils.run_job``). The first trainlab code that runs once the
dir is known and before that save is the ``hydra.output_subdir`` resolver, so a job's dir is
claimed and checked there (:func:`trainlab.resolvers.claimed_config_subdir`); a
sweep dir is claimed by the ``on_multirun_start`` callback, before the launcher rewrites its
``multirun.yaml`` (:class:`trainlab.hydra_callbacks.ClaimSweepDir`). Light: no torch.
"""

from __future__ import annotations

import fcntl
import os
import socket
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from trainlab.errors import RunDirError

OWNER_FILE = ".owner"
# Where launchers put a process's rank, in Lightning's order (``rank_zero_only.rank``).
RANK_ENV = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")

_held: dict[str, int] = {}  # resolved dir -> the open, locked owner file


def launch_rank(environ: Mapping[str, str] | None = None) -> int:
    """Rank of this process as its launcher set it in the environment; 0 when not distributed.

    Known before any Trainer exists, so a run can skip work only rank 0 must do (claiming and
    checking its run dir, printing the config) before it builds anything.
    """
    environ = os.environ if environ is None else environ
    for key in RANK_ENV:
        value = environ.get(key)
        if value not in (None, ""):
            return int(value)
    return 0


def follows_an_owner(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process is a rank > 0 (or on a node > 0) of a job whose rank 0 owns the dir."""
    environ = os.environ if environ is None else environ
    return launch_rank(environ) > 0 or int(environ.get("NODE_RANK", "0") or 0) > 0


def _key(path: Path) -> str:
    return str(path.resolve())


def _lock(path: Path, create: bool) -> int:
    """An open descriptor of ``path/.owner`` holding its exclusive lock.

    Raises:
        RunDirError: a live process holds the lock (its pid and host named).
    """
    fd = os.open(path / OWNER_FILE, os.O_RDWR | (os.O_CREAT if create else 0), 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise RunDirError(f"{path} is in use by {owner}; nothing in it was changed. Wait for that "
                          "process to end (or stop it) and run the command again; a new run needs "
                          "another hydra.run.dir") from None
    return fd


def claim(path: str | Path, check: Callable[[], None] = lambda: None) -> None:
    """Make this process the owner of ``path`` for as long as it lives (or until :func:`release`).

    ``check`` runs once the dir is known not to be owned by another live process, before this
    process writes anything into it (not even the owner file); what it raises is raised here
    and the dir is left exactly as it was. Claiming a dir this process holds runs only ``check``.

    Raises:
        RunDirError: another live process owns ``path``; or what ``check`` raised.
    """
    path = Path(path)
    key = _key(path)
    if key in _held:
        check()
        return
    fd = _lock(path, create=False) if (path / OWNER_FILE).is_file() else None
    try:
        check()
        if fd is None:
            path.mkdir(parents=True, exist_ok=True)
            fd = _lock(path, create=True)
    except BaseException:
        if fd is not None:
            os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
    _held[key] = fd


def owns(path: str | Path) -> bool:
    """Whether this process holds ``path``."""
    return _key(Path(path)) in _held


def release(path: str | Path) -> None:
    """Give up ``path`` (closing the owner file drops the lock); a no-op where not held."""
    fd = _held.pop(_key(Path(path)), None)
    if fd is not None:
        os.close(fd)


def refuse(err: RunDirError) -> SystemExit:
    """The one line a refused job ends with. Printed to stderr only: the root logger's file
    handler may already point at the owner's ``train.log``."""
    return SystemExit(f"error: {err}")


def finish_early(message: str) -> SystemExit:
    """A job with nothing to do: ``message`` on stdout, exit code 0."""
    print(message, file=sys.stdout, flush=True)
    return SystemExit(0)
