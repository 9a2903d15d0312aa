"""What the classifier and the techniques need from a network, and the message when it lacks it."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from torch import nn

from trainlab.callbacks.diagnostics import first_and_last_layers
from trainlab.errors import ConfigError
from trainlab.init import WeightInit
from trainlab.models import MLP, Classifier
from trainlab.pipeline import build
from trainlab.regularization import Regularization


class Scale(nn.Module):
    """A net with one 1-D parameter and no Linear/Conv layer: (N, 4) -> (N, 4)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.w


def classifier(net: nn.Module, input_shape=(4,), num_classes: int = 4, **kwargs) -> Classifier:
    return Classifier(net, partial(torch.optim.SGD, lr=0.1), num_classes, list(input_shape), **kwargs)


def test_the_logits_shape_is_checked_before_training():
    classifier(MLP([4], 4, hidden=[3]))  # (N, 4) -> (N, 4): fine
    with pytest.raises(ConfigError, match=r"model.net \(MLP\) returns \[2, 3\] for a batch of 2 inputs "
                                          r"of shape \[4\]; .* = \[2, 4\] \(data.num_classes\)"):
        classifier(MLP([4], 3, hidden=[3]))
    with pytest.raises(ConfigError, match=r"model.net \(MLP\) fails on a batch of inputs of shape "
                                          r"\[5\] \(data.input_shape\): RuntimeError"):
        classifier(MLP([4], 4, hidden=[3]), input_shape=(5,))
    with pytest.raises(ConfigError, match=r"model.net \(Identity\) has no trainable parameters"):
        classifier(nn.Identity())


def test_the_check_draws_no_random_numbers_and_keeps_the_mode():
    net = MLP([4], 4, hidden=[8], dropout=0.5)
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    model = classifier(net)
    assert torch.equal(torch.rand(3), expected) and model.net.training


def test_init_regularization_and_diagnostics_name_what_a_net_lacks():
    with pytest.raises(ConfigError, match=r"model.init initializes nn.Linear and nn.Conv layers; "
                                          r"Scale has none: use init=default"):
        WeightInit(weight=nn.init.zeros_)(Scale())
    WeightInit()(Scale())  # PyTorch's init: nothing to do, nothing needed
    with pytest.raises(ConfigError, match=r"model.regularization: Scale has no trainable weight of 2"):
        Regularization(l1=1e-3).param_groups(Scale())
    assert len(Regularization(exclude_bias_and_norm=False).param_groups(Scale())[0]["params"]) == 1
    with pytest.raises(ConfigError, match=r"callbacks.diagnostics watches .*; Scale has none: "
                                          r"set callbacks.diagnostics=null"):
        first_and_last_layers(Scale())


def test_switching_nets_keeps_the_classifier_settings(cfg_factory):
    cfg = cfg_factory("data=digits", "model.tta_flip=true", "model.label_smoothing=0.1", "net=mlp")
    assert cfg.model.tta_flip and cfg.model.label_smoothing == 0.1
    assert cfg.model.net._target_ == "trainlab.models.MLP"
    _, model, _ = build(cfg)
    assert isinstance(model.net, MLP) and model.tta_flip and model.label_smoothing == 0.1


def test_a_key_another_net_takes_says_where_net_keys_come_from(cfg_factory):
    cfg = cfg_factory("data=digits", "net=mlp", "+model.net.channels=[8]")
    with pytest.raises(ConfigError, match=r"model.net.channels is not a parameter of trainlab.models.MLP "
                                          r"\(it takes: .*\); .*after net=NAME the keys are that "
                                          r"network's own"):
        build(cfg)
