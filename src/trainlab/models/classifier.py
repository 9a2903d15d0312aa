"""The one LightningModule: any ``nn.Module`` network, cross-entropy, metrics and logging."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from time import monotonic
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.callbacks import RichProgressBar
from pytorch_lightning.cli import OptimizerCallable
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassF1Score
from typing_extensions import override

from trainlab.checkpoint_state import from_every_rank
from trainlab.errors import ConfigError
from trainlab.regularization import Regularization

# Completed with parameter groups: ``partial(torch.optim.Adam, lr=1e-3)`` from Hydra's ``_partial_``,
# or ``class_path``/``init_args`` from LightningCLI (``--model.optimizer=Adam``).
OptimizerFactory = OptimizerCallable
# running train metrics of the current epoch, saved in checkpoints under TRAIN_METRICS_KEY
TRAIN_METRICS = ("train_acc", "train_loss")
TRAIN_METRICS_KEY = "trainlab_train_metrics"


# tta_shift's windows into the image padded by s on every side, as (top, left) in units of s.
# The content they hold is moved by s: (0, 0) down and right, (2, 2) up and left, (0, 1) down,
# (2, 1) up, (1, 0) right, (1, 2) left.
SHIFT_OFFSETS = {"diagonal": ((0, 0), (2, 2)), "axes": ((0, 1), (2, 1), (1, 0), (1, 2))}
# Checkpoints written before the network was registered once also hold it under this prefix
# (``forward_fn._orig_mod.*`` from compiled runs): the same tensors as ``net.*``.
LEGACY_NET_ALIAS = "forward_fn."


def drop_legacy_net_alias(state_dict: dict[str, Any], prefix: str = "") -> None:
    """Remove the network's second registration (:data:`LEGACY_NET_ALIAS`) from a Classifier's
    ``state_dict`` in place, keeping its ``net.*`` tensors (taken from the alias where missing).

    Args:
        state_dict: a Classifier's state dict, as saved in a checkpoint.
        prefix: where the Classifier's keys start (``""`` for a Classifier's own state dict).
    """
    alias = prefix + LEGACY_NET_ALIAS
    for key in [key for key in state_dict if key.startswith(alias)]:
        name = key[len(alias):].removeprefix("_orig_mod.")
        state_dict.setdefault(f"{prefix}net.{name}", state_dict.pop(key))


def _load_legacy_net_alias(module: nn.Module, state_dict: dict[str, Any], prefix: str,
                           *args: Any) -> None:
    """``load_state_dict`` pre-hook: a checkpoint saved with ``forward_fn.*`` keys loads."""
    drop_legacy_net_alias(state_dict, prefix)


class Classifier(pl.LightningModule):
    """Classification around an injected network. It owns loss, metrics and logging and never
    builds data.

    Args:
        net: the network (a plain ``nn.Module``).
        optimizer: factory completed with parameter groups, e.g. ``partial(torch.optim.Adam, lr=1e-3)``.
        num_classes: number of classes (top-k accuracy is logged when > 5).
        input_shape: shape of one input, for the model summary and example input.
        regularization: penalties and weight decay (None = none).
        init: callable applied once to ``net`` (a scheme from ``trainlab.init``); None = PyTorch's.
        label_smoothing: cross-entropy label smoothing in [0, 1).
        channels_last: keep conv weights and inputs in NHWC (faster convs on GPUs and many CPUs).
        compile: run the network through ``torch.compile`` (in place: the checkpoint keys stay
            ``net.*``, so weights load whether or not the loading run compiles).
        tta_flip: test-time augmentation for images: validation, test and predict logits are the
            mean of the logits of each image and of its left-right mirror (as airbench does).
            Training is unchanged.
        tta_shift: test-time augmentation by translation: with ``s > 0`` the evaluation logits
            are also averaged over two copies of each image moved ``s`` pixels diagonally, down
            and right and up and left, edge pixels repeated into the gap (airbench translates
            its test images by one pixel). With ``tta_flip`` every copy is also mirrored: six
            views in all.
        tta_shift_dirs: where ``tta_shift``'s copies move: ``diagonal`` (the two above) or
            ``axes``: four copies moved ``s`` pixels down, up, right and left (ten views with
            ``tta_flip``). On six ``fmnist_94`` nets trained on 1-px shifts, ``axes`` scored
            0.02-0.22 points above ``diagonal`` on every one (BENCHMARKS.md).
    """

    def __init__(self, net: nn.Module, optimizer: OptimizerFactory, num_classes: int,
                 input_shape: Sequence[int], regularization: Regularization | None = None,
                 init: Callable[[nn.Module], object] | None = None, label_smoothing: float = 0.0,
                 channels_last: bool = False, compile: bool = False, tta_flip: bool = False,
                 tta_shift: int = 0, tta_shift_dirs: str = "diagonal") -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"model.label_smoothing must be in [0, 1), got {label_smoothing}")
        input_shape = [int(s) for s in input_shape]  # plain list: checkpoints load weights_only
        if tta_flip and len(input_shape) != 3:
            raise ConfigError(f"model.tta_flip=true mirrors images, but the input shape is {input_shape}; "
                              "it needs (channels, height, width): set model.tta_flip=false")
        if tta_shift and len(input_shape) != 3:
            raise ConfigError(f"model.tta_shift={tta_shift} moves images, but the input shape is "
                              f"{input_shape}; it needs (channels, height, width): set model.tta_shift=0")
        if tta_shift < 0 or (tta_shift and 2 * tta_shift >= min(input_shape[1:])):
            raise ConfigError(f"model.tta_shift must be 0 (off) or 1..{(min(input_shape[1:]) - 1) // 2} "
                              f"pixels for {input_shape[1]}x{input_shape[2]} images, got {tta_shift}")
        if tta_shift_dirs not in SHIFT_OFFSETS:
            raise ConfigError(f"model.tta_shift_dirs must be one of {list(SHIFT_OFFSETS)}, "
                              f"got {tta_shift_dirs!r}")
        if tta_shift_dirs != "diagonal" and not tta_shift:
            raise ConfigError(f"model.tta_shift_dirs={tta_shift_dirs} moves the copies that model.tta_shift "
                              "makes, and model.tta_shift is 0: set model.tta_shift=1")
        self.save_hyperparameters(ignore=["net", "optimizer", "regularization", "init"])
        check_net(net, input_shape, num_classes)
        self.net = net
        if init is not None:
            init(self.net)
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        if compile:
            # compiled in place: the network stays registered once, so checkpoints hold only
            # ``net.*`` keys and load into runs with and without model.compile alike
            self.net.compile()
        self.register_load_state_dict_pre_hook(_load_legacy_net_alias)
        self.optimizer_factory = optimizer
        self.regularization = regularization or Regularization()
        self.label_smoothing = label_smoothing
        self.channels_last = channels_last and len(input_shape) == 3
        self.tta_flip = tta_flip
        self.tta_shift = tta_shift
        self.tta_shift_offsets = SHIFT_OFFSETS[tta_shift_dirs]
        self.example_input_array = torch.zeros(2, *input_shape)
        self.top_k = 5 if num_classes > 5 else 0
        # predicted classes in, no per-step input checks (the labels are checked by the data)
        self.train_acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
        self.train_loss = MeanMetric()
        for stage in ("val", "test"):
            setattr(self, f"{stage}_acc", MulticlassAccuracy(num_classes, average="micro"))
            setattr(self, f"{stage}_loss", MeanMetric())
            if self.top_k:
                setattr(self, f"{stage}_acc_top{self.top_k}",
                        MulticlassAccuracy(num_classes, top_k=self.top_k, average="micro"))
        # a single run judged by looking: macro-F1, per-class accuracy, the confusion matrix
        self.test_f1 = MulticlassF1Score(num_classes, average="macro")
        self.test_acc_class = MulticlassAccuracy(num_classes, average=None)
        self.test_confusion = MulticlassConfusionMatrix(num_classes)
        self.confusion: torch.Tensor | None = None  # the last test's: rows true, columns predicted
        self._step_values: tuple[torch.Tensor, torch.Tensor] | None = None  # this step's loss, acc
        self._next_bar_log = 0.0  # monotonic() from which a Rich bar's redraw wants them
        self.status = "ok"
        self.divergence: str | None = None  # where the loss turned non-finite, and the likely cause

    @override
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != self.dtype and x.is_floating_point():
            x = x.to(self.dtype)  # 64-true / bf16-true runs: inputs follow the parameters
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)

    def _eval_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the validation, test and predict steps (so of eval.py's predictions too): the
        mean over the test-time views (``tta_flip``, ``tta_shift``)."""
        views = [x]
        if self.tta_shift:
            s = self.tta_shift
            padded = F.pad(x, (s, s, s, s), mode="replicate")
            height, width = x.shape[-2:]
            views += [padded[..., top * s:top * s + height, left * s:left * s + width]
                      for top, left in self.tta_shift_offsets]
        if self.tta_flip:
            views += [view.flip(-1) for view in views]
        logits = self(views[0])
        for view in views[1:]:
            logits = logits + self(view)
        return logits / len(views)

    def _loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)

    @override
    def training_step(self, batch, batch_idx: int):
        x, y = batch
        logits = self(x)
        loss = self._loss(logits, y)
        total = loss
        if self.regularization.has_penalty:
            penalty = self.regularization.penalty(self.net)
            total = loss + penalty
            self.log("train/reg_loss", penalty, on_step=False, on_epoch=True, sync_dist=True)
        if not torch.isfinite(total.detach()).item():
            # Skip the step so the weights (and the next checkpoint) stay the last good ones.
            self.status = "diverged"
            self.divergence = self._divergence(x, batch_idx)
            self.trainer.should_stop = True
            return None
        hard = y.argmax(dim=1) if y.ndim == 2 else y  # mixup/cutmix give soft labels
        preds = logits.detach().argmax(dim=1)
        self.train_acc.update(preds, hard)
        self.train_loss.update(loss.detach(), weight=y.shape[0])
        # this step's loss and accuracy (train/loss and train/acc are the epoch's), logged when
        # someone reads them: a bar that redraws after batches (TQDM's) now, else at the end
        # of the batch (on_train_batch_end)
        self._step_values = (loss.detach(), (preds == hard).float().mean())
        bar = self.trainer.progress_bar_callback
        if bar is not None and bar.is_enabled and not isinstance(bar, RichProgressBar):
            self._log_step_values()
        return total

    def _divergence(self, x: torch.Tensor, batch_idx: int) -> str:
        """Where the training loss turned non-finite, and its likely cause."""
        where = f"at step {self.trainer.global_step} (epoch {self.current_epoch}, batch {batch_idx})"
        if x.is_floating_point() and not torch.isfinite(x).all():
            return f"the training inputs hold NaN or inf {where}: check the training split's data"
        lr = self.trainer.optimizers[0].param_groups[0]["lr"]
        return (f"the training loss turned non-finite {where} at learning rate {lr:.3g}: lower "
                "model.optimizer.lr, or clip gradients (grad_clip=norm)")

    def _log_step_values(self) -> None:
        loss, acc = self._step_values
        self.log("train/loss_step", loss, on_step=True, on_epoch=False, prog_bar=True)
        self.log("train/acc_step", acc, on_step=True, on_epoch=False, prog_bar=True)
        self._step_values = None

    @override
    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        """The step values, if not logged yet, when the logger or a Rich bar reads them.
        Two ``self.log`` calls a step were about 5% of a default-CNN step on 2 cores
        (BENCHMARKS.md). The logger writes on_step values when ``trainer.log_every_n_steps``
        divides the optimizer steps (or the run stops), and Lightning's ``RichProgressBar``
        redraws ``refresh_rate`` times a second from a thread, so these are the steps they
        are logged at; metrics.csv holds the same rows as when every step logs them, and each
        redraw shows values less than one redraw old. Not for monitoring: callbacks that
        compare steps use the epoch's ``train/loss``/``train/acc`` or the val metrics."""
        if self._step_values is None:
            return
        trainer, every, now = self.trainer, self.trainer.log_every_n_steps, monotonic()
        bar = trainer.progress_bar_callback
        for_bar = bar is not None and bar.is_enabled and now >= self._next_bar_log
        for_logger = bool(trainer.loggers) and bool(every) and (
            trainer.global_step % every == 0 or trainer.should_stop)
        if for_bar:
            self._next_bar_log = now + 1 / bar.refresh_rate
        if for_bar or for_logger:
            self._log_step_values()
        self._step_values = None

    @override
    def on_train_epoch_end(self) -> None:
        # the epoch's accuracy and mean loss over every rank's samples, from metrics whose state
        # travels in checkpoints (a run resumed inside an epoch reports the whole epoch's)
        # compute() already gathered every rank's samples: sync_dist averages equal values
        self.log("train/acc", self.train_acc.compute(), sync_dist=True)
        self.log("train/loss", self.train_loss.compute(), sync_dist=True)
        self.train_acc.reset()
        self.train_loss.reset()

    @override
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        states = {name: getattr(self, name).metric_state for name in TRAIN_METRICS}
        checkpoint[TRAIN_METRICS_KEY] = from_every_rank(states, self.trainer.world_size)

    @override
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Lightning loads a resumed run's weights before its precision plugin converts the
        # module (on one device): a 64-true run's float64 weights would pass through float32
        try:
            precision = str(self.trainer.precision)
        except RuntimeError:  # loaded outside a Trainer (load_from_checkpoint)
            precision = ""
        if precision.startswith("64"):
            self.double()
        ranks = checkpoint.get(TRAIN_METRICS_KEY) or []
        for name, state in (ranks[self.global_rank] if self.global_rank < len(ranks) else {}).items():
            for key, value in state.items():
                setattr(getattr(self, name), key, value.to(self.device))

    def _eval_step(self, batch, stage: str) -> torch.Tensor:
        x, y = batch
        logits = self._eval_logits(x)
        loss = self._loss(logits, y)
        getattr(self, f"{stage}_loss").update(loss, weight=y.shape[0])
        getattr(self, f"{stage}_acc").update(logits, y)
        self.log(f"{stage}/loss", getattr(self, f"{stage}_loss"), on_epoch=True, on_step=False)
        self.log(f"{stage}/acc", getattr(self, f"{stage}_acc"), on_epoch=True, on_step=False,
                 prog_bar=True)
        if self.top_k:
            name = f"{stage}_acc_top{self.top_k}"
            getattr(self, name).update(logits, y)
            self.log(f"{stage}/acc_top{self.top_k}", getattr(self, name), on_epoch=True,
                     on_step=False)
        return logits

    @override
    def validation_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    @override
    def test_step(self, batch, batch_idx: int) -> None:
        logits = self._eval_step(batch, "test")
        for metric in (self.test_f1, self.test_acc_class, self.test_confusion):
            metric.update(logits, batch[1])

    @override
    def on_test_epoch_end(self) -> None:
        self.log("test/f1_macro", self.test_f1.compute(), sync_dist=True)
        for k, acc in enumerate(self.test_acc_class.compute()):
            self.log(f"test/acc_class{k}", acc, sync_dist=True)
        self.confusion = self.test_confusion.compute().cpu()
        for metric in (self.test_f1, self.test_acc_class, self.test_confusion):
            metric.reset()

    @override
    def predict_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self._eval_logits(x).float().softmax(dim=1)

    @override
    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(self.regularization.param_groups(self.net))


