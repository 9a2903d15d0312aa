"""An augmentation: invert the pixels (x -> 1 - x) of a random part of each training batch.

Recipe 4 of docs/EXTENDING.md. Its YAML is ``examples/conf/augmentation/invert.yaml``.
"""

from __future__ import annotations

import torch

from trainlab.augment import ImageOp
from trainlab.errors import ConfigError


class Invert(ImageOp):
    """Replace each image by its negative with probability ``p`` (pixels are in [0, 1] here,
    before normalization; the op runs on training batches only, on the batch's device).

    Args:
        p: probability per image.
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ConfigError(f"data.augment.ops[].p must be in [0, 1], got {p!r}")
        self.p = float(p)

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        chosen = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < self.p
        return torch.where(chosen, 1.0 - x, x)
