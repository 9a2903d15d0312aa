"""Bad data is named before training: one line that names the file (and row, column, image or
key) and what is allowed, raised by the DataModule's ``setup("fit")`` or the checkpoint check."""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf
from tiny import tiny_splits

from trainlab.data import DataUnavailableError, ImageDataModule, TabularDataModule
from trainlab.data.sources import image_arrays, image_folder
from trainlab.data.tabular import csv_table
from trainlab.errors import ConfigError
from trainlab.evaluation import check_checkpoint, load_weights
from trainlab.models import MLP, Classifier


def write_csv(path: Path, rows: list[str], header: str = "a,b,label") -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def good_rows(n: int = 20) -> list[str]:
    """``n`` rows of two features and a text label, classes a/b alternating."""
    return [f"{i % 7 * 0.5},{i * 0.25},{'ab'[i % 2]}" for i in range(n)]


def table(path: Path, num_classes: int = 2, **kwargs) -> TabularDataModule:
    return TabularDataModule(partial(csv_table, str(path)), [2], num_classes, target="label", **kwargs)


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file()}


# --- 1. CSV tables -------------------------------------------------------------------------------

@pytest.mark.parametrize(("cell", "value"), [("", r"has no value \(NaN\)"), ("nan", r"has no value \(NaN\)"),
                                             ("inf", "holds inf")], ids=["empty", "nan", "inf"])
def test_csv_feature_value_that_is_not_a_number_names_file_row_and_column(tmp_path, cell, value):
    rows = good_rows()
    rows[6] = f"1.5,{cell},b"  # the 7th example: row 8 of the file, the header being row 1
    path = write_csv(tmp_path / "t.csv", rows)
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: row 8 \(the header is row 1\), "
                                          rf"column 'b' {value}, 1 row\(s\) in all; features must be "
                                          "finite numbers"):
        table(path).setup("fit")


@pytest.mark.parametrize(("labels", "num_classes"), [("text", 2), ("numbers", 3)])
def test_csv_row_without_label_is_refused_not_made_a_class(tmp_path, labels, num_classes):
    """Text labels beside a NaN crashed np.unique; numeric ones made NaN a third class (so
    data.num_classes=3 trained on it)."""
    rows = good_rows() if labels == "text" else [f"{i * 0.5},{i % 3},{i % 2}" for i in range(20)]
    rows.insert(4, "1.0,2.0,")  # file row 6
    rows.insert(9, "1.0,2.0,")
    path = write_csv(tmp_path / "t.csv", rows)
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: row 6 \(the header is row 1\) "
                                          r"has no label \(column 'label'\), 2 row\(s\) in all; every "
                                          "row needs a label"):
        table(path, num_classes=num_classes).setup("fit")


@pytest.mark.parametrize(("text", "message"), [
    ("", "is empty: it needs a header line naming the columns, then one row per example"),
    ("a,b,label\n", "has no rows below its header: it needs one row per example"),
], ids=["no-bytes", "header-only"])
def test_empty_csv_names_the_file_and_what_it_needs(tmp_path, text, message):
    path = tmp_path / "t.csv"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"^data.source.path={re.escape(repr(str(path)))} {message}$"):
        table(path).setup("fit")


@pytest.mark.parametrize(("n_rows", "fractions", "message"), [
    (4, {}, r"its 4 rows split into 2 train / 1 val / 1 test with data.val_fraction=0.2 and "
            r"data.test_fraction=0.2; each split needs at least 2 rows \(one per class\)"),
    (10, {"val_fraction": 0.05}, r"its 10 rows split into 7 train / 1 val / 2 test with "
                                 r"data.val_fraction=0.05 and data.test_fraction=0.2; each split"),
    (30, {}, r"its 30 rows cannot be split into stratified train/val/test with "
             r"data.val_fraction=0.2 and data.test_fraction=0.2: .*least populated class"),
], ids=["4-rows", "val-fraction-0.05", "class-of-one-row"])
def test_too_few_rows_for_the_splits_names_the_file_and_the_fractions(tmp_path, n_rows, fractions,
                                                                      message):
    rows = good_rows(n_rows)
    if n_rows == 30:  # enough rows, but class c has one: it cannot be in all three splits
        rows[0] = "0.0,0.0,c"
    path = write_csv(tmp_path / "t.csv", rows)
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: {message}"):
        table(path, num_classes=3 if n_rows == 30 else 2, **fractions).setup("fit")


