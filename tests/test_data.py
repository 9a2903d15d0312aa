"""The data path: IDX parsing, real datasets, batching, splits and normalization."""

from __future__ import annotations

import gzip
import os
import re
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from conftest import FASHION_MNIST_DIR, needs_fashion_mnist

from trainlab.data import ImageDataModule, TensorBatchLoader, idx
from trainlab.data.idx import CorruptDataError, read_idx, read_idx_cached
from trainlab.data.image_datamodule import channel_stats
from trainlab.data.sources import DataUnavailableError, ImageSplits, digits, fashion_mnist


def write_idx(path, array: np.ndarray, gz: bool = True) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    with gzip.open(path, "wb") if gz else open(path, "wb") as f:
        f.write(raw)


def test_read_idx_roundtrip(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", arr)
    write_idx(tmp_path / "b", arr, gz=False)
    assert torch.equal(read_idx(tmp_path / "a.gz"), torch.from_numpy(arr))
    assert torch.equal(read_idx(tmp_path / "b"), torch.from_numpy(arr))


def test_gzipped_idx_is_unpacked_once_into_the_cache(tmp_path, monkeypatch):
    arr = np.arange(4 * 5 * 6, dtype=np.uint8).reshape(4, 5, 6)
    source, cache = tmp_path / "a-ubyte.gz", tmp_path / "cache"
    write_idx(source, arr)
    assert torch.equal(read_idx_cached(source, cache), torch.from_numpy(arr))
    (copy,) = (cache / "idx").iterdir()
    assert copy.name.startswith("a-ubyte.") and torch.equal(read_idx(copy), torch.from_numpy(arr))
    with monkeypatch.context() as m:  # the second read never opens the gzip file
        m.setattr(idx.gzip, "open", lambda *a, **k: pytest.fail("gunzipped again"))
        assert torch.equal(read_idx_cached(source, cache), torch.from_numpy(arr))
    copy.write_bytes(copy.read_bytes()[:-3])  # a corrupt copy is replaced
    assert torch.equal(read_idx_cached(source, cache), torch.from_numpy(arr))
    assert torch.equal(read_idx(copy), torch.from_numpy(arr))
    write_idx(source, arr[::-1].copy())  # a changed source is unpacked again
    os.utime(source, ns=(copy.stat().st_mtime_ns + 10**9,) * 2)
    assert torch.equal(read_idx_cached(source, cache), torch.from_numpy(arr[::-1].copy()))
    assert len(list((cache / "idx").iterdir())) == 2
    (tmp_path / "ro").write_text("a file where the cache dir should be")  # unwritable: skipped
    assert torch.equal(read_idx_cached(source, tmp_path / "ro"), torch.from_numpy(arr[::-1].copy()))


def test_read_idx_rejects_truncated_and_bad_magic(tmp_path):
    arr = np.zeros((10, 5, 5), dtype=np.uint8)
    write_idx(tmp_path / "t", arr, gz=False)
    raw = (tmp_path / "t").read_bytes()
    (tmp_path / "trunc").write_bytes(raw[:-7])
    with pytest.raises(CorruptDataError, match=r"trunc: .*bytes but its header \(10, 5, 5\)"):
        read_idx(tmp_path / "trunc")
    (tmp_path / "magic").write_bytes(b"\x01\x02" + raw[2:])
    with pytest.raises(CorruptDataError, match="magic: bad IDX magic"):
        read_idx(tmp_path / "magic")
    (tmp_path / "notgz.gz").write_bytes(raw)
    with pytest.raises(CorruptDataError, match="notgz.gz: cannot be read"):
        read_idx(tmp_path / "notgz.gz")


@needs_fashion_mnist
def test_fashion_mnist_official_splits():
    data = fashion_mnist()
    assert data.train_x.shape == (60000, 1, 28, 28) and data.train_x.dtype == torch.uint8
    assert data.test_x.shape == (10000, 1, 28, 28)
    assert torch.bincount(data.train_y).tolist() == [6000] * 10
    assert torch.bincount(data.test_y).tolist() == [1000] * 10


@needs_fashion_mnist
def test_fashion_mnist_truncated_root_file_is_an_error_naming_it(tmp_path):
    for f in FASHION_MNIST_DIR.glob("*.gz"):
        shutil.copy(f, tmp_path / f.name)
    full = gzip.decompress((tmp_path / "t10k-labels-idx1-ubyte.gz").read_bytes())
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(full[:-100]))
    with pytest.raises(CorruptDataError, match="t10k-labels-idx1-ubyte.gz"):
        fashion_mnist(root=str(tmp_path))


