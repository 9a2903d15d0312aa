"""Tests for trainlab.augment: each op's behaviour, reproducibility, validation and configs."""

from __future__ import annotations

from pathlib import Path

import hydra
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image
from torch import Tensor
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from trainlab.augment import (
    Compose,
    CutMix,
    Elastic,
    Erasing,
    Flip,
    GaussianNoise,
    MixUp,
    RandAugment,
    RandomCrop,
    ResizeCrop,
    Rotate90,
    Rotation,
    rotate,
)

CONF_DIR = Path(__file__).resolve().parents[1] / "conf" / "augmentation"
NUM_CLASSES = 10


def make_batch(
    n: int = 8, c: int = 3, h: int = 16, w: int = 16, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """Random images in [0, 1] and int64 labels, from a private generator."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, h, w, generator=g), torch.randint(0, NUM_CLASSES, (n,), generator=g)


def radial_blob(size: int = 32, width: float = 4.0) -> Tensor:
    """A centred Gaussian blob (1, 1, size, size): unchanged by any rotation about its centre."""
    t = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    r2 = t[:, None] ** 2 + t[None, :] ** 2
    return torch.exp(-r2 / (2 * width**2))[None, None]


# --- Flip -----------------------------------------------------------------------------------


def test_flip_p1_is_exact_mirror() -> None:
    x, y = make_batch()
    out, y_out = Flip(p=1.0)(x, y)
    assert torch.equal(out, x.flip(-1))
    assert torch.equal(y_out, y)
    assert torch.equal(Flip(horizontal=False, vertical=True, p=1.0)(x, y)[0], x.flip(-2))
    assert torch.equal(Flip(horizontal=True, vertical=True, p=1.0)(x, y)[0], x.flip(-2, -1))


def test_flip_half_the_samples_each_exactly() -> None:
    x, y = make_batch(n=2000, c=1, h=4, w=4)
    torch.manual_seed(0)
    out, _ = Flip(p=0.5)(x, y)
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    same = (out == x).flatten(1).all(1)
    assert (flipped ^ same).all()  # each sample is either untouched or exactly mirrored
    # Binomial(2000, 0.5): std of the fraction is 0.011, so 0.05 is 4.5 standard deviations.
    assert abs(flipped.float().mean().item() - 0.5) < 0.05


# --- Rotate90 and Rotation ------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 2, 3, -1])
def test_rotate90_equals_torch_rot90(k: int) -> None:
    x, y = make_batch()
    assert torch.equal(Rotate90(k=k)(x, y)[0], torch.rot90(x, k, dims=(-2, -1)))
    assert torch.equal(Rotate90(k=k, p=0.0)(x, y)[0], x)


def test_rotate90_matches_pil_rotate_90() -> None:
    pixels = (np.arange(25, dtype=np.uint8) * 10).reshape(5, 5)
    expected = torch.from_numpy(np.array(Image.fromarray(pixels).rotate(90)))
    x = torch.from_numpy(pixels).float()[None, None] / 255
    out, _ = Rotate90(k=1)(x, torch.zeros(1, dtype=torch.int64))
    assert torch.equal((out[0, 0] * 255).round().to(torch.uint8), expected)


def test_rotate90_rejects_non_square() -> None:
    x, y = make_batch(h=8, w=16)
    with pytest.raises(ValueError, match="H=8, W=16"):
        Rotate90()(x, y)


def test_rotation_zero_degrees_is_identity() -> None:
    x, y = make_batch()
    torch.testing.assert_close(Rotation(degrees=0)(x, y)[0], x, atol=1e-5, rtol=0)


def test_rotate_quarter_turn_matches_rot90() -> None:
    x, _ = make_batch()
    angles = torch.full((x.shape[0],), 90.0)
    torch.testing.assert_close(rotate(x, angles), torch.rot90(x, 1, (-2, -1)), atol=1e-5, rtol=0)
    torch.testing.assert_close(rotate(x, -angles), torch.rot90(x, -1, (-2, -1)), atol=1e-5, rtol=0)


def test_rotate_quarter_turn_of_wide_image_is_not_sheared() -> None:
    # An 8x16 image turned 90 degrees in its own frame: the central 8x8 square turns like
    # rot90 and the columns that leave the frame are zero.
    x, _ = make_batch(n=2, h=8, w=16)
    out = rotate(x, torch.full((2,), 90.0))
    torch.testing.assert_close(
        out[..., 4:12], torch.rot90(x[..., 4:12], 1, (-2, -1)), atol=1e-5, rtol=0
    )
    assert out[..., :3].abs().max() < 1e-6 and out[..., 13:].abs().max() < 1e-6


def test_rotation_keeps_symmetric_image_and_turns_others() -> None:
    blob = radial_blob().expand(16, 1, 32, 32)
    torch.manual_seed(0)
    out, _ = Rotation(degrees=45)(blob, torch.zeros(16, dtype=torch.int64))
    assert (out - blob).abs().max() < 0.02  # bilinear interpolation error only
    # A horizontal bar is turned by a different angle in every sample.
    bar = torch.zeros(16, 1, 32, 32)
    bar[..., 14:18, 4:28] = 1.0
    out, _ = Rotation(degrees=45)(bar, torch.zeros(16, dtype=torch.int64))
    assert (out[1:] - out[:1]).abs().flatten(1).amax(1).min() > 1e-3


# --- RandomCrop and ResizeCrop --------------------------------------------------------------


def test_random_crop_is_shift_of_padded_input() -> None:
    pad = 2
    x, y = make_batch(n=32, c=2, h=8, w=8)
    torch.manual_seed(0)
    out, _ = RandomCrop(padding=pad)(x, y)
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    shifts = set()
    for i in range(x.shape[0]):
        matches = [
            (dy - pad, dx - pad)
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
            if torch.equal(out[i], padded[i, :, dy : dy + 8, dx : dx + 8])
        ]
        assert len(matches) == 1, f"sample {i} is no shift within +-{pad} px"
        shifts.add(matches[0])
    assert len(shifts) > 5  # offsets are drawn per sample (25 possible)


def test_random_crop_zero_padding_is_identity() -> None:
    x, y = make_batch()
    assert torch.equal(RandomCrop(padding=0)(x, y)[0], x)


def test_resize_crop_matches_torchvision_resize_center_crop() -> None:
    x, y = make_batch(c=1, h=28, w=28)
    expected = TF.center_crop(TF.resize(x, [33, 33]), [28, 28])
    torch.testing.assert_close(ResizeCrop(size=33)(x, y)[0], expected, atol=1e-6, rtol=0)
    assert not torch.allclose(expected, x, atol=1e-2)
    torch.testing.assert_close(ResizeCrop(size=28)(x, y)[0], x, atol=1e-6, rtol=0)


def test_resize_crop_rejects_size_smaller_than_image() -> None:
    x, y = make_batch(h=16, w=16)
    with pytest.raises(ValueError, match="size must be >= the image size 16x16"):
        ResizeCrop(size=12)(x, y)


# --- GaussianNoise --------------------------------------------------------------------------


def test_gaussian_noise_has_configured_std() -> None:
    x = torch.full((64, 3, 32, 32), 0.5)
    torch.manual_seed(0)
    out, _ = GaussianNoise(std=0.1, clip=False)(x, torch.zeros(64, dtype=torch.int64))
    noise = out - x
    # 196,608 draws: the standard error of the std is 0.1 / sqrt(2n) = 1.6e-4.
    assert abs(noise.std().item() - 0.1) < 1e-3
    assert abs(noise.mean().item()) < 1e-3


def test_gaussian_noise_clips_to_unit_range() -> None:
    x = torch.zeros(16, 1, 32, 32)
    torch.manual_seed(0)
    out, _ = GaussianNoise(std=0.1, clip=True)(x, torch.zeros(16, dtype=torch.int64))
    assert out.min() == 0.0 and out.max() <= 1.0
    assert abs((out == 0).float().mean().item() - 0.5) < 0.02  # the negative half is clipped


# --- Elastic --------------------------------------------------------------------------------


def test_elastic_changes_pixels_per_sample() -> None:
    blob = radial_blob(size=28).expand(8, 1, 28, 28)
    torch.manual_seed(0)
    out, _ = Elastic(alpha=34.0, sigma=4.0)(blob, torch.zeros(8, dtype=torch.int64))
    assert out.shape == blob.shape
    assert (out - blob).abs().mean() > 1e-3
    # Each sample has its own field, so identical inputs come out different.
    assert (out[1:] - out[:1]).abs().flatten(1).amax(1).min() > 1e-3


def test_elastic_displacement_has_expected_size_per_axis() -> None:
    # Channel 0 is a ramp along W, channel 1 along H; bilinear sampling of a ramp is exact, so
    # (out - x) * size is the displacement in pixels along that axis.
    n, h, w, alpha, sigma = 256, 48, 64, 34.0, 4.0
    cols = torch.arange(w, dtype=torch.float32).div(w).expand(h, w)
    rows = torch.arange(h, dtype=torch.float32).div(h)[:, None].expand(h, w)
    x = torch.stack([cols, rows])[None].expand(n, 2, h, w)
    torch.manual_seed(0)
    out, _ = Elastic(alpha=alpha, sigma=sigma)(x, torch.zeros(n))
    inner = (slice(None), slice(None), slice(16, -16), slice(16, -16))  # beyond the blur's reach
    dx = (out - x)[inner][:, 0] * w
    dy = (out - x)[inner][:, 1] * h
    # Uniform(-1, 1) has variance 1/3; a normalized 2-D Gaussian blur scales it by
    # sum(kernel^2) = 1 / (4 pi sigma^2), so the std is alpha / (sigma * sqrt(12 pi)) = 1.38 px.
    expected = alpha / (sigma * (12 * torch.pi) ** 0.5)
    assert abs(dx.std().item() / expected - 1) < 0.05
    assert abs(dy.std().item() / expected - 1) < 0.05
    assert abs(dx.mean().item()) < 0.1 and abs(dy.mean().item()) < 0.1


def test_elastic_alpha_zero_is_identity() -> None:
    x, y = make_batch()
    torch.testing.assert_close(Elastic(alpha=0.0)(x, y)[0], x, atol=1e-5, rtol=0)


# --- Erasing --------------------------------------------------------------------------------


def test_erasing_fills_one_box_with_area_in_scale() -> None:
    g = torch.Generator().manual_seed(0)
    x = 0.5 + 0.5 * torch.rand(512, 3, 64, 64, generator=g)  # no zeros outside the box
    torch.manual_seed(0)
    out, _ = Erasing(p=1.0, scale=(0.1, 0.2), ratio=(0.5, 2.0), value=0.0)(x, torch.zeros(512))
    erased = out == 0
    mask = erased.any(1)  # (N, H, W)
    assert torch.equal(erased, mask[:, None].expand_as(erased))  # all channels of a pixel
    assert torch.equal(out[~erased], x[~erased])
    rows, cols = mask.any(2), mask.any(1)
    assert torch.equal(mask, rows[:, :, None] & cols[:, None, :])  # a single rectangle
    fraction = mask.flatten(1).float().mean(1)
    # Rounding each side (>= 14 px here) moves the area by at most about 7 %.
    assert fraction.min() > 0.1 * 0.92 and fraction.max() < 0.2 * 1.08
    assert abs(fraction.mean().item() - 0.15) < 0.01


def test_erasing_probability() -> None:
    x = 0.5 + 0.5 * torch.rand(1000, 1, 16, 16)
    torch.manual_seed(0)
    out, _ = Erasing(p=0.3)(x, torch.zeros(1000))
    erased = (out == 0).flatten(1).any(1).float().mean().item()
    assert abs(erased - 0.3) < 0.05
    assert torch.equal(Erasing(p=0.0)(x, torch.zeros(1000))[0], x)


def test_erasing_leaves_sample_alone_when_no_box_fits() -> None:
    # Like torchvision, a box must be strictly smaller than the image on both axes. A square
    # box of at least 0.95 of 16x16 px has a side of round(sqrt(0.95 * 256)) = 16: never fits.
    x = 0.5 + 0.5 * torch.rand(64, 1, 16, 16)
    out, _ = Erasing(p=1.0, scale=(0.95, 1.0), ratio=(1.0, 1.0))(x, torch.zeros(64))
    assert torch.equal(out, x)


# --- RandAugment ----------------------------------------------------------------------------


def test_randaugment_matches_torchvision_on_uint8() -> None:
    x, y = make_batch(c=3, h=32, w=32)
    as_uint8 = (x * 255).round().to(torch.uint8)
    for seed in range(5):
        torch.manual_seed(seed)
        out, _ = RandAugment(num_ops=2, magnitude=9)(x, y)
        torch.manual_seed(seed)
        expected = v2.RandAugment(num_ops=2, magnitude=9)(as_uint8)
        assert torch.equal((out * 255).round().to(torch.uint8), expected)
        assert out.min() >= 0 and out.max() <= 1


def test_randaugment_shares_one_draw_across_the_batch() -> None:
    x, y = make_batch(n=1, c=3, h=32, w=32)
    batch = x.expand(16, -1, -1, -1)
    torch.manual_seed(0)
    out, _ = RandAugment(num_ops=2, magnitude=15)(batch, y.expand(16))
    assert torch.equal(out, out[:1].expand_as(out))


def test_randaugment_without_ops_only_quantizes() -> None:
    x, y = make_batch()
    out, _ = RandAugment(num_ops=0)(x, y)
    assert (out - x).abs().max() <= 0.5 / 255 + 1e-6


# --- MixUp and CutMix -----------------------------------------------------------------------


def test_mixup_convex_combination_with_matching_soft_labels() -> None:
    x, _ = make_batch(n=10)
    y = torch.arange(10)  # neighbours have different classes, so lam can be read off y_mix
    torch.manual_seed(0)
    out, y_mix = MixUp(alpha=1.0, num_classes=NUM_CLASSES)(x, y)
    assert y_mix.shape == (10, NUM_CLASSES) and y_mix.dtype == torch.float32
    torch.testing.assert_close(y_mix.sum(1), torch.ones(10))
    lam = y_mix[0, 0].item()
    assert 0.0 < lam < 1.0
    torch.testing.assert_close(y_mix[1, 0], torch.tensor(1 - lam))  # sample 1 mixes in sample 0
    torch.testing.assert_close(out, lam * x + (1 - lam) * x.roll(1, 0))


def test_cutmix_pastes_neighbour_box_weighted_by_area() -> None:
    x, _ = make_batch(n=10, h=32, w=32)
    y = torch.arange(10)
    for seed in range(5):
        torch.manual_seed(seed)
        out, y_mix = CutMix(alpha=1.0, num_classes=NUM_CLASSES)(x, y)
        torch.testing.assert_close(y_mix.sum(1), torch.ones(10))
        from_neighbour = (out == x.roll(1, 0)).all(1) & (out != x).any(1)
        assert ((out == x).all(1) | from_neighbour).all()  # every pixel from one of the two
        pasted = from_neighbour.flatten(1).float().mean(1)
        torch.testing.assert_close(pasted, y_mix[torch.arange(10), y.roll(1)])


def test_mixing_accepts_soft_labels_and_checks_their_width() -> None:
    x, y = make_batch()
    soft = torch.nn.functional.one_hot(y, NUM_CLASSES).float()
    torch.manual_seed(0)
    _, y_mix = MixUp(alpha=1.0, num_classes=NUM_CLASSES)(x, soft)
    torch.testing.assert_close(y_mix.sum(1), torch.ones(8))
    torch.manual_seed(0)
    _, y_from_index = MixUp(alpha=1.0, num_classes=NUM_CLASSES)(x, y)
    torch.testing.assert_close(y_mix, y_from_index)
    with pytest.raises(ValueError, match="num_classes=10 columns, got shape \\(8, 5\\)"):
        CutMix(alpha=1.0, num_classes=NUM_CLASSES)(x, soft[:, :5])
    with pytest.raises(ValueError, match="int64 class indices"):
        MixUp(alpha=1.0, num_classes=NUM_CLASSES)(x, y.float())


# --- Compose --------------------------------------------------------------------------------


def test_compose_applies_in_order_and_empty_is_identity() -> None:
    x, y = make_batch()
    both = Compose([Flip(p=1.0), Rotate90(k=1)])
    assert len(both) == 2
    assert torch.equal(both(x, y)[0], torch.rot90(x.flip(-1), 1, (-2, -1)))
    assert not torch.equal(both(x, y)[0], x.rot90(1, (-2, -1)).flip(-1))  # order matters
    empty = Compose([])
    assert len(empty) == 0
    out, y_out = empty(x, y)
    assert out is x and y_out is y


# --- Every op: reproducibility, dtype, device, shape ----------------------------------------

ALL_OPS = {
    "flip": lambda: Flip(horizontal=True, vertical=True),
    "rotate90": lambda: Rotate90(k=1, p=0.5),
    "rotation": lambda: Rotation(degrees=30),
    "crop": lambda: RandomCrop(padding=4),
    "resize_crop": lambda: ResizeCrop(size=20),
    "noise": lambda: GaussianNoise(std=0.1),
    "elastic": lambda: Elastic(),
    "erasing": lambda: Erasing(p=0.5),
    "randaugment": lambda: RandAugment(),
    "mixup": lambda: MixUp(alpha=1.0, num_classes=NUM_CLASSES),
    "cutmix": lambda: CutMix(alpha=1.0, num_classes=NUM_CLASSES),
}


def check_reproducible(op: torch.nn.Module, x: Tensor, y: Tensor) -> None:
    torch.manual_seed(123)
    out1, y1 = op(x, y)
    torch.manual_seed(123)
    out2, y2 = op(x, y)
    assert torch.equal(out1, out2) and torch.equal(y1, y2)
    assert out1.shape == x.shape and out1.dtype == x.dtype and out1.device == x.device
    assert y1.device == y.device and y1.shape[0] == y.shape[0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", sorted(ALL_OPS))
def test_op_is_reproducible_and_keeps_dtype_device_shape(name: str, dtype: torch.dtype) -> None:
    x, y = make_batch(n=16)
    check_reproducible(ALL_OPS[name](), x.to(dtype), y)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", sorted(ALL_OPS))
def test_op_runs_on_cuda(name: str) -> None:
    x, y = make_batch(n=16)
    check_reproducible(ALL_OPS[name]().cuda(), x.cuda(), y.cuda())


# --- Constructor validation -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Flip(p=1.5), "p must be in [0, 1], got 1.5"),
        (lambda: Flip(horizontal=False), "horizontal or vertical must be True"),
        (lambda: Rotate90(k=1.5), "k must be an int"),
        (lambda: Rotate90(p=-0.1), "p must be in [0, 1], got -0.1"),
        (lambda: Rotation(degrees=-5), "degrees must be in [0, 180], got -5"),
        (lambda: RandomCrop(padding=-1), "padding must be an int >= 0, got -1"),
        (lambda: ResizeCrop(size=0), "size must be an int >= 1, got 0"),
        (lambda: GaussianNoise(std=-0.1), "std must be >= 0, got -0.1"),
        (lambda: Elastic(alpha=-1.0), "alpha must be >= 0, got -1.0"),
        (lambda: Elastic(sigma=0.0), "sigma must be > 0, got 0.0"),
        (lambda: Erasing(scale=(0.5, 0.1)), "scale must be a pair (min, max)"),
        (lambda: Erasing(ratio=(0.0, 1.0)), "ratio must be a pair (min, max)"),
        (lambda: RandAugment(num_ops=-1), "num_ops must be an int >= 0, got -1"),
        (lambda: RandAugment(magnitude=31), "magnitude must be an int in [0, 30], got 31"),
        (lambda: MixUp(alpha=0.0, num_classes=10), "alpha must be > 0"),
        (lambda: CutMix(alpha=1.0, num_classes=1), "num_classes must be an int >= 2, got 1"),
        (lambda: Compose([lambda x, y: (x, y)]), "ops[0] must be an nn.Module"),
    ],
)
def test_constructor_validation_names_the_argument(make, message: str) -> None:
    with pytest.raises(ValueError) as error:
        make()
    assert str(error.value).startswith(message)


# --- Configs --------------------------------------------------------------------------------

CONFIG_FILES = sorted(CONF_DIR.glob("*.yaml"))


def test_every_augmentation_option_has_a_config() -> None:
    expected = {
        "none", "flip", "rotate90", "rotation", "crop", "crop_flip", "resize_crop", "gaussian_noise",
        "elastic", "erasing", "randaugment", "standard", "mixup", "cutmix",
    }  # fmt: skip
    assert expected <= {path.stem for path in CONFIG_FILES}


@pytest.mark.parametrize("path", CONFIG_FILES, ids=[p.stem for p in CONFIG_FILES])
def test_config_instantiates_and_augments_a_batch(path: Path) -> None:
    assert path.read_text().splitlines()[0] == "# @package data.augment"
    cfg = OmegaConf.create({"data": {"num_classes": NUM_CLASSES, "augment": OmegaConf.load(path)}})
    augment = hydra.utils.instantiate(cfg.data.augment)
    assert isinstance(augment, Compose)
    assert (len(augment) == 0) == (path.stem == "none")
    x, y = make_batch(n=8, c=1, h=28, w=28)
    torch.manual_seed(0)
    out, y_out = augment(x, y)
    assert out.shape == x.shape and 0.0 <= out.min() and out.max() <= 1.0
    assert y_out.shape in {(8,), (8, NUM_CLASSES)}
    if path.stem != "none":
        assert not torch.equal(out, x)
