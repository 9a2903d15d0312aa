"""Where a run's numbers come from: the code's git commit (and whether the tree had uncommitted
changes), the versions of the libraries that ran it, and the device."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = ("trainlab", "torch", "pytorch-lightning", "hydra-core", "torchmetrics")
SOURCE = Path(__file__).resolve().parent


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(SOURCE), *args], capture_output=True, text=True,
                              timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def device_name() -> str:
    """The GPU's name, else the CPU's model name."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance() -> dict[str, str | bool | None]:
    """``provenance/*`` keys for results.json. Outside a git checkout (a wheel install) the commit
    is None and the installed trainlab version says which release ran."""
    # the checkout trainlab runs from; not a repository that merely holds an installed copy
    tracked = _git("ls-files", "--error-unmatch", "__init__.py") is not None
    commit = _git("rev-parse", "HEAD") if tracked else None
    dirty = None if commit is None else bool(_git("status", "--porcelain", "--untracked-files=no"))
    out: dict[str, str | bool | None] = {"provenance/git_commit": commit, "provenance/git_dirty": dirty}
    for package in PACKAGES:
        try:
            out[f"provenance/{package}"] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[f"provenance/{package}"] = None
    out["provenance/python"] = platform.python_version()
    out["provenance/device"] = device_name()
    return out
