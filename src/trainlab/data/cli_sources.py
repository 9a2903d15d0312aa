"""The data sources as callable objects, for LightningCLI / jsonargparse configs.

Hydra binds a source's arguments with ``_partial_: true``; jsonargparse cannot bind arguments
to a plain function, but it builds any class from ``class_path``/``init_args``. Each class here
holds the arguments of one function of :mod:`trainlab.data.sources` and calls it, so::

    source:
      class_path: trainlab.data.cli_sources.Digits
      init_args: {test_fraction: 0.25}

is the LightningCLI form of ``partial(trainlab.data.sources.digits, test_fraction=0.25)``.
A function without arguments also works as a bare import path
(``source: trainlab.data.sources.digits``).
"""

from __future__ import annotations

from dataclasses import dataclass

from trainlab.data import sources
from trainlab.data.sources import ImageSplits
from trainlab.data.tabular import csv_table, sklearn_table


@dataclass(frozen=True)
class Digits:
    """:func:`trainlab.data.sources.digits` with its arguments."""

    test_fraction: float = 0.25
    split_seed: int = 0

    def __call__(self) -> ImageSplits:
        return sources.digits(self.test_fraction, self.split_seed)


@dataclass(frozen=True)
class FashionMNIST:
    """:func:`trainlab.data.sources.fashion_mnist` with its arguments."""

    root: str | None = None
    download: bool = True

    def __call__(self) -> ImageSplits:
        return sources.fashion_mnist(self.root, self.download)


@dataclass(frozen=True)
class MNIST:
    """:func:`trainlab.data.sources.mnist` with its arguments."""

    root: str | None = None

    def __call__(self) -> ImageSplits:
        return sources.mnist(self.root)


@dataclass(frozen=True)
class CIFAR10:
    """:func:`trainlab.data.sources.cifar10` with its arguments."""

    root: str | None = None

    def __call__(self) -> ImageSplits:
        return sources.cifar10(self.root)


@dataclass(frozen=True)
class ImageArrays:
    """:func:`trainlab.data.sources.image_arrays` with its arguments."""

    path: str

    def __call__(self) -> ImageSplits:
        return sources.image_arrays(self.path)


@dataclass(frozen=True)
class ImageFolder:
    """:func:`trainlab.data.sources.image_folder` with its arguments."""

    root: str
    channels: int = 3

    def __call__(self) -> ImageSplits:
        return sources.image_folder(self.root, self.channels)


@dataclass(frozen=True)
class SklearnTable:
    """:func:`trainlab.data.tabular.sklearn_table` with its arguments."""

    name: str

    def __call__(self) -> tuple:
        return sklearn_table(self.name)


@dataclass(frozen=True)
class CsvTable:
    """:func:`trainlab.data.tabular.csv_table` with its arguments."""

    path: str

    def __call__(self):
        return csv_table(self.path)
