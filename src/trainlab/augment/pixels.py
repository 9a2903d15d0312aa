"""Ops that change pixel values in place: Gaussian noise and random erasing."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from trainlab.augment.base import ImageOp, check, check_probability, check_range_pair


class GaussianNoise(ImageOp):
    """Add independent N(0, std^2) noise to every pixel.

    Args:
        std: Standard deviation, in pixel units of the [0, 1] range.
        clip: Clamp the result back to [0, 1].
    """

    def __init__(self, std: float, clip: bool = True) -> None:
        super().__init__()
        check(std >= 0.0, "std", std, ">= 0")
        self.std, self.clip = float(std), bool(clip)

    def transform(self, x: Tensor) -> Tensor:
        noisy = x + self.std * torch.randn_like(x)
        return noisy.clamp(0.0, 1.0) if self.clip else noisy


class Erasing(ImageOp):
    """Random erasing (Zhong et al., 2020): fill one box per sample with ``value``.

    Like torchvision's ``RandomErasing``, up to 10 boxes are drawn per sample and the first
    that fits inside the image is used; a sample where none fits is left unchanged.

    Args:
        p: Probability that a sample is erased.
        scale: Range of the box area as a fraction of the image area.
        ratio: Range of the box aspect ratio (height / width), sampled log-uniformly.
        value: Fill value, in [0, 1] pixel units.
    """

    _ATTEMPTS = 10

    def __init__(
        self,
        p: float = 0.5,
        scale: tuple[float, float] = (0.02, 0.33),
        ratio: tuple[float, float] = (0.3, 3.3),
        value: float = 0.0,
    ) -> None:
        super().__init__()
        self.p = check_probability(p)
        self.scale = check_range_pair("scale", scale, 0.0, 1.0)
        self.ratio = check_range_pair("ratio", ratio, 0.0, math.inf)
        self.value = float(value)

    def transform(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        dev, tries = x.device, (n, self._ATTEMPTS)
        area = h * w * torch.empty(tries, device=dev).uniform_(*self.scale)
        log_ratio = torch.empty(tries, device=dev).uniform_(*map(math.log, self.ratio))
        box_h = (area * log_ratio.exp()).sqrt().round().long()
        box_w = (area / log_ratio.exp()).sqrt().round().long()
        fits = (box_h >= 1) & (box_h < h) & (box_w >= 1) & (box_w < w)
        first = fits.int().argmax(dim=1, keepdim=True)  # first fitting try (0 if none fits)
        box_h, box_w = box_h.gather(1, first), box_w.gather(1, first)  # (N, 1)
        erase = fits.any(dim=1) & (torch.rand(n, device=dev) < self.p)
        top = (torch.rand(n, 1, device=dev) * (h - box_h + 1)).long()
        left = (torch.rand(n, 1, device=dev) * (w - box_w + 1)).long()
        rows, cols = torch.arange(h, device=dev), torch.arange(w, device=dev)
        in_rows = (rows >= top) & (rows < top + box_h)  # (N, H)
        in_cols = (cols >= left) & (cols < left + box_w)  # (N, W)
        box = in_rows[:, :, None] & in_cols[:, None, :] & erase[:, None, None]
        return x.masked_fill(box[:, None], self.value)


