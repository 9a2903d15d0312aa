"""Write scikit-learn's 8x8 digits out as a user's own data would arrive: one PNG per image in
class folders (``DIR/train/<digit>/``, ``DIR/test/<digit>/``) and the same split as arrays in
``DIR/digits.npz``. Recipe 2 of docs/EXTENDING.md trains on them::

    python examples/export_digits.py /tmp/my_digits
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from trainlab.data.sources import digits


def export(out: Path) -> None:
    """Write the PNG folders and the .npz of the digits' train and test splits into ``out``."""
    from trainlab.data.sources import save_png

    splits = digits()
    for split, images, labels in (("train", splits.train_x, splits.train_y),
                                  ("test", splits.test_x, splits.test_y)):
        for i, (image, label) in enumerate(zip(images, labels.tolist(), strict=True)):
            folder = out / split / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            save_png(image, folder / f"{i:04d}.png")
    np.savez(out / "digits.npz", x_train=splits.train_x.numpy(), y_train=splits.train_y.numpy(),
             x_test=splits.test_x.numpy(), y_test=splits.test_y.numpy())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to write (created)")
    export(parser.parse_args().out)
