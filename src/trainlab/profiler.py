"""The Trainer's profiler when none is asked for: Lightning's pass-through, without its cost."""

from __future__ import annotations

import contextlib

from pytorch_lightning.profilers import PassThroughProfiler
from typing_extensions import override

_NOTHING = contextlib.nullcontext()


class NoProfiler(PassThroughProfiler):
    """Profiles nothing, like Lightning's default ``PassThroughProfiler``, but its ``profile``
    returns one shared ``nullcontext`` instead of building a generator-based context manager.

    Lightning wraps every hook call in ``profiler.profile(...)``: about 120 times per training
    step with trainlab's callbacks, 0.1-0.2 ms per step on the benchmark machine
    (BENCHMARKS.md). ``trainer.profiler=simple`` (or ``advanced``, ``pytorch``) replaces it.
    """

    @override
    def profile(self, action_name: str) -> contextlib.nullcontext:
        return _NOTHING