# --- 2. .npz arrays ------------------------------------------------------------------------------

@pytest.mark.parametrize(("y_train", "message"), [
    (np.arange(9) % 3, r"x_train holds 10 images but y_train 9 labels; each image needs exactly one "
                       "label"),
    (np.array([0, 1, 2, -1, 0, 1, 2, 0, 1, 2]), r"y_train\[3\] is -1: labels must be integers 0..K-1 "
                                                r"\(1 are negative\)"),
    (np.array([0, 1.5, 2, 1, 0, 1, 2, 0, 1, 2]), r"y_train\[1\] is 1.5: labels must be integers 0..K-1 "
                                                 r"\(1 are not\)"),
], ids=["lengths-differ", "negative", "fractional"])
def test_npz_labels_that_do_not_fit_the_images_name_file_and_index(tmp_path, y_train, message):
    path = tmp_path / "d.npz"
    x = np.zeros((10, 4, 4), np.uint8)
    np.savez(path, x_train=x, y_train=y_train, x_test=x[:3], y_test=np.array([0, 1, 2]))
    dm = ImageDataModule(partial(image_arrays, str(path)), [1, 4, 4], 3, val_size=2, batch_size=4)
    with pytest.raises(DataUnavailableError, match=rf"^{re.escape(str(path))}: {message}$"):
        dm.setup("fit")


# --- 3. image folders ----------------------------------------------------------------------------

def image_tree(root: Path, classes: dict[str, int]) -> Path:
    """``root/{train,test}/<class>/`` holding that many 4x4 grayscale PNGs each."""
    from PIL import Image

    for split in ("train", "test"):
        for name, count in classes.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                Image.fromarray(np.full((4, 4), 40 * i, np.uint8)).save(folder / f"{i}.png")
    return root


@pytest.mark.parametrize(("classes", "message"), [
    ({"cat": 3}, r"train has 1 class folder\(s\) \['cat'\]: a classifier needs at least 2"),
    ({"cat": 3, "dog": 3, "zebra": 0}, r"train/zebra \(class 2\) holds no .png/.jpg/.jpeg images: "
                                       "every class folder needs at least one"),
    ({"aardvark": 0, "cat": 3, "dog": 3}, r"train/aardvark \(class 0\) holds no .png/.jpg/.jpeg "
                                          "images: every class folder needs at least one"),
], ids=["one-class", "empty-class-last", "empty-class-first"])
def test_image_folder_with_one_or_an_empty_class_names_the_folder(tmp_path, classes, message):
    root = image_tree(tmp_path / "images", classes)
    dm = ImageDataModule(partial(image_folder, str(root), channels=1), [1, 4, 4], 3, val_size=1,
                         batch_size=2)
    with pytest.raises(DataUnavailableError, match=rf"^{re.escape(str(root))}/{message}"):
        dm.setup("fit")


