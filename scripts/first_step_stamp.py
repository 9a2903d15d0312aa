"""A callback for ``scripts/bench.py --startup``: note when the first training step begins.

Used as ``+callbacks.first_step._target_=first_step_stamp.FirstStepStamp`` with ``scripts/`` on
``PYTHONPATH``; it is a probe of the benchmark, not part of the library.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytorch_lightning as pl


class FirstStepStamp(pl.Callback):
    """Write ``time.time()`` to ``path`` at the first ``on_train_batch_start``, then stop the run.

    Args:
        path: file that receives the Unix time, in seconds, as text.
    """

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if not self.path.exists():
            self.path.write_text(repr(time.time()))
            trainer.should_stop = True