def check_net(net: nn.Module, input_shape: Sequence[int], num_classes: int) -> None:
    """What the Classifier needs from any network, checked before training: an ``nn.Module``
    with trainable parameters that maps a batch ``(N, *input_shape)`` to logits ``(N, num_classes)``
    (one forward pass of two zero inputs in eval mode; no random numbers are drawn)."""
    name = type(net).__name__
    if not isinstance(net, nn.Module):
        raise ConfigError(f"model.net must build a torch.nn.Module, got {name}")
    if not any(p.requires_grad for p in net.parameters()):
        raise ConfigError(f"model.net ({name}) has no trainable parameters")
    was_training = net.training
    try:
        with torch.no_grad():
            out = net.eval()(torch.zeros(2, *input_shape))
    except Exception as err:
        raise ConfigError(f"model.net ({name}) fails on a batch of inputs of shape {list(input_shape)} "
                          f"(data.input_shape): {type(err).__name__}: {err}") from err
    finally:
        net.train(was_training)
    shape = list(getattr(out, "shape", []))
    if shape != [2, num_classes]:
        raise ConfigError(f"model.net ({name}) returns {shape or type(out).__name__} for a batch of 2 "
                          f"inputs of shape {list(input_shape)}; a net returns logits (N, num_classes)"
                          f" = [2, {num_classes}] (data.num_classes)")
