"""Peak memory of one fit, logged as metrics so it lands in results.json."""

from __future__ import annotations

import resource
import sys
from pathlib import Path

import pytorch_lightning as pl
import torch
from typing_extensions import override

PROC_STATUS = Path("/proc/self/status")
PROC_CLEAR_REFS = Path("/proc/self/clear_refs")
MIB = 1024.0 * 1024.0


def _status_kib(field: str) -> float | None:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``), or None off Linux."""
    try:
        for line in PROC_STATUS.read_text().splitlines():
            if line.startswith(f"{field}:"):
                return float(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark of this process to its current RSS (Linux >= 4.0).

    Returns:
        Whether the mark was reset. Without it the peak is the process's lifetime peak, which
        in a multirun (every trial in one process) carries over from earlier trials.
    """
    try:
        PROC_CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def current_rss_mib() -> float | None:
    """Resident set size now, MiB (Linux), else None."""
    kib = _status_kib("VmRSS")
    return None if kib is None else kib / 1024.0


def peak_rss_mib() -> float:
    """Peak resident set size since the last :func:`reset_peak_rss` (else process start), MiB."""
    kib = _status_kib("VmHWM")
    if kib is not None:
        return kib / 1024.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MIB if sys.platform == "darwin" else peak / 1024.0  # bytes on macOS, KiB else


class PeakMemory(pl.Callback):
    """Log the peak host memory (and GPU memory on CUDA) of the fit, in MiB.

    Logged at the end of every training epoch (so the last value covers the whole fit):
    ``memory/peak_rss_mb``: peak resident set size of the process since fit start (Linux
    resets the mark at fit start; elsewhere it is the process's lifetime peak);
    ``memory/rss_growth_mb``: that peak minus the RSS at fit start, i.e. what training added
    on top of the data and libraries already loaded (Linux only);
    ``memory/cuda_peak_mb``: ``torch.cuda.max_memory_allocated`` since fit start, on CUDA.

    Host RSS counts every allocation of the process (Python, libraries, the dataset), and
    memory freed by an earlier trial of a multirun may still be resident, so compare runs
    of one sweep with care; the growth figure is the less polluted of the two.
    """

    def __init__(self) -> None:
        self.start_rss: float | None = None
        self.reset = False

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.reset = reset_peak_rss()
        self.start_rss = current_rss_mib() if self.reset else None
        if pl_module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(pl_module.device)

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        peak = peak_rss_mib()
        pl_module.log("memory/peak_rss_mb", peak, on_step=False, on_epoch=True)
        if self.start_rss is not None:
            pl_module.log("memory/rss_growth_mb", peak - self.start_rss, on_step=False,
                          on_epoch=True)
        if pl_module.device.type == "cuda":
            cuda_peak = torch.cuda.max_memory_allocated(pl_module.device) / MIB
            pl_module.log("memory/cuda_peak_mb", cuda_peak, on_step=False, on_epoch=True)
