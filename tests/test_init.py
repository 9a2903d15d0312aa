"""Initialization schemes give the variances their formulas promise."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch
from torch import nn

from trainlab.init import PretrainedInit, WeightInit
from trainlab.models import CNN, MLP


def big() -> nn.Module:
    return nn.Sequential(nn.Linear(1000, 600), nn.ReLU(), nn.Linear(600, 400))


def test_xavier_uniform_variance_and_bias_constant():
    torch.manual_seed(0)
    m = WeightInit(partial(nn.init.xavier_uniform_, gain=1.0), bias=0.01)(big())
    w = m[0].weight
    assert w.var().item() == pytest.approx(2 / (1000 + 600), rel=0.02)
    assert torch.equal(m[0].bias, torch.full((600,), 0.01))
    assert torch.equal(m[2].bias, torch.full((400,), 0.01))


@pytest.mark.parametrize("mode", ["fan_in", "fan_out"])
def test_kaiming_normal_std_is_gain_over_sqrt_fan(mode):
    torch.manual_seed(0)
    m = WeightInit(partial(nn.init.kaiming_normal_, mode=mode, nonlinearity="relu"))(big())
    fan = 1000 if mode == "fan_in" else 600
    assert m[0].weight.std().item() == pytest.approx(math.sqrt(2) / math.sqrt(fan), rel=0.02)


def test_conv_layers_are_initialized_too():
    torch.manual_seed(0)
    cnn = CNN([1, 28, 28], 10, channels=(64, 128), batchnorm=False)
    WeightInit(partial(nn.init.kaiming_uniform_, nonlinearity="relu"), bias=0.0)(cnn)
    conv = cnn.features[3]
    fan_in = 64 * 3 * 3
    assert conv.weight.var().item() == pytest.approx(2 / fan_in, rel=0.05)
    assert torch.count_nonzero(conv.bias) == 0


def test_normal_std_and_orthogonal():
    torch.manual_seed(0)
    m = WeightInit(partial(nn.init.normal_, std=1.0))(big())
    assert m[0].weight.std().item() == pytest.approx(1.0, rel=0.01)
    o = WeightInit(partial(nn.init.orthogonal_))(nn.Linear(50, 50))
    assert torch.allclose(o.weight @ o.weight.T, torch.eye(50), atol=1e-5)


def test_unknown_nonlinearity_fails_at_construction_naming_the_key():
    with pytest.raises(ValueError, match="model.init.weight: .*nonlinearity"):
        WeightInit(partial(nn.init.kaiming_normal_, nonlinearity="swishy"))


def test_pretrained_reproduces_saved_weights(tmp_path):
    torch.manual_seed(0)
    src = MLP([1, 8, 8], 10, hidden=(32,))
    torch.save({"state_dict": {f"net.{k}": v for k, v in src.state_dict().items()}},
               tmp_path / "a.ckpt")
    torch.manual_seed(1)
    dst = PretrainedInit(str(tmp_path / "a.ckpt"))(MLP([1, 8, 8], 10, hidden=(32,)))
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v)


def test_pretrained_partial_load_reports_and_strict_refuses(tmp_path):
    src = MLP([1, 8, 8], 10, hidden=(32,))
    torch.save(src.state_dict(), tmp_path / "w.pt")
    other = MLP([1, 8, 8], 3, hidden=(32,))  # new head: 3 classes
    with pytest.raises(ValueError, match="shape_mismatch=\\['layers.3.bias', 'layers.3.weight'\\]"):
        PretrainedInit(str(tmp_path / "w.pt"))(other)
    init = PretrainedInit(str(tmp_path / "w.pt"), strict=False)
    init(other)
    assert init.report["loaded"] == ["layers.1.bias", "layers.1.weight"]
    assert torch.equal(other.layers[1].weight, src.layers[1].weight)


def test_pretrained_refuses_pickled_objects(tmp_path):
    torch.save({"net": nn.Linear(2, 2)}, tmp_path / "full.pt")  # a pickled module
    with pytest.raises(ValueError, match="weights_only=True"):
        PretrainedInit(str(tmp_path / "full.pt"))(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="no checkpoint file"):
        PretrainedInit(str(tmp_path / "nope.pt"))
