"""torchvision's batch-level ops: RandAugment, and MixUp and CutMix, which also mix labels."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.transforms import v2

from trainlab.augment.base import ImageOp, check


class RandAugment(ImageOp):
    """torchvision's RandAugment (Cubuk et al., 2020) applied to the whole batch in one call.

    One draw of ``num_ops`` operations, and of their signs, is shared by every image of the
    batch: torchvision samples them once per call and this op calls it once per batch instead
    of looping over samples, so only successive batches see different ops. Images go through
    uint8, the dtype the ops are defined for, so the output is quantized to steps of 1/255.
    The draw uses the CPU generator.

    Args:
        num_ops: Operations applied in sequence.
        magnitude: Strength of every operation, on torchvision's 0..30 scale.
    """

    _BINS = 31  # torchvision's default num_magnitude_bins

    def __init__(self, num_ops: int = 2, magnitude: int = 9) -> None:
        super().__init__()
        check(isinstance(num_ops, int) and num_ops >= 0, "num_ops", num_ops, "an int >= 0")
        ok = isinstance(magnitude, int) and 0 <= magnitude < self._BINS
        check(ok, "magnitude", magnitude, f"an int in [0, {self._BINS - 1}]")
        self.randaugment = v2.RandAugment(num_ops, magnitude, num_magnitude_bins=self._BINS)

    def transform(self, x: Tensor) -> Tensor:
        as_uint8 = (x * 255).round().clamp(0, 255).to(torch.uint8)
        return self.randaugment(as_uint8).to(x.dtype) / 255


class _BatchMix(nn.Module):
    """Checks shared by the torchvision mixing wrappers; subclasses set ``_mix_cls``."""

    _mix_cls: type[v2.Transform]

    def __init__(self, alpha: float, num_classes: int) -> None:
        super().__init__()
        check(alpha > 0.0, "alpha", alpha, "> 0 (the Beta distribution's concentration)")
        ok = isinstance(num_classes, int) and num_classes >= 2
        check(ok, "num_classes", num_classes, "an int >= 2")
        self.num_classes = num_classes
        self.mix = self._mix_cls(alpha=float(alpha), num_classes=num_classes)

    def forward(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        if y.ndim == 1 and y.dtype.is_floating_point:
            raise ValueError(f"y must hold int64 class indices when 1-D, got dtype {y.dtype}")
        if y.ndim == 2 and y.shape[1] != self.num_classes:
            raise ValueError(
                f"soft labels y must have num_classes={self.num_classes} columns, "
                f"got shape {tuple(y.shape)}"
            )
        return self.mix(x, y)


class MixUp(_BatchMix):
    """torchvision's MixUp (Zhang et al., 2018): blend each image with its batch neighbour.

    Sample i is mixed with sample i-1 (``roll(1)``), so the batch must be shuffled; one
    ``lam ~ Beta(alpha, alpha)`` per batch, drawn on the CPU. Returns soft labels
    (N, num_classes); soft labels in are mixed the same way.

    Args:
        alpha: Beta concentration; small values keep most mixes close to one image.
        num_classes: Width of the one-hot labels.
    """

    _mix_cls = v2.MixUp


class CutMix(_BatchMix):
    """torchvision's CutMix (Yun et al., 2019): paste a box from each image's batch neighbour.

    One box per batch, with area fraction ``1 - lam``, ``lam ~ Beta(alpha, alpha)`` drawn on
    the CPU; labels are weighted by the pasted area. Returns soft labels (N, num_classes).

    Args:
        alpha: Beta concentration.
        num_classes: Width of the one-hot labels.
    """

    _mix_cls = v2.CutMix
