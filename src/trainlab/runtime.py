"""Process settings that make CPU training faster, applied by the entry points before torch
loads (the NVML check: right after Lightning loads).

Each is a config key under ``process`` (``conf/train.yaml``), printed as ``Process settings:``
and written to ``results.json`` (``process/openmp``, ``process/malloc``, ``process/nvml_check``).
None depends on how busy the machine looks unless ``process.openmp_wait=auto`` asks for that.
None imports torch. Each effect is in BENCHMARKS.md: measured with ``scripts/bench.py``, the
NVML probe's per-step cost with timestamps in Lightning's hooks.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import time

from trainlab.errors import ConfigError

# glibc's mallopt() parameters (malloc.h) and the largest mmap threshold it accepts on 64-bit
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024
TRIM_THRESHOLD = 1024 * 1024 * 1024
# more busy CPUs than this before start: other work shares the cores
BUSY_CPUS = 0.5

_openmp_choice: str | None = None  # the first choice holds: libgomp reads it only once
_nvml_dropped = False  # whether nvml_check removed PYTORCH_NVML_BASED_CUDA_CHECK


def busy_cpus(interval_s: float = 0.1) -> float | None:
    """How many of the CPUs this process may run on were busy over the next ``interval_s``.

    Read from ``/proc/stat`` (Linux) for the CPUs of ``sched_getaffinity``, so a SLURM job
    pinned to its own cores does not count the rest of the node. None where unknown.
    """
    try:
        cpus = {f"cpu{c}" for c in os.sched_getaffinity(0)}
    except AttributeError:
        return None

    def read() -> dict[str, tuple[int, int]]:
        ticks = {}
        with open("/proc/stat") as f:
            for line in f:
                name, *fields = line.split()
                if name in cpus:
                    values = [int(v) for v in fields[:8]]
                    idle = values[3] + values[4]  # idle + iowait
                    ticks[name] = (sum(values) - idle, sum(values))
        return ticks

    try:
        before = read()
        time.sleep(interval_s)
        after = read()
    except (OSError, ValueError):
        return None
    busy = 0.0
    for name, (b1, t1) in after.items():
        b0, t0 = before.get(name, (b1, t1))
        busy += (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0
    return busy


OPENMP_WAITS = ("launcher", "spin", "sleep", "auto")


def openmp_wait_policy(wait: str = "launcher", shares_cores: bool = False) -> str:
    """Set how PyTorch's idle OpenMP threads wait, before torch loads; returns what was set.

    PyTorch splits each large CPU op over OpenMP threads. Between ops, libgomp's threads spin by
    default: on an otherwise idle machine that is 1.5x faster than letting them sleep (the
    ``fmnist_fast`` net on 2 cores, BENCHMARKS.md), because a waking thread costs tens of
    microseconds per op. When other work shares the cores (a parallel sweep, a second run),
    a spinning thread holds the core its partner needs: 2x slower with two runs on 2 cores.

    Args:
        wait: ``spin`` (OpenMP's default), ``sleep`` (``OMP_WAIT_POLICY=PASSIVE``),
            ``launcher`` (sleep when ``shares_cores``, else spin), or ``auto`` (as ``launcher``,
            and also sleep when more than half a CPU was busy during a 0.1 s look at
            ``/proc/stat`` before start).
        shares_cores: the caller launches trials of a sweep side by side on this machine.

    ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` set by the user win. libgomp reads them once, when
    torch loads, so the first choice in a process holds.
    """
    global _openmp_choice
    if _openmp_choice is None:
        _openmp_choice = _choose_openmp_wait_policy(wait, shares_cores)
    return _openmp_choice


def _choose_openmp_wait_policy(wait: str, shares_cores: bool) -> str:
    if wait not in OPENMP_WAITS:
        raise ConfigError(f"process.openmp_wait={wait!r} is not allowed: one of {', '.join(OPENMP_WAITS)}")
    if "torch" in sys.modules:
        return "as set when torch loaded, before trainlab could choose"
    for key in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
        if key in os.environ:
            return f"{key}={os.environ[key]} (set by the user)"
    sleep = wait == "sleep" or (wait in ("launcher", "auto") and shares_cores)
    reason = f"process.openmp_wait={wait}" + (", trials share the cores" if shares_cores else "")
    if wait == "auto" and not sleep:
        busy = busy_cpus()
        sleep = busy is None or busy >= BUSY_CPUS
        reason += ", CPU load unknown" if busy is None else f", {busy:.2f} CPUs busy before start"
    if not sleep:
        return f"threads spin ({reason})"
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return f"threads sleep, OMP_WAIT_POLICY=PASSIVE ({reason})"


def keep_freed_memory() -> bool:
    """Keep freed activation buffers in the heap instead of returning them to the kernel.

    glibc serves every allocation over its mmap threshold (128 KiB to start) with a fresh
    ``mmap`` and gives it back on ``free``; a training step allocates and frees tens of MB of
    activations, so each step paid ~6,000 page faults (zeroing 24 MB) inside its convolutions,
    ~12% of a CPU step. Raising the mmap threshold to glibc's maximum (32 MiB) and the trim
    threshold to 1 GiB lets the next step reuse the same pages (the buffers are the same size
    every step; the default job's peak RSS stays at 1.3 GB). ``process.malloc_keep_freed=false``
    skips it.

    Returns:
        Whether the thresholds were set (False off glibc).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def drop_failing_nvml_check() -> bool:
    """Stop PyTorch from looking for NVML on every optimizer step where there is no NVML.

    Importing Lightning sets ``PYTORCH_NVML_BASED_CUDA_CHECK=1`` (so that asking whether CUDA
    is available never initializes CUDA before a fork). Adam and AdamW ask on every ``step``;
    with that variable set, a CUDA build of torch on a machine without the NVIDIA driver then
    tries to ``dlopen`` ``libnvidia-ml.so.1`` each time, fails, and falls back to the CUDA
    runtime's count: 0.08 ms per step with a tiny net, 0.47 ms after a CNN step has left the
    caches cold, on the benchmark machine (BENCHMARKS.md). Where NVML cannot be loaded the
    variable changes nothing but that cost, so it is removed; where NVML loads (a GPU
    machine) it stays. Call after Lightning is imported.

    Returns:
        Whether the variable was removed.
    """
    if os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK") != "1":
        return False
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        del os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"]
        return True
    return False


def nvml_check(skip_failing: bool = True) -> str:
    """Apply ``process.skip_failing_nvml_check`` once Lightning is loaded; say what holds.

    Each job of a multirun in one process calls it: a probe dropped for an earlier job stays
    dropped (and is reported so), or is put back for a job that asks to keep it.
    """
    global _nvml_dropped
    if skip_failing:
        _nvml_dropped = _nvml_dropped or drop_failing_nvml_check()
    elif _nvml_dropped:
        os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = "1"
        _nvml_dropped = False
    if _nvml_dropped:
        return "skipped (no NVML on this machine)"
    return "as PyTorch does it" + ("" if skip_failing else " (process.skip_failing_nvml_check=false)")


def intra_op_threads() -> str:
    """How many threads torch splits a CPU op over, and who chose it: a sweep's joblib
    launcher gives each trial ``cpu_count // n_jobs`` through ``OMP_NUM_THREADS``."""
    import torch

    chosen = os.environ.get("OMP_NUM_THREADS")
    source = f"OMP_NUM_THREADS={chosen}" if chosen else "PyTorch's default"
    return f"{torch.get_num_threads()} ({source})"


def tune_process(openmp_wait: str = "launcher", malloc_keep_freed: bool = True,
                 shares_cores: bool = False) -> dict[str, str]:
    """The two settings that must precede torch (OpenMP waiting, malloc thresholds); call
    first thing in an entry point. Returns what was chosen, as ``results.json`` records it."""
    policy = openmp_wait_policy(openmp_wait, shares_cores)
    if not malloc_keep_freed:
        malloc = "as is (process.malloc_keep_freed=false)"
    else:
        malloc = "keeps freed buffers" if keep_freed_memory() else "as is (no glibc mallopt)"
    return {"process/openmp": policy, "process/malloc": malloc}


def settings_line(settings: dict[str, str]) -> str:
    """``Process settings: openmp: ...; malloc: ...`` for the log, from ``results.json``'s keys."""
    return "Process settings: " + "; ".join(f"{k.split('/')[1]}: {v}" for k, v in settings.items())
