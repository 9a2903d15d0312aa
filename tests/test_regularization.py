"""Penalties do exactly what they claim, and weight decay reaches the parameters it should."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from torch import nn

from trainlab.errors import ConfigError
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


def sgd_step(reg: Regularization, lr: float = 0.1, weight_decay: float = 0.0) -> list[torch.Tensor]:
    """One SGD step on ``net()`` with ``reg``'s penalty and groups and the optimizer's decay."""
    m = net()
    opt = torch.optim.SGD(reg.param_groups(m), lr=lr, weight_decay=weight_decay)
    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(1))
    loss = m(x).pow(2).mean()
    if reg.has_penalty:
        loss = loss + reg.penalty(m)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return [p.detach().clone() for p in m.parameters()]


def test_explicit_l2_with_sgd_equals_the_optimizers_weight_decay_of_twice_lambda():
    explicit = sgd_step(Regularization(l2=0.05))
    coupled = sgd_step(Regularization(), weight_decay=0.1)
    for a, b in zip(explicit, coupled, strict=True):
        assert torch.allclose(a, b, atol=1e-7)
    plain = sgd_step(Regularization())
    assert not torch.allclose(explicit[0], plain[0])


def test_the_optimizers_weight_decay_skips_1d_params_unless_told_otherwise():
    decayed = sgd_step(Regularization(), weight_decay=0.5)
    plain = sgd_step(Regularization())
    for a, b in zip(decayed, plain, strict=True):
        assert torch.equal(a, b) == (a.ndim == 1)
    everywhere = sgd_step(Regularization(exclude_bias_and_norm=False), weight_decay=0.5)
    start = [p.detach() for p in net().parameters()]
    for a, b, w in zip(everywhere, plain, start, strict=True):  # decay moves every nonzero weight
        assert torch.equal(a, b) == bool((w == 0).all())


def test_param_groups_set_nothing_but_the_1d_groups_zero_decay():
    groups = Regularization().param_groups(net())
    assert [set(g) for g in groups] == [{"params"}, {"params", "weight_decay"}]
    assert groups[1]["weight_decay"] == 0.0
    assert [set(g) for g in Regularization(exclude_bias_and_norm=False).param_groups(net())] == [{"params"}]


@pytest.mark.parametrize("key", ["l1", "l2"])
@pytest.mark.parametrize("value", [-1.0, "0.1", True])
def test_a_bad_strength_is_rejected_with_its_key(key, value):
    message = rf"model.regularization.{key} must be a number >= 0, got {value!r}"
    with pytest.raises(ConfigError, match=message):
        Regularization(**{key: value})


@pytest.mark.parametrize(("optimizer", "decay"), [
    (partial(torch.optim.AdamW), 0.01),  # PyTorch's default: regularization=l2 optimizer=adamw as is
    (partial(torch.optim.AdamW, weight_decay=0.1), 0.1),
    (partial(torch.optim.Adam, weight_decay=0.1, decoupled_weight_decay=True), 0.1),
])
def test_an_l2_penalty_beside_a_decoupled_weight_decay_is_refused_naming_both_keys(optimizer, decay):
    name = optimizer.func.__name__
    message = (rf"^model.regularization.l2=5e-05 \(an explicit L2 penalty in the loss\) and "
               rf"model.optimizer.weight_decay={decay:g} \({name}'s decoupled weight decay\) are two weight "
               rf"decays on the same weights; keep one: regularization=none .* for {name}'s weight_decay, "
               rf"or model.optimizer.weight_decay=0 for the explicit penalty$")
    with pytest.raises(ConfigError, match=message):
        Regularization(l2=5e-5).check_optimizer(optimizer)


@pytest.mark.parametrize(("regularization", "optimizer"), [
    (Regularization(l2=5e-5), partial(torch.optim.AdamW, weight_decay=0.0)),  # the penalty alone
    (Regularization(), partial(torch.optim.AdamW)),  # the decoupled decay alone
    (Regularization(l1=1e-5), partial(torch.optim.AdamW)),  # L1 is not a weight decay
    (Regularization(l2=5e-5), partial(torch.optim.Adam, weight_decay=0.1)),  # coupled: its own gradient
    (Regularization(l2=5e-5), partial(torch.optim.SGD, lr=0.1, weight_decay=0.1)),
])
def test_one_weight_decay_or_a_coupled_one_beside_the_penalty_is_allowed(regularization, optimizer):
    regularization.check_optimizer(optimizer)


@pytest.mark.parametrize(("overrides", "refused"), [
    (["regularization=l2", "optimizer=adamw"], True),
    (["regularization=elastic_net", "optimizer=adamw"], True),
    (["regularization=l2", "optimizer=adam", "model.optimizer.weight_decay=0.1",
      "model.optimizer.decoupled_weight_decay=true"], True),
    (["regularization=l2", "optimizer=adamw", "model.optimizer.weight_decay=0"], False),
    (["regularization=none", "optimizer=adamw"], False),
    (["regularization=decoupled", "optimizer=adam"], False),
    (["regularization=l2", "optimizer=sgd"], False),
])
def test_the_pair_is_refused_before_anything_is_built(cfg_factory, overrides, refused):
    from trainlab.pipeline import build

    cfg = cfg_factory("data=digits", *overrides)
    if refused:
        with pytest.raises(ConfigError, match=r"^model.regularization.l2=.* and model.optimizer.weight_"):
            build(cfg)
    else:
        _, model, _ = build(cfg)
        model.configure_optimizers()
