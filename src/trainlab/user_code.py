"""User code outside the package (a network, a dataset, a callback named by ``_target_`` or
``class_path``) is imported from the working directory by every entry point.

``python train.py`` run from the repository and ``python -m`` find modules there because Python
puts the script's directory or the working directory first on ``sys.path``; the installed
``trainlab-train``, ``trainlab-eval`` and ``trainlab-cli`` scripts start from their ``bin/``
instead, so they add the working directory the same way (``PYTHONPATH`` still comes first).
"""

from __future__ import annotations

import os
import sys


def import_from_working_dir() -> None:
    """Let ``_target_: mymodule.MyNet`` find ``./mymodule.py`` as ``python -m`` would."""
    cwd = os.getcwd()
    if "" not in sys.path and cwd not in sys.path:
        sys.path.insert(0, cwd)
