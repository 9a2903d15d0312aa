"""Penalties and weight decay do exactly what they claim."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainlab.regularization import Regularization, l1_penalty, l2_penalty, split_decay_params


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.ReLU(), nn.Linear(3, 2))


def test_split_excludes_1d_params_by_default():
    m = net()
    decay, no_decay = split_decay_params(m)
    assert [tuple(p.shape) for p in decay] == [(3, 4), (2, 3)]
    assert all(p.ndim == 1 for p in no_decay) and len(no_decay) == 4  # 2 biases + BN weight/bias
    decay_all, none = split_decay_params(m, exclude_bias_and_norm=False)
    assert len(decay_all) == 6 and none == []


def test_l1_penalty_exact_over_intended_params():
    m = net()
    reg = Regularization(l1=0.5)
    expected = 0.5 * (m[0].weight.abs().sum() + m[3].weight.abs().sum())
    assert reg.penalty(m).item() == pytest.approx(expected.item(), rel=1e-6)
    notes_form = Regularization(l1=0.5, exclude_bias_and_norm=False)  # the notes' sum over all
    expected_all = 0.5 * sum(p.abs().sum() for p in m.parameters())
    assert notes_form.penalty(m).item() == pytest.approx(expected_all.item(), rel=1e-6)


def test_l2_and_elastic_net_penalty_exact():
    m = net()
    w = [m[0].weight, m[3].weight]
    assert Regularization(l2=0.1).penalty(m).item() == pytest.approx(
        0.1 * sum((p ** 2).sum() for p in w).item(), rel=1e-6)
    both = Regularization(l1=0.2, l2=0.3).penalty(m).item()
    assert both == pytest.approx((0.2 * l1_penalty(w) + 0.3 * l2_penalty(w)).item(), rel=1e-6)


def sgd_step(reg: Regularization, lr: float = 0.1) -> list[torch.Tensor]:
    m = net()
    opt = torch.optim.SGD(reg.param_groups(m), lr=lr)
    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(1))
    loss = m(x).pow(2).mean()
    if reg.has_penalty:
        loss = loss + reg.penalty(m)
    opt.zero_grad()
    loss.backward()
    reg.apply_decoupled(opt)
    opt.step()
    return [p.detach().clone() for p in m.parameters()]


def test_explicit_l2_with_sgd_equals_coupled_weight_decay_of_twice_lambda():
    explicit = sgd_step(Regularization(l2=0.05))
    coupled = sgd_step(Regularization(weight_decay=0.1))
    for a, b in zip(explicit, coupled, strict=True):
        assert torch.allclose(a, b, atol=1e-7)
    plain = sgd_step(Regularization())
    assert not torch.allclose(explicit[0], plain[0])


def test_no_decay_on_1d_params():
    decayed = sgd_step(Regularization(weight_decay=0.5))
    plain = sgd_step(Regularization())
    for a, b in zip(decayed, plain, strict=True):
        assert torch.equal(a, b) == (a.ndim == 1)


def test_decoupled_decay_shrinks_by_lr_times_wd():
    m = net()
    reg = Regularization(decoupled_weight_decay=0.2)
    opt = torch.optim.SGD(reg.param_groups(m), lr=0.5)
    before = [p.detach().clone() for p in m.parameters()]
    reg.apply_decoupled(opt)  # no gradient: only the decay acts
    for b, p in zip(before, m.parameters(), strict=True):
        expected = b * (1 - 0.5 * 0.2) if p.ndim > 1 else b
        assert torch.allclose(p, expected)


@pytest.mark.parametrize("key", ["l1", "l2", "weight_decay", "decoupled_weight_decay"])
def test_negative_strength_is_rejected_with_key(key):
    with pytest.raises(ValueError, match=rf"model.regularization.{key} must be a number >= 0, got -1"):
        Regularization(**{key: -1.0})
