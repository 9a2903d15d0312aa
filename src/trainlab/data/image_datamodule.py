"""One DataModule for every image dataset: uint8 tensors in memory, batched transforms."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Literal

import torch
from typing_extensions import override

from trainlab.data.in_memory import InMemoryDataModule
from trainlab.data.sources import ImageSplits
from trainlab.errors import ConfigError

log = logging.getLogger(__name__)

Normalize = Literal["standard", "minmax", "none"]
NORMALIZE_CHOICES = ("standard", "minmax", "none")


def channel_stats(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and (unbiased) std of uint8 images (N, C, H, W), in [0, 1] units, float64.

    Computed from each channel's 256-bin histogram, so no float copy of the images is made
    (345 MB in float64 for Fashion-MNIST's training split).
    """
    values = torch.arange(256, dtype=torch.float64) / 255.0
    means, stds = [], []
    for c in range(images.shape[1]):
        counts = torch.bincount(images[:, c].reshape(-1), minlength=256).to(torch.float64)
        n = counts.sum()
        mean = (counts * values).sum() / n
        means.append(mean)
        stds.append(((counts * (values - mean) ** 2).sum() / (n - 1)).sqrt())
    return torch.stack(means), torch.stack(stds)


class ImageDataModule(InMemoryDataModule):
    """Image classification data held as uint8 tensors, served as whole batches.

    On a GPU the uint8 splits are copied to it once and batches are cut there
    (:class:`~trainlab.data.in_memory.InMemoryDataModule`). Batches leave the loader as uint8;
    :meth:`on_after_batch_transfer` converts them to float on the batch's device, applies
    ``augment`` to training batches only, then normalizes with statistics of the training
    split.

    Args:
        source: callable returning the official splits (see ``trainlab.data.sources``).
        input_shape: (C, H, W) the config promises the model; checked against the data.
        num_classes: number of classes the config promises; checked against the data.
        val_size: images carved from the training split for validation (fixed ``split_seed``).
        batch_size: training batch size (per process).
        eval_batch_size: batch size for validation and test.
        normalize: ``standard`` (per-channel mean/std of the training split), ``minmax``
            (per-channel min/max of the training split) or ``none`` (raw 0..255 values).
        augment: batched op ``(x, y) -> (x, y)`` on [0, 1] images of training batches.
        train_subset: keep only this many training images (studies of overfitting); None = all.
        split_seed: seed of the validation split and the subset.
        shuffle_seed: base seed of the per-epoch training order.
    """

    def __init__(self, source: Callable[[], ImageSplits], input_shape: Sequence[int],
                 num_classes: int, val_size: int = 5000, batch_size: int = 128,
                 eval_batch_size: int = 1000, normalize: Normalize = "standard",
                 augment: Callable | None = None, train_subset: int | None = None,
                 split_seed: int = 0, shuffle_seed: int = 0) -> None:
        super().__init__()
        if normalize not in NORMALIZE_CHOICES:
            raise ConfigError(f"data.normalize must be one of {NORMALIZE_CHOICES}, got {normalize!r}")
        for key, value, low in (("data.batch_size", batch_size, 1),
                                ("data.eval_batch_size", eval_batch_size, 1),
                                ("data.val_size", val_size, 0)):
            if not isinstance(value, int) or value < low:
                raise ConfigError(f"{key} must be an integer >= {low}, got {value!r}")
        if train_subset is not None and train_subset < 1:
            raise ConfigError(f"data.train_subset must be null or >= 1, got {train_subset}")
        self.source = source
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.val_size, self.train_subset = val_size, train_subset
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.normalize = normalize
        self.augment = augment
        self.split_seed, self.shuffle_seed = split_seed, shuffle_seed
        self.shift = torch.zeros(self.input_shape[0])
        self.scale = torch.ones(self.input_shape[0])
        # (device, dtype, shift, scale, (per_level, per_unit, bias)), see _affine
        self._norm_cache: tuple = ()

    @override
    def setup(self, stage: str | None = None) -> None:
        if not self.splits:
            self._read_splits()
        if stage == "fit":  # only fitting steps the optimizer; a test may batch as it likes
            self._check_training_batches()

    def _check_training_batches(self) -> None:
        """Refuse a ``batch_size`` that would give no training batch: the incomplete last
        batch is dropped (``drop_last_train``), so fit would end at once, having trained nothing."""
        n_train = len(self.splits["train"][0])
        if self.drop_last_train and self.batch_size > n_train:
            subset = f" and data.train_subset={self.train_subset}" if self.train_subset is not None else ""
            raise ConfigError(f"data.batch_size={self.batch_size} is larger than the {n_train} training "
                              f"images left after data.val_size={self.val_size}{subset}; incomplete "
                              "batches are dropped, so no optimizer step would run: set "
                              f"data.batch_size <= {n_train}")

    def _read_splits(self) -> None:
        """Read the source, carve validation (and the subset) from train, fit normalization."""
        data = self.source()
        shape = tuple(data.train_x.shape[1:])
        if shape != self.input_shape:
            raise ConfigError(f"data.input_shape is {list(self.input_shape)} but the data is {list(shape)}")
        found = int(max(data.train_y.max(), data.test_y.max())) + 1
        if found > self.num_classes:
            raise ConfigError(f"data.num_classes is {self.num_classes} but labels go up to {found - 1}")
        if self.val_size >= len(data.train_x):
            raise ConfigError(f"data.val_size must be < {len(data.train_x)} (training images), "
                              f"got {self.val_size}")
        order = torch.randperm(len(data.train_x), generator=torch.Generator().manual_seed(self.split_seed))
        val_idx, train_idx = order[: self.val_size], order[self.val_size :]
        if self.train_subset is not None:
            train_idx = train_idx[: self.train_subset]
        train_x = data.train_x[train_idx]
        self.splits = {
            "train": (train_x, data.train_y[train_idx]),
            "val": (data.train_x[val_idx], data.train_y[val_idx]),
            "test": (data.test_x, data.test_y),
        }
        self.shift, self.scale = self._normalization(train_x)
        log.info("Data: %d train / %d val / %d test, normalize=%s", len(train_x), len(val_idx),
                 len(data.test_x), self.normalize)

    def _normalization(self, train_x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``shift`` and ``scale`` such that ``(x01 - shift) / scale`` is the model input."""
        channels = train_x.shape[1]
        if self.normalize == "standard":
            mean, std = channel_stats(train_x)
            return mean.float(), std.clamp_min(1e-8).float()
        if self.normalize == "minmax":
            flat = train_x.transpose(0, 1).reshape(channels, -1)
            low, high = flat.min(dim=1).values.float() / 255, flat.max(dim=1).values.float() / 255
            return low, (high - low).clamp_min(1e-8)
        return torch.zeros(channels), torch.full((channels,), 1 / 255)

    def to_model_input(self, x: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """uint8 images -> normalized float images (no augmentation): a cast, then in place
        ``* (1 / (255 * scale)) + (-shift / scale)``, within 1 float32 ulp of
        ``(x / 255 - shift) / scale`` (2x faster than one ``addcmul`` from uint8, which
        converts element by element)."""
        per_level, _, bias = self._affine(x.device, dtype)
        return x.to(dtype, copy=True).mul_(per_level).add_(bias)

    def _normalize(self, x01: torch.Tensor) -> torch.Tensor:
        """Augmented [0, 1] images -> normalized: ``x01 * (1 / scale) + (-shift / scale)``
        in one pass, into a new tensor (an op's output may be a view of another's)."""
        _, per_unit, bias = self._affine(x01.device, x01.dtype)
        return torch.addcmul(bias, x01, per_unit)

    def _affine(self, device: torch.device, dtype: torch.dtype
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(1 / (255 * scale), 1 / scale, -shift / scale) shaped (1, C, 1, 1), made once per
        device/dtype (not moved to the device every batch) and made again when
        ``shift``/``scale`` change (``setup``, ``load_state_dict``)."""
        cache = self._norm_cache
        if not (cache and cache[0] == device and cache[1] == dtype and cache[2] is self.shift
                and cache[3] is self.scale):
            shift, scale = self.shift.double(), self.scale.double()
            affine = tuple(t.view(1, -1, 1, 1).to(device, dtype)
                           for t in (1.0 / (255.0 * scale), 1.0 / scale, -shift / scale))
            cache = self._norm_cache = (device, dtype, self.shift, self.scale, affine)
        return cache[4]

    @override
    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        if not isinstance(batch, (tuple, list)):
            return batch  # e.g. Lightning's model summary feeding example_input_array
        x, y = batch
        trainer = self.trainer
        # float64 runs (trainer.precision=64-true) get float64 inputs from the start
        dtype = torch.float64 if trainer is not None and \
            trainer.lightning_module.dtype == torch.float64 else torch.float32
        if self.augment and trainer is not None and trainer.training:  # empty Compose: skipped
            # the ops work on [0, 1] images (uint8 / 255.0 is float32 in one pass)
            x = x.to(torch.float64).div_(255.0) if dtype == torch.float64 else torch.div(x, 255.0)
            x, y = self.augment(x, y)
            return self._normalize(x), y
        return self.to_model_input(x, dtype), y

    @override
    def state_dict(self) -> dict:
        return {"shift": self.shift.tolist(), "scale": self.scale.tolist()}

    @override
    def load_state_dict(self, state_dict: dict) -> None:
        self.shift = torch.tensor(state_dict["shift"])
        self.scale = torch.tensor(state_dict["scale"])