@pytest.mark.parametrize("channels", [1, 3])
def test_16_bit_palette_and_rgba_images_convert_without_clipping(tmp_path, channels):
    """A 16-bit PNG is scaled from 0..65535 to 0..255 (Pillow's convert clips it at 255); palette
    images take their palette's colours and RGBA ones drop alpha."""
    from PIL import Image

    sixteen = np.array([[0, 257, 32896, 65535]], np.uint16)  # -> 0, 1, 128, 255
    palette = Image.fromarray(np.array([[0, 1, 2, 1]], np.uint8), mode="P")
    palette.putpalette([255, 0, 0, 0, 255, 0, 10, 20, 30])
    rgba = np.zeros((1, 4, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = [10, 20, 30, 40], 100, 200, [0, 80, 160, 255]
    images = {"gray16": Image.fromarray(sixteen), "palette": palette, "rgba": Image.fromarray(rgba, "RGBA")}
    for split in ("train", "test"):
        for name, image in images.items():
            (tmp_path / split / name).mkdir(parents=True)
            image.save(tmp_path / split / name / "0.png")
    assert Image.open(tmp_path / "train" / "gray16" / "0.png").mode.startswith("I;16")
    read = image_folder(str(tmp_path), channels=channels)
    rgb = {"gray16": [[0, 1, 128, 255]] * 3,
           "palette": [[255, 0, 10, 0], [0, 255, 20, 255], [0, 0, 30, 0]],
           "rgba": [[10, 20, 30, 40], [100] * 4, [200] * 4]}  # alpha dropped, colour kept
    for label, name in enumerate(sorted(images)):
        expected = torch.tensor(rgb[name], dtype=torch.float64)
        if channels == 1:  # Pillow's ITU-R 601-2 luma: L = R * 299/1000 + G * 587/1000 + B * 114/1000
            expected = (expected * torch.tensor([[0.299], [0.587], [0.114]], dtype=torch.float64)
                        ).sum(0, keepdim=True)
        got = read.train_x[read.train_y == label][0, :, 0].double()
        assert got.shape == (channels, 4) and (got - expected).abs().max() <= 0.5 + 1e-9, name


# --- 4. nothing to train on ----------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "message"), [
    ({"batch_size": 96}, "data.batch_size=96 is larger than the 80 training images left after "
                         "data.val_size=16"),
    ({"batch_size": 16, "train_subset": 10}, "data.batch_size=16 is larger than the 10 training "
                                             "images left after data.val_size=16 and "
                                             "data.train_subset=10"),
], ids=["after-val-size", "after-train-subset"])
def test_a_batch_larger_than_the_training_split_is_refused_naming_the_keys(kwargs, message):
    """Image training batches drop the incomplete last one (InMemoryDataModule.drop_last_train),
    so such a batch size would train for zero steps."""
    dm = ImageDataModule(tiny_splits, [1, 4, 4], 2, val_size=16, **kwargs)
    assert dm.drop_last_train
    with pytest.raises(ConfigError, match=rf"^{message}; incomplete batches are dropped, so no "
                                          r"optimizer step would run: set data.batch_size <= \d+$"):
        dm.setup("fit")
    dm.setup("test")  # testing takes no optimizer step: any batch size will do
    assert len(dm.test_dataloader()) == 1


# --- 5. checkpoints that are not this run's ------------------------------------------------------

def classifier(num_classes: int, hidden: tuple[int, ...] = (8,),
               input_shape: tuple[int, ...] = (1, 4, 4)) -> Classifier:
    return Classifier(MLP(list(input_shape), num_classes, hidden=hidden),
                      partial(torch.optim.SGD, lr=0.1), num_classes=num_classes,
                      input_shape=list(input_shape))


