"""Lightning's checkpoint writer, with every local save renamed into place from beside its target."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning_fabric.utilities.cloud_io import get_filesystem
from pytorch_lightning.plugins.io import TorchCheckpointIO
from typing_extensions import override

from trainlab.atomic_files import write_atomically


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose local saves cannot be half-written (:mod:`trainlab.atomic_files`).

    Lightning writes a checkpoint through fsspec's temporary file in the system's temp dir and
    moves it into place; where the run dir lies on another filesystem the move is a copy over
    the old file, so a kill during it leaves a truncated ``last.ckpt``, and a full disk a
    truncated ``best-*.ckpt`` under its real name. Here the checkpoint is serialized into a
    temporary file in the checkpoint's own directory and renamed over the old one only once it
    is whole and on disk. Remote paths (``s3://`` ...) keep Lightning's own save. Set in
    ``conf/trainer/default.yaml`` as ``trainer.plugins``; loading and removing are Lightning's.
    """

    @override
    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any,
                        storage_options: Any | None = None) -> None:
        if storage_options is not None or not isinstance(get_filesystem(path), LocalFileSystem):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        buffer = io.BytesIO()  # serialized first, as Lightning does: a full disk then fails the
        torch.save(checkpoint, buffer)  # write with its own OSError, not inside torch's zip writer
        write_atomically(Path(path), lambda file: file.write(buffer.getbuffer()))
