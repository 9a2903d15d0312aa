"""The one LightningModule: any ``nn.Module`` network, cross-entropy, metrics and logging."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.cli import OptimizerCallable
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy
from typing_extensions import override

from trainlab.regularization import Regularization

# Completed with parameter groups: ``partial(torch.optim.Adam, lr=1e-3)`` from Hydra's ``_partial_``,
# or ``class_path``/``init_args`` from LightningCLI (``--model.optimizer=Adam``).
OptimizerFactory = OptimizerCallable


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
        compile: run the network through ``torch.compile``.
        tta_flip: test-time augmentation for images: validation, test and predict logits are the
            mean of the logits of each image and of its left-right mirror (as airbench does).
            Training is unchanged.
    """

    def __init__(self, net: nn.Module, optimizer: OptimizerFactory, num_classes: int,
                 input_shape: Sequence[int], regularization: Regularization | None = None,
                 init: Callable[[nn.Module], object] | None = None, label_smoothing: float = 0.0,
                 channels_last: bool = False, compile: bool = False, tta_flip: bool = False) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"model.label_smoothing must be in [0, 1), got {label_smoothing}")
        input_shape = [int(s) for s in input_shape]  # plain list: checkpoints load weights_only
        if tta_flip and len(input_shape) != 3:
            raise ValueError(f"model.tta_flip=true mirrors images, but the input shape is {input_shape}; "
                             "it needs (channels, height, width): set model.tta_flip=false")
        self.save_hyperparameters(ignore=["net", "optimizer", "regularization", "init"])
        self.net = net
        if init is not None:
            init(self.net)
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.forward_fn = torch.compile(self.net) if compile else self.net
        self.optimizer_factory = optimizer
        self.regularization = regularization or Regularization()
        self.label_smoothing = label_smoothing
        self.channels_last = channels_last and len(input_shape) == 3
        self.tta_flip = tta_flip
        self.example_input_array = torch.zeros(2, *input_shape)
        self.top_k = 5 if num_classes > 5 else 0
        for stage in ("val", "test"):
            setattr(self, f"{stage}_acc", MulticlassAccuracy(num_classes, average="micro"))
            setattr(self, f"{stage}_loss", MeanMetric())
            if self.top_k:
                setattr(self, f"{stage}_acc_top{self.top_k}",
                        MulticlassAccuracy(num_classes, top_k=self.top_k, average="micro"))
        # The epoch's training sums, with no metric object in the hot loop: loss * n, penalty * n
        # and n as Python numbers (the loss is read each step anyway, to catch divergence), the
        # correct count in a buffer (one in-place add per step, no sync). Reduced across ranks
        # once per epoch. (Holding the logits to count them in blocks saved about 0.1 ms per
        # step but scattered small live tensors through the heap: +0.6 GB peak RSS.)
        self.register_buffer("train_correct", torch.zeros((), dtype=torch.int64), persistent=False)
        self._train_sums = [0.0, 0.0, 0]  # loss * n, penalty * n, n
        self.status = "ok"

    def __setattr__(self, name: str, value) -> None:
        # Lightning sets _current_fx_name around every hook call (~40 times per training step);
        # nn.Module.__setattr__ checks parameters, buffers and submodules first. A str is none.
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    @override
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != self.dtype and x.is_floating_point():
            x = x.to(self.dtype)  # 64-true / bf16-true runs: inputs follow the parameters
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.forward_fn(x)

    def _eval_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for evaluation: with ``tta_flip``, averaged with those of the mirrored images."""
        logits = self(x)
        if self.tta_flip:
            logits = (logits + self(x.flip(-1))) / 2
        return logits

    def _loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)

    @override
    def training_step(self, batch, batch_idx: int):
        x, y = batch
        logits = self(x)
        loss = self._loss(logits, y)
        total, penalty_value = loss, 0.0
        if self.regularization.has_penalty:
            penalty = self.regularization.penalty(self.net)
            total, penalty_value = loss + penalty, penalty.item()
        loss_value = loss.item()  # the host reads of the step
        if not math.isfinite(loss_value + penalty_value):
            # Skip the step so the weights (and the next checkpoint) stay the last good ones.
            self.status = "diverged"
            self.trainer.should_stop = True
            return None
        n = y.shape[0]
        sums = self._train_sums
        sums[0] += loss_value * n
        sums[1] += penalty_value * n
        sums[2] += n
        with torch.no_grad():
            hard = y.argmax(dim=1) if y.ndim == 2 else y  # mixup/cutmix give soft labels
            self.train_correct.add_((logits.argmax(dim=1) == hard).sum())
        if self.global_step % self.trainer.log_every_n_steps == 0:
            self.log("train/loss_step", loss, on_step=True, on_epoch=False, prog_bar=True)
        return total

    @override
    def on_train_epoch_end(self) -> None:
        sums = torch.tensor([*self._train_sums, self.train_correct.item()],
                            dtype=torch.float64, device=self.train_correct.device)
        loss_sum, reg_sum, seen, correct = self.trainer.strategy.reduce(sums, reduce_op="sum")
        if seen > 0:
            self.log("train/loss", loss_sum / seen, sync_dist=False)
            self.log("train/acc", correct / seen, prog_bar=True, sync_dist=False)
            if self.regularization.has_penalty:
                self.log("train/reg_loss", reg_sum / seen, sync_dist=False)
        self.train_correct.zero_()
        self._train_sums = [0.0, 0.0, 0]

    def _eval_step(self, batch, stage: str) -> None:
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

    @override
    def validation_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    @override
    def test_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    @override
    def predict_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self._eval_logits(x).float().softmax(dim=1)

    @override
    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(self.regularization.param_groups(self.net))

    @override
    def configure_gradient_clipping(self, optimizer: torch.optim.Optimizer,
                                    gradient_clip_val: float | None = None,
                                    gradient_clip_algorithm: str | None = None) -> None:
        # Lightning's clipping runs only with trainer.gradient_clip_val set (trainlab's own is
        # the grad_clip callback); otherwise skip its per-step checks.
        if gradient_clip_val:
            super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    @override
    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        self.regularization.apply_decoupled(optimizer)
