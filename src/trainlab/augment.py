"""Batched data augmentation: every op maps a batch ``(x, y)`` to an augmented ``(x, y)``.

The DataModule applies a :class:`Compose` of these ops in ``on_after_batch_transfer`` to
training batches only, so each op is a few tensor operations on the batch's device, with no
per-sample Python loop. ``x`` is a float batch (N, C, H, W) with pixels in [0, 1], *before*
mean/std normalization; ``y`` holds int64 class indices (N,) or soft labels (N, K).

Random parameters (flip decision, angle, crop offset, box, displacement field) are drawn per
sample from torch's global RNG on ``x.device``, so ``torch.manual_seed`` or Lightning's
``seed_everything`` makes a run reproducible. The torchvision wrappers (:class:`RandAugment`,
:class:`MixUp`, :class:`CutMix`) are the exception: they draw one set of parameters per batch
from the CPU generator, which ``torch.manual_seed`` seeds too.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.transforms import v2

from trainlab.errors import ConfigError

__all__ = [
    "Compose",
    "CutMix",
    "Elastic",
    "Erasing",
    "Flip",
    "GaussianNoise",
    "ImageOp",
    "MixUp",
    "RandAugment",
    "RandomCrop",
    "ResizeCrop",
    "Rotate90",
    "Rotation",
    "rotate",
]


def _check(ok: bool, name: str, value: object, allowed: str) -> None:
    """Raise ``ValueError`` naming the argument, its bad value and what is allowed."""
    if not ok:
        raise ConfigError(f"{name} must be {allowed}, got {value!r}")


def _check_probability(p: float) -> float:
    _check(0.0 <= p <= 1.0, "p", p, "in [0, 1]")
    return float(p)


def _check_range_pair(name: str, pair: Iterable[float], low: float, high: float) -> tuple:
    """Validate a ``(min, max)`` pair with ``low < min <= max <= high``."""
    values = tuple(float(v) for v in pair)  # Hydra passes YAML lists as ListConfig
    ok = len(values) == 2 and low < values[0] <= values[1] <= high
    _check(ok, name, values, f"a pair (min, max) with {low} < min <= max <= {high}")
    return values


def _per_sample(p: float, x: Tensor) -> Tensor:
    """Independent Bernoulli(p) decision per sample, shaped (N, 1, 1, 1) to broadcast."""
    return (torch.rand(x.shape[0], device=x.device) < p).view(-1, 1, 1, 1)


class Compose(nn.Module):
    """Apply ops in order; with no ops it is the identity.

    Note that ``len()`` makes an empty Compose falsy.

    Args:
        ops: Modules with ``forward(x, y) -> (x, y)``.
    """

    def __init__(self, ops: Iterable[nn.Module]) -> None:
        super().__init__()
        ops = list(ops)  # Hydra passes a ListConfig of instantiated ops
        for i, op in enumerate(ops):
            _check(isinstance(op, nn.Module), f"ops[{i}]", op, "an nn.Module with forward(x, y)")
        self.ops = nn.ModuleList(ops)

    def forward(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        for op in self.ops:
            x, y = op(x, y)
        return x, y

    def __len__(self) -> int:
        return len(self.ops)


class ImageOp(nn.Module):
    """Base class for ops that change the images only; subclasses implement ``transform``."""

    def forward(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        if x.ndim != 4:
            raise ValueError(f"x must be a batch of shape (N, C, H, W), got shape {tuple(x.shape)}")
        return self.transform(x), y

    def transform(self, x: Tensor) -> Tensor:
        """Augment a batch of images (N, C, H, W) in [0, 1]."""
        raise NotImplementedError


class Flip(ImageOp):
    """Mirror each sample with probability ``p``, each enabled axis decided independently.

    Args:
        horizontal: Flip left-right (the W axis).
        vertical: Flip upside-down (the H axis).
        p: Probability per sample and axis.
    """

    def __init__(self, horizontal: bool = True, vertical: bool = False, p: float = 0.5) -> None:
        super().__init__()
        _check(horizontal or vertical, "horizontal or vertical", (horizontal, vertical), "True")
        self.horizontal, self.vertical = bool(horizontal), bool(vertical)
        self.p = _check_probability(p)

    def transform(self, x: Tensor) -> Tensor:
        if self.horizontal:
            x = torch.where(_per_sample(self.p, x), x.flip(-1), x)
        if self.vertical:
            x = torch.where(_per_sample(self.p, x), x.flip(-2), x)
        return x


class Rotate90(ImageOp):
    """Rotate by ``k`` quarter turns counter-clockwise, each sample with probability ``p``.

    ``k=1`` reproduces the study notes' ``PIL.Image.rotate(90)`` (PIL turns counter-clockwise,
    as ``torch.rot90`` does on the (H, W) dims). Images must be square to keep the batch shape.

    Args:
        k: Number of quarter turns; negative turns clockwise.
        p: Probability per sample.
    """

    def __init__(self, k: int = 1, p: float = 1.0) -> None:
        super().__init__()
        _check(isinstance(k, int) and not isinstance(k, bool), "k", k, "an int (quarter turns)")
        self.k = k
        self.p = _check_probability(p)

    def transform(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        if h != w:
            raise ValueError(f"Rotate90 needs square images (H == W), got H={h}, W={w}")
        return torch.where(_per_sample(self.p, x), torch.rot90(x, self.k, dims=(-2, -1)), x)


def rotate(x: Tensor, degrees: Tensor) -> Tensor:
    """Rotate each image about its centre by its own angle.

    Args:
        x: Images (N, C, H, W).
        degrees: Angles (N,) in degrees; positive is counter-clockwise, like ``torch.rot90``.

    Returns:
        The rotated images, bilinearly interpolated, zero where they leave the frame.
    """
    n, _, h, w = x.shape
    radians = torch.deg2rad(degrees.to(device=x.device, dtype=x.dtype))
    cos, sin, zero = radians.cos(), radians.sin(), torch.zeros_like(radians)
    # affine_grid maps output to input positions in [-1, 1] per axis; the h/w factors express
    # a rotation in pixels in those units, so non-square images are rotated, not sheared.
    theta = torch.stack(
        [torch.stack([cos, -sin * h / w, zero], -1), torch.stack([sin * w / h, cos, zero], -1)], 1
    )
    grid = F.affine_grid(theta, [n, 1, h, w], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class Rotation(ImageOp):
    """Rotate each sample by its own angle drawn uniformly from [-degrees, degrees].

    Args:
        degrees: Largest rotation, in degrees.
    """

    def __init__(self, degrees: float) -> None:
        super().__init__()
        _check(0.0 <= degrees <= 180.0, "degrees", degrees, "in [0, 180]")
        self.degrees = float(degrees)

    def transform(self, x: Tensor) -> Tensor:
        angles = (torch.rand(x.shape[0], device=x.device) * 2 - 1) * self.degrees
        return rotate(x, angles)


class RandomCrop(ImageOp):
    """Zero-pad by ``padding`` pixels, then crop back to (H, W) at a random offset per sample.

    Args:
        padding: Pixels of zeros on each side; the shift is at most this many pixels per axis.
    """

    def __init__(self, padding: int = 4) -> None:
        super().__init__()
        _check(isinstance(padding, int) and padding >= 0, "padding", padding, "an int >= 0")
        self.padding = padding

    def transform(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        pad, dev = self.padding, x.device
        padded = F.pad(x, (pad, pad, pad, pad))
        # Top-left corner of each crop inside the padded image, in 0..2*pad.
        top = torch.randint(0, 2 * pad + 1, (n, 1), device=dev)
        left = torch.randint(0, 2 * pad + 1, (n, 1), device=dev)
        rows = (top + torch.arange(h, device=dev)).view(n, 1, h, 1)
        cols = (left + torch.arange(w, device=dev)).view(n, 1, 1, w)
        batch = torch.arange(n, device=dev).view(n, 1, 1, 1)
        channels = torch.arange(c, device=dev).view(1, c, 1, 1)
        return padded[batch, channels, rows, cols]


class ResizeCrop(ImageOp):
    """Zoom in: resize to ``size`` x ``size`` (bilinear), then centre-crop back to (H, W).

    The batch form of the study notes' ``Resize(size)`` + ``CenterCrop(H)``; it is
    deterministic, the same zoom for every sample.

    Args:
        size: Side of the resized image in pixels; must be at least H and W.
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        _check(isinstance(size, int) and size >= 1, "size", size, "an int >= 1")
        self.size = size

    def transform(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        if self.size < max(h, w):
            raise ValueError(f"size must be >= the image size {h}x{w} to zoom in, got {self.size}")
        zoomed = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        # Offsets rounded as torchvision's center_crop does, so the notes' pipeline is matched.
        top, left = round((self.size - h) / 2), round((self.size - w) / 2)
        return zoomed[..., top : top + h, left : left + w]


class GaussianNoise(ImageOp):
    """Add independent N(0, std^2) noise to every pixel.

    Args:
        std: Standard deviation, in pixel units of the [0, 1] range.
        clip: Clamp the result back to [0, 1].
    """

    def __init__(self, std: float, clip: bool = True) -> None:
        super().__init__()
        _check(std >= 0.0, "std", std, ">= 0")
        self.std, self.clip = float(std), bool(clip)

    def transform(self, x: Tensor) -> Tensor:
        noisy = x + self.std * torch.randn_like(x)
        return noisy.clamp(0.0, 1.0) if self.clip else noisy


def _gaussian_kernel1d(sigma: float, like: Tensor) -> Tensor:
    """Normalized 1-D Gaussian, truncated at 3 sigma."""
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, device=like.device, dtype=like.dtype)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    return kernel / kernel.sum()


