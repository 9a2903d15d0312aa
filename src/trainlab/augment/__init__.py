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

from trainlab.augment.base import Compose, ImageOp
from trainlab.augment.geometric import Elastic, Flip, RandomCrop, ResizeCrop, Rotate90, Rotation, rotate
from trainlab.augment.mixing import CutMix, MixUp, RandAugment
from trainlab.augment.pixels import Erasing, GaussianNoise

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

