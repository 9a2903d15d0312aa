"""Test a trained run's checkpoint and predict class probabilities for new images.

Called by the Hydra main in ``trainlab.eval`` (``python eval.py ckpt_path=...``). The run is
rebuilt from its own saved config (``<run>/.hydra/config.yaml``, the run dir being the
checkpoint's grandparent), so data, normalization and network are exactly the run's. Everything
is written into the eval's own directory (``outputs/eval/<date>_<time>/``): ``eval.json`` and,
with ``predict_path``, ``predictions.csv``. The training run's files are never touched.
"""

from __future__ import annotations

import csv
import logging
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from trainlab.data import ImageDataModule
from trainlab.data.batches import TensorBatchLoader
from trainlab.data.sources import read_image_file
from trainlab.errors import ConfigError
from trainlab.models.classifier import Classifier, drop_legacy_net_alias
from trainlab.results import flat_metrics, write_results
from trainlab.rundir import run_of_checkpoint, saved_config
from trainlab.runtime import nvml_check

log = logging.getLogger(__name__)

EVAL_JSON = "eval.json"
PREDICTIONS = "predictions.csv"
MAX_DIFFERENCES = 3  # keys a foreign checkpoint's message names: enough to see which net it fits


class EvalError(RuntimeError):
    """The evaluation cannot start: nothing to do, or bad inputs to predict (a checkpoint that
    does not fit the run is a :class:`ConfigError`, see :func:`check_checkpoint`)."""


def run_config(run_dir: Path, trainer_overrides: DictConfig, overrides: list[str],
               site: DictConfig | None = None) -> DictConfig:
    """The run's saved config, changed by dotlist ``overrides``, with the eval's trainer keys
    and this machine's ``site`` settings (data roots), where the run has a site block.

    The model's ``init`` is dropped (the checkpoint supplies the weights, so a ``pretrained``
    init must not read its file again).
    """
    cfg = saved_config(run_dir)
    try:
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
    except Exception as err:
        raise EvalError(f"run_overrides={list(overrides)}: {err}") from err
    with open_dict(cfg):
        for key, value in trainer_overrides.items():
            cfg.trainer[key] = value
        cfg.model.init = None
        if site is not None and "site" in cfg:
            cfg.site = site
    return cfg


def check_checkpoint(ckpt_path: Path, model: torch.nn.Module) -> dict[str, Any]:
    """The checkpoint at ``ckpt_path`` (tensors only unpickled), once it is known to be a
    Lightning checkpoint whose weights fit ``model``: the same keys, each of the same shape.

    Raises:
        ConfigError: one line naming the file and what is wrong: not a checkpoint torch can
            read (a text file, a truncated copy), no ``state_dict``, or the first few keys that
            one side lacks or whose shapes differ (a checkpoint of another net or dataset).
    """
    try:
        checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip and EOF errors of torch.load: the file is not one
        line = str(err).splitlines()[0].split(". ")[0][:120] if str(err) else ""  # its first sentence
        reason = f"{type(err).__name__}: {line}" if line else type(err).__name__
        raise ConfigError(f"{ckpt_path} is not a checkpoint torch can read ({reason}); pass a "
                          "<run>/checkpoints/*.ckpt file that training wrote") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise ConfigError(f"{ckpt_path} is not a Lightning checkpoint (no state_dict); pass a "
                          "<run>/checkpoints/*.ckpt file that training wrote")
    saved, wanted = checkpoint["state_dict"], model.state_dict()
    if isinstance(model, Classifier):  # a checkpoint from before the net was registered once
        drop_legacy_net_alias(saved)

    def shape(value: Any) -> tuple[int, ...] | str:
        return tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__

    differences = [f"{key}: checkpoint {shape(saved[key])} vs model {shape(wanted[key])}"
                   for key in wanted if key in saved and shape(saved[key]) != shape(wanted[key])]
    differences += [f"{key}: in the model, not in the checkpoint" for key in wanted if key not in saved]
    differences += [f"{key}: in the checkpoint, not in the model" for key in saved if key not in wanted]
    if differences:
        shown = "; ".join(differences[:MAX_DIFFERENCES])
        more = f" (and {len(differences) - MAX_DIFFERENCES} more)" \
            if len(differences) > MAX_DIFFERENCES else ""
        raise ConfigError(f"{ckpt_path} holds weights of another net or dataset: {shown}{more}")
    return checkpoint


def load_weights(model: pl.LightningModule, datamodule: pl.LightningDataModule,
                 ckpt_path: Path) -> None:
    """Load a checkpoint's weights into ``model`` (in the checkpoint's dtype) and its
    normalization statistics into ``datamodule``, unpickling nothing but tensors.

    Raises:
        ConfigError: the file is not a checkpoint of this model (:func:`check_checkpoint`).
    """
    checkpoint = check_checkpoint(ckpt_path, model)
    state = checkpoint["state_dict"]
    dtype = next((t.dtype for t in state.values() if t.is_floating_point()), torch.float32)
    model.to(dtype)
    model.load_state_dict(state)
    data_state = checkpoint.get(type(datamodule).__qualname__)
    if data_state:
        datamodule.load_state_dict(data_state)