class Elastic(ImageOp):
    """Elastic deformation (Simard et al., 2003) with an independent field per sample.

    Each pixel's displacement starts uniform in (-1, 1), is smoothed by a Gaussian of width
    ``sigma`` and scaled by ``alpha``; the image is resampled bilinearly, zeros outside.

    Args:
        alpha: Scale of the displacement field, in pixels.
        sigma: Width of the smoothing Gaussian, in pixels; larger is smoother.
    """

    def __init__(self, alpha: float = 34.0, sigma: float = 4.0) -> None:
        super().__init__()
        _check(alpha >= 0.0, "alpha", alpha, ">= 0")
        _check(sigma > 0.0, "sigma", sigma, "> 0")
        self.alpha, self.sigma = float(alpha), float(sigma)

    def transform(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        field = torch.rand(n, 2, h, w, device=x.device, dtype=x.dtype) * 2 - 1  # (dx, dy)
        kernel = _gaussian_kernel1d(self.sigma, x)
        r = kernel.numel() // 2
        # Separable blur of both components; zero padding as in the reference implementation
        # (scipy gaussian_filter with mode="constant"), so the field fades out at the border.
        along_w = kernel.view(1, 1, 1, -1).repeat(2, 1, 1, 1)
        field = F.conv2d(field, along_w, padding=(0, r), groups=2)
        field = F.conv2d(field, along_w.transpose(-1, -2), padding=(r, 0), groups=2)
        # Pixels to grid_sample units: the [-1, 1] range spans W (or H) pixels.
        to_grid = torch.tensor([2.0 / w, 2.0 / h], device=x.device, dtype=x.dtype)
        displacement = self.alpha * field.permute(0, 2, 3, 1) * to_grid
        eye = torch.eye(2, 3, device=x.device, dtype=x.dtype).expand(n, 2, 3)
        grid = F.affine_grid(eye, [n, 1, h, w], align_corners=False) + displacement
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


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
        self.p = _check_probability(p)
        self.scale = _check_range_pair("scale", scale, 0.0, 1.0)
        self.ratio = _check_range_pair("ratio", ratio, 0.0, math.inf)
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
        _check(isinstance(num_ops, int) and num_ops >= 0, "num_ops", num_ops, "an int >= 0")
        ok = isinstance(magnitude, int) and 0 <= magnitude < self._BINS
        _check(ok, "magnitude", magnitude, f"an int in [0, {self._BINS - 1}]")
        self.randaugment = v2.RandAugment(num_ops, magnitude, num_magnitude_bins=self._BINS)

    def transform(self, x: Tensor) -> Tensor:
        as_uint8 = (x * 255).round().clamp(0, 255).to(torch.uint8)
        return self.randaugment(as_uint8).to(x.dtype) / 255


class _BatchMix(nn.Module):
    """Checks shared by the torchvision mixing wrappers; subclasses set ``_mix_cls``."""

    _mix_cls: type[v2.Transform]

    def __init__(self, alpha: float, num_classes: int) -> None:
        super().__init__()
        _check(alpha > 0.0, "alpha", alpha, "> 0 (the Beta distribution's concentration)")
        ok = isinstance(num_classes, int) and num_classes >= 2
        _check(ok, "num_classes", num_classes, "an int >= 2")
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