@pytest.mark.parametrize(("content", "message"), [
    ("text", r"is not a checkpoint torch can read \(\w+(: .+)?\); pass a <run>/checkpoints/\*.ckpt"),
    ("truncated", r"is not a checkpoint torch can read \(RuntimeError: PytorchStreamReader failed "
                  r"reading zip archive: failed finding central directory\); pass"),
    ("tensor", r"is not a Lightning checkpoint \(no state_dict\); pass a <run>/checkpoints/\*.ckpt"),
    ("other net", r"holds weights of another net or dataset: net.layers.3.weight: checkpoint \(10, 8\) "
                  r"vs model \(3, 8\); net.layers.3.bias: checkpoint \(10,\) vs model \(3,\)$"),
    ("deeper net", r"holds weights of another net or dataset: net.layers.3.weight: checkpoint \(4, 8\) "
                   r"vs model \(3, 8\); net.layers.3.bias: checkpoint \(4,\) vs model \(3,\); "
                   r"net.layers.5.weight: in the checkpoint, not in the model \(and 1 more\)$"),
])
def test_a_file_that_is_not_this_models_checkpoint_is_named_with_the_differences(tmp_path, content,
                                                                                 message):
    ckpt = tmp_path / "last.ckpt"
    if content == "text":
        ckpt.write_text("this is not a checkpoint\n")
    elif content == "tensor":
        torch.save(torch.zeros(3), ckpt)
    else:
        other = {"other net": classifier(10), "deeper net": classifier(3, hidden=(8, 4)),
                 "truncated": classifier(3)}[content]
        torch.save({"state_dict": other.state_dict(), "epoch": 0}, ckpt)
        if content == "truncated":
            ckpt.write_bytes(ckpt.read_bytes()[:200])
    model = classifier(3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(ckpt))} {message}"):
        load_weights(model, ImageDataModule(tiny_splits, [1, 4, 4], 2), ckpt)  # eval.py's path
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # untouched
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(ckpt))} {message}"):
        check_checkpoint(ckpt, model)  # what a resume checks before trainer.fit
    own = tmp_path / "own.ckpt"
    torch.save({"state_dict": model.state_dict()}, own)
    assert set(check_checkpoint(own, model)["state_dict"]) == set(before)


# --- end to end: the entry points print one line ------------------------------------------------

@pytest.mark.e2e
def test_train_on_a_csv_with_a_missing_value_prints_one_line_and_trains_nothing(tmp_path):
    rows = good_rows(40)
    rows[10] = "0.5,,a"
    path = write_csv(tmp_path / "table.csv", rows)
    run = tmp_path / "run"
    proc = run_cli("data=csv", f"data.source.path={path}", "data.target=label", "data.input_shape=[2]",
                   "data.num_classes=2", "net=mlp", "trainer.max_epochs=1",
                   "callbacks.progress_bar=null", f"hydra.run.dir={run}")
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in output
    assert f"error: {path}: row 12 (the header is row 1), column 'b' has no value (NaN), 1 row(s) " \
        "in all; features must be finite numbers" in output
    assert not (run / "checkpoints").exists() and not (run / "results.json").exists()


@pytest.fixture
def run_dir(tmp_path) -> Path:
    """A digits/mlp run's directory as training leaves it, its checkpoint yet to be written."""
    from trainlab.compose import compose_config

    run = tmp_path / "run"
    cfg = compose_config(["data=digits", "net=mlp", "model.net.hidden=[16]"], run)
    GlobalHydra.instance().clear()
    (run / ".hydra").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    OmegaConf.save(cfg, run / ".hydra" / "config.yaml")  # unresolved, as Hydra saves it
    return run


@pytest.mark.e2e
@pytest.mark.parametrize(("content", "message"), [
    ("text", r"is not a checkpoint torch can read \(\w+(: .+)?\); pass a <run>/checkpoints/\*.ckpt "
             "file that training wrote"),
    ("other dataset", r"holds weights of another net or dataset: net.layers.1.weight: checkpoint "
                      r"\(16, 16\) vs model \(16, 64\); net.layers.3.weight: checkpoint \(3, 16\) vs "
                      r"model \(10, 16\); net.layers.3.bias: checkpoint \(3,\) vs model \(10,\)$"),
])
def test_eval_of_a_foreign_checkpoint_prints_one_line_and_writes_nothing(run_dir, tmp_path, content,
                                                                         message):
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    if content == "text":
        ckpt.write_text("epoch=3 val/acc=0.91\n")
    else:  # a 4x4, 3-class model's weights where the run's 8x8 digits model expects 10 classes
        torch.save({"state_dict": classifier(3, hidden=(16,)).state_dict()}, ckpt)
    before = snapshot(run_dir)
    out = tmp_path / "eval"
    proc = run_cli(f"ckpt_path={ckpt}", f"hydra.run.dir={out}", script="eval.py")
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in output, output[-3000:]
    line = next(line for line in output.splitlines() if line.startswith("error: "))
    assert re.fullmatch(rf"error: {re.escape(str(ckpt))} {message}", line), line
    assert snapshot(run_dir) == before and not (out / "eval.json").exists()