def read_inputs(path: Path, input_shape: tuple[int, ...]) -> tuple[torch.Tensor, list[str]]:
    """Images to predict and their names.

    Args:
        path: a ``.pt`` file holding a tensor (N, C, H, W), uint8 (0..255) or float (0..1),
            or a folder of ``.png`` images (read as grayscale or RGB to match ``C``).
        input_shape: (C, H, W) the model takes.

    Returns:
        ``(images, names)``: uint8 or float (N, C, H, W), and the file names (or indices).
    """
    if path.is_dir():
        files = sorted(path.glob("*.png"))
        if not files:
            raise EvalError(f"predict_path={path} holds no .png images")
        images = []
        for file in files:
            image = read_image_file(file, input_shape[0])
            if tuple(image.shape) != tuple(input_shape):
                raise EvalError(f"predict_path: {file.name} is {list(image.shape)} (C, H, W) but "
                                f"the model takes {list(input_shape)}")
            images.append(image)
        return torch.stack(images), [f.name for f in files]
    if not path.is_file():
        raise EvalError(f"predict_path={path} does not exist (a .pt tensor file or a folder of PNGs)")
    images = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(images, torch.Tensor) or images.ndim != 4 \
            or tuple(images.shape[1:]) != tuple(input_shape):
        got = list(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise EvalError(f"predict_path={path} must hold a tensor (N, {', '.join(map(str, input_shape))})"
                        f", got {got}")
    if images.dtype != torch.uint8:
        if not images.is_floating_point():
            raise EvalError(f"predict_path={path}: images must be uint8 (0..255) or float (0..1), "
                            f"got {images.dtype}")
        low, high = float(images.min()), float(images.max())
        if low < 0 or high > 1:
            raise EvalError(f"predict_path={path}: float images must lie in [0, 1], got values in "
                            f"[{low:.3g}, {high:.3g}] (pass uint8 for 0..255 pixels)")
    return images, [str(i) for i in range(len(images))]


def predict_proba(trainer: pl.Trainer, model: pl.LightningModule, datamodule: ImageDataModule,
                  images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Class probabilities (N, num_classes) of images, normalized as the run's training split.

    They come from ``trainer.predict``, i.e. the model's ``predict_step``: the logits its test
    step scores, with the run's test-time views (``model.tta_*``) and the trainer's precision,
    so on the test split their argmax scores the run's ``test/acc``.
    """
    # the normalization the DataModule gives test batches, in the dtype it gives them
    dtype = torch.float64 if model.dtype == torch.float64 else torch.float32
    if images.dtype == torch.uint8:
        x = datamodule.to_model_input(images, dtype)
    else:  # (x01 - shift) / scale, the DataModule's normalization of [0, 1] images
        x = (images.to(dtype) - datamodule.shift.view(1, -1, 1, 1).to(dtype)) \
            / datamodule.scale.view(1, -1, 1, 1).to(dtype)
    # batches of (images, their indices): predict_step reads the images only
    batches = TensorBatchLoader.from_tensors(x, torch.arange(len(x)), batch_size, shuffle=False,
                                           drop_last=False)
    return torch.cat(trainer.predict(model, dataloaders=batches))


def write_predictions(path: Path, names: list[str], probs: torch.Tensor) -> Path:
    """``name, pred, p_0 .. p_{K-1}``, one row per image."""
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["name", "pred", *(f"p_{k}" for k in range(probs.shape[1]))])
        for name, pred, row in zip(names, probs.argmax(dim=1).tolist(), probs.tolist(), strict=True):
            writer.writerow([name, pred, *(f"{p:.6g}" for p in row)])
    return path


def run_eval(cfg: DictConfig) -> dict[str, Any]:
    """Test ``cfg.ckpt_path`` on its run's test split and/or predict ``cfg.predict_path``."""
    start = time.perf_counter()
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    nvml_check(cfg.process.skip_failing_nvml_check)
    try:
        if not cfg.test and cfg.predict_path is None:
            raise EvalError("nothing to do: test=false and predict_path=null")
        if not isinstance(cfg.predict_batch_size, int) or cfg.predict_batch_size < 1:
            raise EvalError(f"predict_batch_size must be an integer >= 1, got {cfg.predict_batch_size!r}")
        if (out_dir / EVAL_JSON).exists():
            raise EvalError(f"{out_dir} already holds {EVAL_JSON}; choose another hydra.run.dir")
        ckpt_path = Path(cfg.ckpt_path)
        run_dir = run_of_checkpoint(ckpt_path)
        run_cfg = run_config(run_dir, cfg.trainer, cfg.run_overrides, cfg.site)
        pl.seed_everything(run_cfg.seed, workers=True)
        datamodule = instantiate(run_cfg.data)
        model = instantiate(run_cfg.model)
        trainer = instantiate(run_cfg.trainer, callbacks=[], logger=False)
        load_weights(model, datamodule, ckpt_path)
        images = names = None
        if cfg.predict_path is not None:
            if not isinstance(datamodule, ImageDataModule):
                raise EvalError(f"predict_path needs an image run; {run_dir} trained "
                                f"{type(datamodule).__name__}")
            images, names = read_inputs(Path(cfg.predict_path), datamodule.input_shape)
    except (EvalError, ConfigError) as err:  # RunDirError and check_checkpoint's are ConfigErrors
        log.error("%s", err)
        raise SystemExit(f"error: {err}") from None
    results: dict[str, Any] = {"ckpt_path": str(ckpt_path.resolve()), "run_dir": str(run_dir)}
    if cfg.test:
        tested = trainer.test(model, datamodule=datamodule, verbose=False)
        results.update(flat_metrics(tested[0]) if tested else {})
    if images is not None:
        probs = predict_proba(trainer, model, datamodule, images, cfg.predict_batch_size)
        results["predictions"] = str(write_predictions(out_dir / PREDICTIONS, names, probs))
        results["n_predictions"] = len(names)
    results["wall_s"] = time.perf_counter() - start
    write_results(out_dir / EVAL_JSON, results)
    for key in sorted(results):
        print(f"{key:>16}: {results[key]}")
    log.info("Eval results: %s", out_dir / EVAL_JSON)
    return results
