"""Files a later step reads, written so that a kill or a full disk never leaves half of one.

The bytes go to a temporary file in the target's own directory (so the rename below never
crosses a filesystem and never becomes a copy), are flushed and ``fsync``'ed, and
``os.replace`` swaps the file in: a reader sees the old file or the whole new one, never a
part. On any error, a kill's ``KeyboardInterrupt`` or a full disk's ``OSError`` included, the
temporary file is removed and the old file stays as it was. Light: no torch.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def temporary_name(path: Path) -> Path:
    """Where ``path`` is written before it is renamed into place (hidden, one per process)."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_atomically(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Write ``path`` with ``write(file)`` into a temporary file beside it, then rename it in.

    Raises:
        Whatever ``write`` or the file system raised; ``path`` is then unchanged.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        with open(tmp, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _sync_dir(path.parent)
    return path


def write_text_atomically(path: str | Path, text: str) -> Path:
    """:func:`write_atomically` for text (UTF-8)."""
    return write_atomically(path, lambda file: file.write(text.encode()))


def _sync_dir(directory: Path) -> None:
    """Make the rename itself durable (a crash of the machine keeps the new name)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # a filesystem that cannot open directories: the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
