"""Where the Hydra configs are, for ``train.py``, ``eval.py`` and ``trainlab.compose``.

The configs live in ``conf/`` at the top of the repository. ``pyproject.toml`` maps the package
``trainlab.conf`` onto that folder, so a wheel (``pip install .``) carries them as
``trainlab/conf/``. An editable install (``pip install -e .``) copies nothing, and setuptools'
editable finder does not serve a data-only package mapped outside ``src/``, so there the
checkout's ``conf/`` is read in place: an edit to it takes effect without reinstalling.
"""

from __future__ import annotations

from pathlib import Path


def config_dir() -> Path:
    """The folder holding ``train.yaml`` and ``eval.yaml``: the wheel's copy, else the checkout's."""
    package = Path(__file__).resolve().parent
    shipped = package / "conf"  # <site-packages>/trainlab/conf in a wheel install
    return shipped if shipped.is_dir() else package.parents[1] / "conf"  # <checkout>/src/trainlab


# absolute, as @hydra.main(config_path=...) and initialize_config_dir take it
CONFIG_DIR = str(config_dir())
