"""Where the datasets come from. Each source returns uint8 images (N, C, H, W) and labels.

A source is a plain callable, so a new dataset is a function plus a YAML file under
``conf/data/``; :func:`image_arrays` and :func:`image_folder` read a user's own arrays or
image files. Nothing here fakes data: when a dataset cannot be found or fetched, the error
says how to get it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainlab.data.idx import default_cache_dir, read_idx_cached
from trainlab.errors import ConfigError

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


def _as_uint8_nchw(images: Any, name: str) -> torch.Tensor:
    """Images (N, H, W), (N, H, W, C) or (N, C, H, W) with C <= 4, uint8 0..255 or float 0..1,
    as uint8 (N, C, H, W)."""
    x = torch.as_tensor(images)
    if x.ndim == 3:
        x = x.unsqueeze(1)
    elif x.ndim == 4 and x.shape[-1] <= 4 < x.shape[1]:
        x = x.permute(0, 3, 1, 2)
    if x.ndim != 4:
        raise DataUnavailableError(f"{name}: images must be (N, H, W), (N, H, W, C) or (N, C, H, W), "
                                   f"got shape {tuple(x.shape)}")
    if x.is_floating_point():
        if x.numel() and (x.min() < 0 or x.max() > 1):
            raise DataUnavailableError(f"{name}: float images must lie in [0, 1] (or pass uint8 0..255)")
        x = (x * 255).round()
    elif x.dtype != torch.uint8 and x.numel() and (x.min() < 0 or x.max() > 255):
        raise DataUnavailableError(f"{name}: integer images must lie in 0..255")
    return x.to(torch.uint8).contiguous()


ARRAY_NAMES = ("x_train", "y_train", "x_test", "y_test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _class_labels(labels: np.ndarray, where: str) -> torch.Tensor:
    """Labels (N,) of integers 0..K-1 (a float array of whole numbers too) as int64.

    Raises:
        DataUnavailableError: naming ``where`` and the first bad label's index and value.
    """
    if labels.ndim != 1:
        raise DataUnavailableError(f"{where}: labels must be one integer per image, shape (N,), "
                                   f"got shape {labels.shape}")
    if labels.dtype.kind == "f":
        # .long() would truncate 1.5 to 1 and turn NaN into a huge negative class
        fractional = np.flatnonzero(~np.isfinite(labels) | (labels != np.round(labels)))
        if len(fractional):
            i = fractional[0]
            raise DataUnavailableError(f"{where}[{i}] is {labels[i]}: labels must be integers "
                                       f"0..K-1 ({len(fractional)} are not)")
    elif labels.dtype.kind not in "iub":
        raise DataUnavailableError(f"{where}: labels must be integers 0..K-1, got dtype {labels.dtype}")
    negative = np.flatnonzero(labels < 0)
    if len(negative):
        i = negative[0]
        raise DataUnavailableError(f"{where}[{i}] is {labels[i]}: labels must be integers 0..K-1 "
                                   f"({len(negative)} are negative)")
    return torch.as_tensor(labels).long()


def image_arrays(path: str) -> ImageSplits:
    """Your own arrays: a NumPy ``.npz`` file holding ``x_train``, ``y_train``, ``x_test`` and
    ``y_test`` (``numpy.savez(path, x_train=..., ...)``). Images are (N, H, W), (N, H, W, C) or
    (N, C, H, W), uint8 0..255 or float 0..1; labels are integers 0..K-1, one per image."""
    if not Path(path).is_file():
        raise DataUnavailableError(f"data.source.path={path!r}: no such .npz file")
    with np.load(path) as arrays:
        missing = [k for k in ARRAY_NAMES if k not in arrays]
        if missing:
            raise DataUnavailableError(f"data.source.path={path!r} lacks arrays {missing} (it holds "
                                       f"{sorted(arrays.files)})")
        read = {}
        for split in ("train", "test"):
            x = _as_uint8_nchw(arrays[f"x_{split}"], f"{path}: x_{split}")
            y = _class_labels(arrays[f"y_{split}"], f"{path}: y_{split}")
            if len(x) == 0:
                raise DataUnavailableError(f"{path}: x_{split} holds no images; each split needs some")
            if len(x) != len(y):
                raise DataUnavailableError(f"{path}: x_{split} holds {len(x)} images but y_{split} "
                                           f"{len(y)} labels; each image needs exactly one label")
            read[f"{split}_x"], read[f"{split}_y"] = x, y
        return ImageSplits(**read)


def read_image_file(path: Path, channels: int) -> torch.Tensor:
    """A PNG or JPEG file as uint8 (C, H, W): grayscale for ``channels`` 1, else RGB (Pillow).

    Palette and RGBA images are converted by Pillow (alpha is dropped, as torchvision's
    ``ImageFolder`` does); 16-bit grayscale is scaled from 0..65535 to 0..255.
    """
    from PIL import Image

    with Image.open(path) as image:
        if image.mode.startswith("I"):  # "I;16*" or "I": Pillow's convert("L") clips at 255
            values = np.asarray(image).astype(np.int64)
            if values.size and (values.min() < 0 or values.max() > 65535):
                raise DataUnavailableError(f"{path}: pixel values must lie in 0..65535 (16-bit), "
                                           f"got {values.min()}..{values.max()}")
            # round(v * 255 / 65535) in integers: 65535 -> 255, 257 -> 1
            image = Image.fromarray(((values * 255 + 65535 // 2) // 65535).astype(np.uint8), "L")
        pixels = torch.from_numpy(np.asarray(image.convert("L" if channels == 1 else "RGB")).copy())
    return pixels.unsqueeze(0) if channels == 1 else pixels.permute(2, 0, 1).contiguous()


def save_png(image: torch.Tensor, path: Path) -> None:
    """uint8 (C, H, W) with C 1 or 3 as a PNG file (Pillow)."""
    from PIL import Image

    pixels = image.squeeze(0) if image.shape[0] == 1 else image.permute(1, 2, 0)
    Image.fromarray(pixels.contiguous().numpy()).save(path)


def _read_folder(split_dir: Path, classes: list[str], channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for label, name in enumerate(classes):
        files = sorted(f for f in (split_dir / name).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:  # class k is the k-th folder: an empty one is a class without examples
            raise DataUnavailableError(f"{split_dir / name} (class {label}) holds no "
                                       f"{'/'.join(IMAGE_SUFFIXES)} images: every class folder "
                                       "needs at least one; remove the folder or fill it")
        for file in files:
            image = read_image_file(file, channels)
            if images and image.shape != images[0].shape:
                raise DataUnavailableError(f"{file} is {list(image.shape)} (C, H, W) but the first image "
                                           f"is {list(images[0].shape)}: resize them to one size")
            images.append(image)
            labels.append(label)
    return torch.stack(images), torch.tensor(labels)


def image_folder(root: str, channels: int = 3) -> ImageSplits:
    """Your own image files: ``root/train/<class>/*.png`` and ``root/test/<class>/*.png`` (JPEG
    too), all of one size. Class k is the k-th class folder in sorted order, as in torchvision's
    ``ImageFolder``; ``channels`` 1 reads them as grayscale, 3 as RGB."""
    if channels not in (1, 3):
        raise ConfigError(f"data.source.channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")
    base = Path(root)
    dirs = {split: base / split for split in ("train", "test")}
    if not all(d.is_dir() for d in dirs.values()):
        raise DataUnavailableError(f"data.source.root={root!r} must hold train/ and test/, each with "
                                   "one folder of images per class")
    classes = sorted(d.name for d in dirs["train"].iterdir() if d.is_dir())
    test_classes = sorted(d.name for d in dirs["test"].iterdir() if d.is_dir())
    if test_classes != classes:
        raise DataUnavailableError(f"{root}: test/ has class folders {test_classes}, train/ has {classes}")
    if len(classes) < 2:
        raise DataUnavailableError(f"{dirs['train']} has {len(classes)} class folder(s) {classes}: a "
                                   "classifier needs at least 2, one folder of images per class")
    train_x, train_y = _read_folder(dirs["train"], classes, channels)
    test_x, test_y = _read_folder(dirs["test"], classes, channels)
    log.info("Read %d + %d images of classes %s from %s", len(train_x), len(test_x), classes, root)
    return ImageSplits(train_x, train_y, test_x, test_y)
