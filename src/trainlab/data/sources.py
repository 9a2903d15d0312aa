"""Where the real datasets come from. Each source returns uint8 images (N, C, H, W) and labels.

A source is a plain callable so a new dataset is a function plus a YAML file under
``conf/data/``. Nothing here fakes data: when a dataset cannot be found or fetched, the error
says how to get it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from trainlab.data.idx import default_cache_dir, read_idx_cached

log = logging.getLogger(__name__)

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
_IDX_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}


class DataUnavailableError(RuntimeError):
    """No copy of a dataset was found and none could be downloaded."""


@dataclass(frozen=True)
class ImageSplits:
    """The official train and test splits of an image dataset, as uint8 (N, C, H, W)."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor

    def __post_init__(self) -> None:
        for name in ("train_x", "test_x"):
            t = getattr(self, name)
            if t.dtype != torch.uint8 or t.ndim != 4:
                raise ValueError(f"{name} must be uint8 (N, C, H, W), got {t.dtype} {tuple(t.shape)}")
        if len(self.train_x) != len(self.train_y) or len(self.test_x) != len(self.test_y):
            raise ValueError("images and labels differ in length")


def _find_idx(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / stem, directory / f"{stem}.gz",
                      directory / "FashionMNIST" / "raw" / stem,
                      directory / "FashionMNIST" / "raw" / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _read_idx_dir(directory: Path) -> ImageSplits | None:
    paths = {key: _find_idx(directory, stem) for key, stem in _IDX_FILES.items()}
    if not any(paths.values()):
        return None
    missing = [_IDX_FILES[k] for k, p in paths.items() if p is None]
    if missing:
        raise DataUnavailableError(f"{directory} holds only part of the IDX files; missing {missing}")
    cache = default_cache_dir()
    arrays = {key: read_idx_cached(p, cache) for key, p in paths.items()}
    log.info("Read IDX files from %s", directory)
    return ImageSplits(
        train_x=arrays["train_x"].unsqueeze(1),
        train_y=arrays["train_y"].long(),
        test_x=arrays["test_x"].unsqueeze(1),
        test_y=arrays["test_y"].long(),
    )


def _torchvision(name: str, root: Path) -> ImageSplits:
    import torchvision

    cls = getattr(torchvision.datasets, name)
    try:
        train = cls(root, train=True, download=True)
        test = cls(root, train=False, download=True)
    except Exception as err:  # urllib and torchvision raise a zoo of error types offline
        raise DataUnavailableError(
            f"{name}: no local copy found and the download into {root} failed ({err}). "
            + _HOW_TO_GET.get(name, "Download it on a machine with internet and pass data.source.root=DIR.")
        ) from err

    def images(ds) -> torch.Tensor:
        data = torch.as_tensor(ds.data)
        return data.unsqueeze(1) if data.ndim == 3 else data.permute(0, 3, 1, 2).contiguous()

    return ImageSplits(images(train), torch.as_tensor(train.targets).long(),
                       images(test), torch.as_tensor(test.targets).long())


_HOW_TO_GET = {
    "FashionMNIST": (
        "Get it one of three ways: (1) on Debian/Ubuntu `sudo apt-get install "
        "dataset-fashion-mnist` (files land in /usr/share/datasets/fashion-mnist); (2) run once "
        "with internet so torchvision downloads it into data.source.root; (3) copy the four "
        "*-ubyte.gz files into a directory and pass data.source.root=DIR."
    ),
}


def default_root() -> Path:
    """Directory for downloads: ``$TRAINLAB_DATA`` or ``./data``."""
    return Path(os.environ.get("TRAINLAB_DATA", "data"))


def fashion_mnist(root: str | None = None, download: bool = True) -> ImageSplits:
    """Fashion-MNIST (60k/10k, 1x28x28, 10 classes).

    Search order: ``root`` (IDX files, gzipped or not), Debian's dataset package, then
    torchvision's download into ``root`` (or :func:`default_root`).
    """
    if root is not None:
        splits = _read_idx_dir(Path(root))
        if splits is not None:
            return splits
    splits = _read_idx_dir(DEBIAN_FASHION_MNIST)
    if splits is not None:
        return splits
    if not download:
        raise DataUnavailableError("FashionMNIST: not found locally and download=false. "
                                   + _HOW_TO_GET["FashionMNIST"])
    return _torchvision("FashionMNIST", Path(root) if root else default_root())


def mnist(root: str | None = None, download: bool = True) -> ImageSplits:
    """MNIST through torchvision (downloads into ``root`` when absent)."""
    del download  # torchvision checks its own files; kept for a uniform signature
    return _torchvision("MNIST", Path(root) if root else default_root())


def cifar10(root: str | None = None, download: bool = True) -> ImageSplits:
    """CIFAR-10 through torchvision (downloads into ``root`` when absent)."""
    del download
    return _torchvision("CIFAR10", Path(root) if root else default_root())


def digits(test_fraction: float = 0.25, split_seed: int = 0) -> ImageSplits:
    """scikit-learn's 8x8 handwritten digits (1,797 images), shipped with the library.

    It has no official test split, so a stratified one is drawn with a fixed seed. Pixel values
    0..16 are rescaled to 0..255 so every image source is uint8 on the same scale.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = torch.from_numpy((bunch.images * (255.0 / 16.0)).round()).to(torch.uint8).unsqueeze(1)
    labels = torch.from_numpy(bunch.target).long()
    train_idx, test_idx = train_test_split(
        torch.arange(len(labels)).numpy(), test_size=test_fraction, random_state=split_seed,
        stratify=labels.numpy(),
    )
    return ImageSplits(images[train_idx], labels[train_idx], images[test_idx], labels[test_idx])