def test_missing_data_without_download_says_how_to_get_it(tmp_path, monkeypatch, cfg_factory):
    monkeypatch.setattr("trainlab.data.sources.DEBIAN_FASHION_MNIST", tmp_path / "none")
    with pytest.raises(DataUnavailableError, match="apt-get install dataset-fashion-mnist") as err:
        fashion_mnist(root=str(tmp_path), download=False)
    override = re.search(r"pass (\S+)=DIR", str(err.value)).group(1)
    assert cfg_factory(f"{override}={tmp_path}").data.source.root == str(tmp_path)  # a real key


def test_digits_is_real_and_stratified():
    data = digits()
    assert data.train_x.shape[1:] == (1, 8, 8)
    assert len(data.train_x) + len(data.test_x) == 1797
    assert int(data.train_x.max()) == 255  # 16 -> 255
    counts = torch.bincount(data.test_y)
    assert counts.min() >= 40 and counts.max() <= 50


def batches_of(loader, epoch: int = 0) -> list[torch.Tensor]:
    loader.sampler.set_epoch(epoch)  # as Lightning does at each epoch's start
    return [x for x, _ in loader]


def test_batch_loader_epoch_order_is_a_function_of_seed_and_epoch():
    x = torch.arange(100)
    loader = TensorBatchLoader.from_tensors(x, x, 10, shuffle=True, drop_last=True, seed=3)
    first = torch.cat(batches_of(loader))
    assert sorted(first.tolist()) == list(range(100)) and len(loader) == 10
    assert torch.equal(first, torch.cat(batches_of(loader)))
    again = TensorBatchLoader.from_tensors(x, x, 10, shuffle=True, drop_last=True, seed=3)
    assert torch.equal(first, torch.cat(batches_of(again)))
    assert not torch.equal(first, torch.cat(batches_of(loader, epoch=1)))
    assert torch.equal(first, torch.randperm(100, generator=torch.Generator().manual_seed(3 * 100_003)))


