"""Ops that move pixels: flips, rotations, crops, zoom and elastic distortion."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from trainlab.augment.base import ImageOp, check, check_probability, per_sample


class Flip(ImageOp):
    """Mirror each sample with probability ``p``, each enabled axis decided independently.

    Args:
        horizontal: Flip left-right (the W axis).
        vertical: Flip upside-down (the H axis).
        p: Probability per sample and axis.
    """

    def __init__(self, horizontal: bool = True, vertical: bool = False, p: float = 0.5) -> None:
        super().__init__()
        check(horizontal or vertical, "horizontal or vertical", (horizontal, vertical), "True")
        self.horizontal, self.vertical = bool(horizontal), bool(vertical)
        self.p = check_probability(p)

    def transform(self, x: Tensor) -> Tensor:
        if self.horizontal:
            x = torch.where(per_sample(self.p, x), x.flip(-1), x)
        if self.vertical:
            x = torch.where(per_sample(self.p, x), x.flip(-2), x)
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
        check(isinstance(k, int) and not isinstance(k, bool), "k", k, "an int (quarter turns)")
        self.k = k
        self.p = check_probability(p)

    def transform(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        if h != w:
            raise ValueError(f"Rotate90 needs square images (H == W), got H={h}, W={w}")
        return torch.where(per_sample(self.p, x), torch.rot90(x, self.k, dims=(-2, -1)), x)


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
        check(0.0 <= degrees <= 180.0, "degrees", degrees, "in [0, 180]")
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
        check(isinstance(padding, int) and padding >= 0, "padding", padding, "an int >= 0")
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
        check(isinstance(size, int) and size >= 1, "size", size, "an int >= 1")
        self.size = size

    def transform(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        if self.size < max(h, w):
            raise ValueError(f"size must be >= the image size {h}x{w} to zoom in, got {self.size}")
        zoomed = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        # Offsets rounded as torchvision's center_crop does, so the notes' pipeline is matched.
        top, left = round((self.size - h) / 2), round((self.size - w) / 2)
        return zoomed[..., top : top + h, left : left + w]


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
        check(alpha >= 0.0, "alpha", alpha, ">= 0")
        check(sigma > 0.0, "sigma", sigma, "> 0")
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


