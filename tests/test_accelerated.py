"""``model.compile``, ``model.channels_last`` and mixed precision, trained end to end on digits."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from trainlab.data.batches import TensorBatchLoader
from trainlab.pipeline import build

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA GPU (torch.cuda.is_available() is False)")


def train(cfg_factory, *overrides: str):
    cfg = cfg_factory("data=digits", "trainer.max_epochs=2", "callbacks.progress_bar=null",
                      "trainer.log_every_n_steps=1",
                      *overrides)
    datamodule, model, trainer = build(cfg)
    trainer.fit(model, datamodule=datamodule)
    return datamodule, model, trainer


def compiled(net: torch.nn.Module) -> bool:
    """Whether ``net.compile()`` compiled ``net`` in place (torch keeps the compiled call here)."""
    return net._compiled_call_impl is not None


def assert_compiled_matches_eager(model, datamodule) -> None:
    x = datamodule.to_model_input(datamodule.splits["val"][0][:64]).to(model.device)
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model.net(x), model.net.forward(x), atol=1e-4)  # forward: eager


@pytest.mark.slow  # inductor compiles C++ kernels: over a minute on a 2-core CPU
def test_compile_trains_one_epoch_on_cpu(cfg_factory):
    datamodule, model, trainer = train(cfg_factory, "model.compile=true", "trainer=cpu",
                                       "trainer.max_epochs=1")
    assert compiled(model.net) and all(key.startswith("net.") for key in model.state_dict())
    assert model.status == "ok" and trainer.global_step == (1797 - 450 - 200) // 64
    assert trainer.callback_metrics["val/acc"] > 0.6  # chance is 0.1
    assert_compiled_matches_eager(model, datamodule)


@pytest.mark.gpu
@needs_cuda
def test_bf16_mixed_trains_on_cuda(cfg_factory):
    dtypes = []
    cfg_overrides = ("trainer=gpu", "trainer.precision=bf16-mixed")
    cfg = cfg_factory("data=digits", "trainer.max_epochs=2", "callbacks.progress_bar=null",
                      "trainer.log_every_n_steps=1",
                      *cfg_overrides)
    datamodule, model, trainer = build(cfg)
    model.net.register_forward_hook(lambda m, a, out: dtypes.append(out.dtype))
    trainer.fit(model, datamodule=datamodule)
    assert model.device.type == "cuda" and torch.bfloat16 in set(dtypes)
    assert {p.dtype for p in model.parameters()} == {torch.float32}  # fp32 master weights
    assert model.status == "ok" and trainer.callback_metrics["val/acc"] > 0.8


@pytest.mark.gpu
@needs_cuda
def test_compile_and_channels_last_train_on_cuda(cfg_factory):
    datamodule, model, trainer = train(cfg_factory, "trainer=gpu", "model.compile=true",
                                       "model.channels_last=true")
    assert model.device.type == "cuda" and compiled(model.net)
    conv = next(m for m in model.net.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert model.status == "ok" and trainer.callback_metrics["val/acc"] > 0.8
    assert_compiled_matches_eager(model, datamodule)


@pytest.mark.gpu
@needs_cuda
def test_data_is_resident_on_the_gpu_and_batches_are_cut_there(cfg_factory):
    seen = []

    class Probe(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append(batch[0].device.type)

    cfg = cfg_factory("data=digits", "trainer=gpu", "trainer.max_epochs=1",
                      "callbacks.progress_bar=null", "augmentation=flip", "trainer.log_every_n_steps=1")
    datamodule, model, trainer = build(cfg)
    trainer.callbacks.append(Probe())
    batches = []
    loader_iter = TensorBatchLoader.__iter__

    def record(self):
        for x, y in loader_iter(self):
            batches.append((x.device.type, y.device.type))
            yield x, y

    TensorBatchLoader.__iter__ = record
    try:
        trainer.fit(model, datamodule=datamodule)
    finally:
        TensorBatchLoader.__iter__ = loader_iter
    assert batches and set(batches) == {("cuda", "cuda")}  # cut on the GPU, not moved per step
    assert set(seen) == {"cuda"} and model.status == "ok"
    assert trainer.callback_metrics["val/acc"] > 0.6