def test_batch_loader_shards_are_disjoint_and_equal_for_training():
    x = torch.arange(103)
    shards = [torch.cat(batches_of(TensorBatchLoader.from_tensors(x, x, 8, True, True, seed=1, rank=r,
                                                                  world_size=2))) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 48
    assert not set(shards[0].tolist()) & set(shards[1].tolist())
    evals = [TensorBatchLoader.from_tensors(x, x, 8, False, False, rank=r, world_size=2) for r in range(2)]
    assert sorted(torch.cat([torch.cat(batches_of(e)) for e in evals]).tolist()) == list(range(103))
    assert [len(e) for e in evals] == [7, 7]  # 52 and 51 samples: every one seen once, none twice
    # the sampler says it shards by rank, so Lightning puts no DistributedSampler of its own in
    assert all(isinstance(e.sampler, torch.utils.data.DistributedSampler) for e in evals)


def test_batch_loader_is_a_dataloader_that_cuts_each_batch_at_once(monkeypatch):
    from trainlab.data.batches import ResidentTensors

    calls = []
    cut = ResidentTensors.__getitems__
    monkeypatch.setattr(ResidentTensors, "__getitem__", lambda self, i: pytest.fail("per sample"))
    monkeypatch.setattr(ResidentTensors, "__getitems__",
                        lambda self, index: calls.append(index) or cut(self, index))
    x, y = torch.arange(50.0).view(25, 2), torch.arange(25)
    train = TensorBatchLoader.from_tensors(x, y, 4, shuffle=True, drop_last=True)
    assert isinstance(train, torch.utils.data.DataLoader) and train.num_workers == 0
    batches = list(train)
    assert len(batches) == len(calls) == len(train) == 6  # one call per batch, 24 of 25 samples
    assert all(isinstance(i, torch.Tensor) and i.shape == (4,) for i in calls)
    assert all(torch.equal(bx, x[by]) for bx, by in batches)  # x and y cut at the same indices
    evaluation = list(TensorBatchLoader.from_tensors(x, y, 10, shuffle=False, drop_last=False))
    assert [len(by) for _, by in evaluation] == [10, 10, 5]
    storage = x.untyped_storage().data_ptr()  # contiguous order: views of x, no copies
    assert all(bx.untyped_storage().data_ptr() == storage for bx, _ in evaluation)
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    list(train), list(train)
    assert torch.equal(torch.rand(3), expected)  # iterating drew nothing from the global RNG


def test_batch_loader_state_resumes_its_epoch_at_the_next_batch():
    x = torch.arange(60)
    loader = TensorBatchLoader.from_tensors(x, x, 6, shuffle=True, drop_last=True, seed=5)
    epoch_2 = batches_of(loader, epoch=2)
    assert loader.state_dict() == {"epoch": 2, "batches_done": 10}
    loader.sampler.set_epoch(3)
    it = iter(loader)
    next(it), next(it), next(it)
    state = loader.state_dict()
    assert state == {"epoch": 3, "batches_done": 3}  # handed out: none fetched ahead
    resumed = TensorBatchLoader.from_tensors(x, x, 6, shuffle=True, drop_last=True, seed=5)
    resumed.load_state_dict(state)
    assert resumed.state_dict() == state  # a checkpoint before the first batch keeps the place
    rest = batches_of(resumed, epoch=3)
    assert torch.equal(torch.cat(rest), torch.cat(batches_of(loader, epoch=3)[3:]))
    assert resumed.state_dict() == {"epoch": 3, "batches_done": 10}
    assert len(batches_of(resumed, epoch=4)) == 10  # the next epoch is whole
    stale = TensorBatchLoader.from_tensors(x, x, 6, shuffle=True, drop_last=True, seed=5)
    stale.load_state_dict({"epoch": 1, "batches_done": 4})  # taken in another epoch: not applied
    assert torch.equal(torch.cat(batches_of(stale, epoch=2)), torch.cat(epoch_2))


def test_a_sequential_sampler_put_in_by_lightning_keeps_views_and_an_epoch():
    """Lightning rebuilds the batch sampler with a SequentialSampler for ``overfit_batches``."""
    from torch.utils.data import SequentialSampler

    from trainlab.data.batches import EpochOrder, ResidentTensors, TensorBatchSampler

    x = torch.arange(20)
    sampler = TensorBatchSampler(SequentialSampler(ResidentTensors(x, x)), 8, drop_last=True)
    assert isinstance(sampler.sampler, EpochOrder) and len(sampler) == 2
    assert list(sampler) == [slice(0, 8), slice(8, 16)]
    sampler.load_state_dict({"epoch": 0, "batches_done": 2})  # taken at the end of epoch 0
    sampler.sampler.set_epoch(1)
    assert list(sampler) == [slice(0, 8), slice(8, 16)]  # epoch 1 starts at its beginning


class EpochBatches(pl.Callback):
    """The training batches of each epoch and the loader state saved at each of its steps."""

    def __init__(self, path=None) -> None:
        self.path = path  # where to save a checkpoint after each step, if anywhere
        self.batches: dict[int, list[torch.Tensor]] = {}
        self.states: list[tuple[int, int, dict]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.batches.setdefault(trainer.current_epoch, []).append(batch[0].clone())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.path is None:
            return
        trainer.save_checkpoint(self.path)
        checkpoint = torch.load(self.path, map_location="cpu", weights_only=True)
        (state,) = checkpoint["loops"]["fit_loop"]["state_dict"]["combined_loader"]
        self.states.append((trainer.current_epoch, batch_idx, state))


def fit_recording_batches(cfg) -> EpochBatches:
    from trainlab.pipeline import build

    datamodule, model, trainer = build(cfg)
    seen = EpochBatches()
    trainer.callbacks.append(seen)
    trainer.fit(model, datamodule=datamodule)
    return seen


def test_debug_overfit_trains_on_the_same_batches_every_epoch(cfg_factory):
    common = ("data=digits", "trainer.max_epochs=3", "callbacks.progress_bar=null")
    with pytest.warns(UserWarning, match="turning off the train dataloader shuffling"):
        seen = fit_recording_batches(cfg_factory(*common, "debug=overfit"))
    assert [len(seen.batches[e]) for e in range(3)] == [10, 10, 10]  # conf/debug/overfit.yaml
    for epoch in (1, 2):
        assert all(torch.equal(a, b) for a, b in zip(seen.batches[0], seen.batches[epoch], strict=True))
    shuffled = fit_recording_batches(cfg_factory(*common, "trainer.limit_train_batches=2"))
    assert not torch.equal(shuffled.batches[0][0], shuffled.batches[1][0])  # without it


def test_checkpoints_hold_the_epoch_and_the_batches_trained_on(tmp_path):
    from tiny import tiny_datamodule, tiny_model, tiny_trainer

    seen = EpochBatches(tmp_path / "step.ckpt")
    tiny_trainer(tmp_path, max_epochs=2, callbacks=[seen]).fit(
        tiny_model(), datamodule=tiny_datamodule(batch_size=16))
    steps = 80 // 16
    # the batch being trained is counted; none fetched ahead of it is
    assert seen.states == [(e, i, {"epoch": e, "batches_done": i + 1})
                           for e in range(2) for i in range(steps)]


def small_splits(n_train=50, n_test=20) -> ImageSplits:
    g = torch.Generator().manual_seed(0)
    return ImageSplits(torch.randint(0, 256, (n_train, 2, 4, 4), generator=g, dtype=torch.uint8),
                       torch.arange(n_train) % 3,
                       torch.randint(0, 256, (n_test, 2, 4, 4), generator=g, dtype=torch.uint8),
                       torch.arange(n_test) % 3)


def test_normalization_uses_training_split_only():
    splits = small_splits()
    dm = ImageDataModule(lambda: splits, [2, 4, 4], 3, val_size=10, batch_size=8)
    dm.setup()
    train_x = dm.splits["train"][0]
    x = dm.to_model_input(train_x)
    assert torch.allclose(x.mean(dim=(0, 2, 3)), torch.zeros(2), atol=1e-5)
    assert torch.allclose(x.std(dim=(0, 2, 3)), torch.ones(2), atol=1e-4)
    whole = splits.train_x.double().div(255).mean(dim=(0, 2, 3)).float()
    assert not torch.allclose(dm.shift, whole, atol=1e-6)  # val images were left out
    assert len(train_x) == 40 and len(dm.splits["val"][0]) == 10


def test_channel_stats_from_histograms_match_the_float_formula():
    images = small_splits(n_train=300).train_x
    x = images.double() / 255
    mean, std = channel_stats(images)
    assert torch.allclose(mean, x.mean(dim=(0, 2, 3)), rtol=0, atol=1e-12)
    assert torch.allclose(std, x.std(dim=(0, 2, 3)), rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_batch_transfer_normalizes_exactly_as_to_model_input_and_the_formula(dtype):
    dm = ImageDataModule(small_splits, [2, 4, 4], 3, val_size=10)
    dm.setup()
    dm.trainer = SimpleNamespace(training=True, lightning_module=SimpleNamespace(dtype=dtype))
    x, y = dm.splits["train"]
    out, out_y = dm.on_after_batch_transfer((x, y), 0)
    formula = (x.to(dtype) / 255 - dm.shift.view(1, -1, 1, 1)) / dm.scale.view(1, -1, 1, 1)
    assert out.dtype == dtype and torch.equal(out, dm.to_model_input(x, dtype)) and out_y is y
    ulp = torch.finfo(dtype).eps * formula.abs().amax()
    assert torch.allclose(out, formula.to(dtype), rtol=0, atol=4 * ulp.item())
    assert x.dtype == torch.uint8  # the stored images are untouched
    dm.load_state_dict({"shift": [0.0, 0.0], "scale": [1.0, 1.0]})  # new statistics are used
    assert torch.allclose(dm.on_after_batch_transfer((x, y), 0)[0], x.to(dtype) / 255)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_augmented_batches_are_normalized_as_the_formula_after_the_ops(dtype):
    from trainlab.augment import Compose, Flip

    dm = ImageDataModule(small_splits, [2, 4, 4], 3, val_size=10, augment=Compose([Flip(p=1.0)]))
    dm.setup()
    dm.trainer = SimpleNamespace(training=True, lightning_module=SimpleNamespace(dtype=dtype))
    x, y = dm.splits["train"]
    out, _ = dm.on_after_batch_transfer((x, y), 0)
    x01 = x.flip(-1).to(dtype) / 255
    formula = (x01 - dm.shift.view(1, -1, 1, 1).to(dtype)) / dm.scale.view(1, -1, 1, 1).to(dtype)
    ulp = torch.finfo(dtype).eps * formula.abs().amax()
    assert out.dtype == dtype and torch.allclose(out, formula, rtol=0, atol=4 * ulp.item())
    dm.load_state_dict({"shift": [0.5, 0.0], "scale": [0.25, 1.0]})  # new statistics are used
    again, _ = dm.on_after_batch_transfer((x, y), 0)
    expected = (x01 - torch.tensor([0.5, 0.0], dtype=dtype).view(1, -1, 1, 1)) / \
        torch.tensor([0.25, 1.0], dtype=dtype).view(1, -1, 1, 1)
    assert torch.allclose(again, expected, rtol=0, atol=1e-5)


def test_minmax_and_none_normalization():
    splits = small_splits()
    dm = ImageDataModule(lambda: splits, [2, 4, 4], 3, val_size=10, normalize="minmax")
    dm.setup()
    x = dm.to_model_input(dm.splits["train"][0])
    assert x.amin().item() == pytest.approx(0.0) and x.amax().item() == pytest.approx(1.0)
    raw = ImageDataModule(lambda: splits, [2, 4, 4], 3, val_size=10, normalize="none")
    raw.setup()
    assert torch.allclose(raw.to_model_input(splits.test_x), splits.test_x.float(), atol=1e-4)


def test_datamodule_rejects_shape_and_class_mismatch():
    with pytest.raises(ValueError, match=r"data.input_shape is \[1, 4, 4\] but the data is \[2, 4, 4\]"):
        ImageDataModule(small_splits, [1, 4, 4], 3, val_size=10).setup()
    with pytest.raises(ValueError, match="data.num_classes is 2 but labels go up to 2"):
        ImageDataModule(small_splits, [2, 4, 4], 2, val_size=10).setup()
    with pytest.raises(ValueError, match="data.batch_size must be an integer >= 1, got 0"):
        ImageDataModule(small_splits, [2, 4, 4], 3, batch_size=0)
    with pytest.raises(ValueError, match="data.normalize must be one of"):
        ImageDataModule(small_splits, [2, 4, 4], 3, normalize="zscore")


class BatchProbe:
    """Records the model-input batches Lightning hands to each hook (after the transfer hook)."""

    def __init__(self) -> None:
        import pytorch_lightning as pl

        probe = self
        self.train: list[torch.Tensor] = []
        self.val: list[torch.Tensor] = []

        class _Probe(pl.Callback):
            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
                probe.train.append(batch[0].clone())

            def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
                probe.val.append(batch[0].clone())

        self.callback = _Probe()


def test_augmentation_acts_on_training_batches_only(tmp_path):
    from tiny import tiny_datamodule, tiny_model, tiny_trainer

    from trainlab.augment import Compose, Flip

    dm = tiny_datamodule(augment=Compose([Flip(p=1.0)]), batch_size=80)
    probe = BatchProbe()
    trainer = tiny_trainer(tmp_path, max_epochs=1, callbacks=[probe.callback])
    trainer.fit(tiny_model(), datamodule=dm)
    order = torch.randperm(80, generator=torch.Generator().manual_seed(0 * 100_003 + 0))
    raw_train = dm.to_model_input(dm.splits["train"][0][order])
    assert torch.allclose(probe.train[0], raw_train.flip(-1), atol=1e-6)  # every image flipped
    assert torch.allclose(probe.val[0], dm.to_model_input(dm.splits["val"][0]))  # untouched


def test_a_users_arrays_and_image_files_read_back_exactly(tmp_path):
    """image_arrays (NHWC float 0..1 here) and image_folder give the user's pixels and labels."""
    from trainlab.data.sources import image_arrays, image_folder, save_png

    splits = digits()
    x, y = splits.train_x[:40], splits.train_y[:40]
    np.savez(tmp_path / "d.npz", x_train=x.permute(0, 2, 3, 1).numpy() / 255.0, y_train=y.numpy(),
             x_test=x[:5, 0].numpy(), y_test=y[:5].numpy())
    read = image_arrays(str(tmp_path / "d.npz"))
    assert torch.equal(read.train_x, x) and torch.equal(read.train_y, y)
    assert torch.equal(read.test_x, x[:5])  # (N, H, W) gains its channel axis
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    for split in ("train", "test"):
        for i, (image, label) in enumerate(zip(x, y.tolist(), strict=True)):
            folder = tmp_path / "files" / split / names[label]
            folder.mkdir(parents=True, exist_ok=True)
            save_png(image, folder / f"{i:03d}.png")
    folder = image_folder(str(tmp_path / "files"), channels=1)
    order = sorted(names)  # class k = k-th folder name in sorted order
    assert sorted(folder.train_y.tolist()) == sorted(order.index(names[k]) for k in y.tolist())
    for image, label in zip(folder.train_x, folder.train_y.tolist(), strict=True):
        assert any(torch.equal(image, x[i]) for i in range(len(x)) if names[y[i]] == order[label])
    with pytest.raises(DataUnavailableError, match=r"lacks arrays \['y_test'\]"):
        np.savez(tmp_path / "bad.npz", x_train=x.numpy(), y_train=y.numpy(), x_test=x.numpy())
        image_arrays(str(tmp_path / "bad.npz"))
