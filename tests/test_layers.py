"""Dropout and batch normalization behave as the notes describe."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainlab.models import CNN, MLP
from trainlab.models.layers import FastDropout


@pytest.mark.parametrize(("cls", "kwargs"), [
    (CNN, {"input_shape": [1, 8, 8], "num_classes": 3, "channels": [4]}),
    (MLP, {"input_shape": [8], "num_classes": 3, "hidden": (16, 16)}),
])
def test_the_networks_dropout_is_torchs_own_unless_fast_dropout_is_asked_for(cls, kwargs):
    net = cls(**kwargs, dropout=0.3, dropout_where="all")
    drops = [m for m in net.modules() if isinstance(m, nn.Dropout)]
    assert drops and all(type(m) is nn.Dropout and m.p == 0.3 for m in drops)
    fast = cls(**kwargs, dropout=0.3, dropout_where="all", fast_dropout=True)
    assert [type(m) for m in fast.modules() if isinstance(m, nn.Dropout)] == [FastDropout] * len(drops)


def test_fast_dropout_zeroes_p_rounded_to_1_in_32768_and_scales_rest_identity_in_eval():
    torch.manual_seed(0)
    drop = FastDropout(0.3)
    x = torch.ones(64, 1000)
    out = drop.train()(x)
    assert (out == 0).float().mean().item() == pytest.approx(0.3, abs=0.01)
    kept_p = 1 - round(0.3 * 2**15) / 2**15  # p acts rounded to 1/32768
    assert kept_p == pytest.approx(0.7, abs=2e-5)
    assert torch.allclose(out[out != 0], torch.full_like(out[out != 0], 1 / kept_p))
    assert torch.equal(drop.eval()(x), x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_fast_dropout_keeps_1_minus_p_scales_by_its_inverse_and_passes_that_gradient(dtype):
    torch.manual_seed(0)
    drop = FastDropout(0.25)
    x = torch.ones(256, 1000, dtype=dtype, requires_grad=True)
    out = drop(x)
    kept = out != 0
    assert out.dtype == dtype
    assert kept.float().mean().item() == pytest.approx(0.75, abs=0.005)
    assert torch.allclose(out[kept].float(), torch.full((int(kept.sum()),), 1 / 0.75), rtol=1e-2)
    out.sum().backward()
    assert torch.equal(x.grad, out.detach())  # d(x * mask)/dx = mask, and out = mask here
    assert not torch.equal(drop(x), out)  # a new mask every call
    x2 = torch.ones(8, 100)
    assert torch.equal(drop.eval()(x2), x2)
    inplace = FastDropout(0.5, inplace=True).train()
    assert inplace(x2) is x2 and (x2 == 0).any()


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_fast_dropout_keeps_each_of_the_four_elements_per_draw_alike(p):
    """Four elements share one 63-bit draw (15 bits each): each of the four positions, and the
    odd shapes whose size is no multiple of four, keep 1 - p."""
    torch.manual_seed(1)
    x = torch.ones(4003, 101)
    kept = (FastDropout(p)(x) != 0).float().flatten()
    sigma = (p * (1 - p) / (kept.numel() / 4)) ** 0.5
    for position in range(4):
        assert kept[position::4].mean().item() == pytest.approx(1 - p, abs=5 * sigma)
    out = FastDropout(p)(torch.ones(5, 3))
    assert ((out == 0) | torch.isclose(out, torch.tensor(1 / (1 - p)), rtol=1e-4)).all()


def test_fast_dropout_scales_bf16_inputs_with_one_rounding():
    torch.manual_seed(3)
    x = torch.randn(64, 500).bfloat16()
    out = FastDropout(0.25)(x)
    kept = out != 0
    expected = (x.float() * (4 / 3)).bfloat16()  # not x * bfloat16(4/3), 0.2% too large
    assert torch.equal(out[kept], expected[kept])


def test_fast_dropout_with_p_that_rounds_to_0_or_1_is_torch_dropout():
    x = torch.randn(64, 64)
    for p in (1e-6, 0.99999):
        torch.manual_seed(2)
        ours = FastDropout(p)(x)
        torch.manual_seed(2)
        assert torch.equal(ours, nn.Dropout(p)(x))  # the same draws: it is nn.Dropout


def test_dropout_placement_head_vs_all():
    head = CNN([1, 28, 28], 10, dropout=0.5, dropout_where="head")
    every = CNN([1, 28, 28], 10, dropout=0.5, dropout_where="all", dropout2d=0.1)
    count = lambda m, t: sum(isinstance(x, t) for x in m.modules())  # noqa: E731
    assert count(head, nn.Dropout) == 1 and count(head.head, nn.Dropout) == 1
    assert count(every, nn.Dropout) == 3 and count(every, nn.Dropout2d) == 2


def test_the_mlp_normalizes_each_hidden_layer_between_its_linear_and_its_activation():
    mlp = MLP([5], 2, hidden=(16, 8), batchnorm=True, bn_momentum=0.3, bn_eps=1e-3, dropout=0.5)
    assert [type(m).__name__ for m in mlp.layers] == [
        "Flatten", "Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d", "ReLU", "Dropout", "Linear"]
    bns = [m for m in mlp.layers if isinstance(m, nn.BatchNorm1d)]
    assert [(bn.num_features, bn.momentum, bn.eps) for bn in bns] == [(16, 0.3, 1e-3), (8, 0.3, 1e-3)]


def test_batchnorm_on_off_and_options():
    on = CNN([1, 28, 28], 10, batchnorm=True, bn_momentum=0.3, bn_eps=1e-3)
    bns = [m for m in on.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 2 and bns[0].momentum == 0.3 and bns[0].eps == 1e-3
    off = CNN([1, 28, 28], 10, batchnorm=False)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in off.modules())
    assert [m for m in MLP([4], 2, batchnorm=True).modules() if isinstance(m, nn.BatchNorm1d)]


@pytest.mark.parametrize("act", ["ReLU", "LeakyReLU", "Hardtanh", "ReLU6"])
@pytest.mark.parametrize("batchnorm", [True, False])
def test_pooling_before_a_monotone_activation_is_the_act_then_pool_network(act, batchnorm):
    """conv-BN-pool-act (what the CNN builds) against conv-BN-act-pool: the same outputs and
    gradients, bit for bit, in training mode."""
    torch.manual_seed(0)
    net = CNN([1, 16, 16], 3, channels=[4, 6], activation=act, batchnorm=batchnorm, dropout=0.0)
    reference = CNN([1, 16, 16], 3, channels=[4, 6], activation=act, batchnorm=batchnorm, dropout=0.0)
    reference.load_state_dict(net.state_dict())
    layers = list(reference.features)
    for i, layer in enumerate(layers[:-1]):
        if isinstance(layer, nn.MaxPool2d):  # put each activation back before its pool
            layers[i], layers[i + 1] = layers[i + 1], layer
    reference.features = nn.Sequential(*layers)
    assert reference.state_dict().keys() == net.state_dict().keys()  # old checkpoints load
    kinds = [type(m).__name__ for m in net.features]
    assert kinds.index("MaxPool2d") < kinds.index(act)
    x = torch.randn(8, 1, 16, 16) * 3  # Hardtanh and ReLU6 saturate somewhere
    outs = [model(x) for model in (net, reference)]
    assert torch.equal(outs[0], outs[1])
    for out in outs:
        (out * torch.arange(3.0)).sum().backward()
    for a, b in zip(net.parameters(), reference.parameters(), strict=True):
        assert torch.equal(a.grad, b.grad)


def test_pool_first_moves_the_pool_before_bn_and_without_bn_is_the_same_function():
    names = lambda net: [type(m).__name__ for m in net.features][:4]  # noqa: E731
    assert names(CNN([1, 28, 28], 10)) == ["Conv2d", "BatchNorm2d", "MaxPool2d", "ReLU"]
    assert names(CNN([1, 28, 28], 10, activation="GELU")) == ["Conv2d", "BatchNorm2d", "GELU", "MaxPool2d"]
    assert names(CNN([1, 28, 28], 10, pool_first=True)) == ["Conv2d", "MaxPool2d", "BatchNorm2d", "ReLU"]
    torch.manual_seed(0)
    after = CNN([1, 28, 28], 10, batchnorm=False, dropout=0.0, channels=(8, 16, 32))
    before = CNN([1, 28, 28], 10, batchnorm=False, dropout=0.0, channels=(8, 16, 32), pool_first=True)
    before.load_state_dict(after.state_dict())
    x = torch.randn(4, 1, 28, 28)
    assert torch.allclose(before(x), after(x), atol=1e-6)  # max-pool commutes with ReLU


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"dropout": 1.0}, r"model.net.dropout must be in \[0, 1\), got 1.0"),
    ({"dropout": -0.1}, r"model.net.dropout must be in \[0, 1\), got -0.1"),
    ({"dropout_where": "middle"}, "model.net.dropout_where must be one of"),
    ({"activation": "Swoosh"}, "model.net.activation must name a torch.nn activation"),
    ({"bn_eps": 0.0}, "model.net.bn_eps must be > 0"),
])
def test_bad_model_values_name_the_key(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MLP([4], 2, **kwargs)


def _out_of_place_copy(net: nn.Module, make) -> nn.Module:
    other = make()
    other.load_state_dict(net.state_dict())
    for m in other.modules():
        if hasattr(m, "inplace") and not isinstance(m, nn.Dropout):
            m.inplace = False
    return other


@pytest.mark.parametrize("act", ["ReLU", "LeakyReLU", "Hardtanh", "ReLU6"])
@pytest.mark.parametrize("kind", ["cnn", "cnn_pool_first_no_bn", "mlp", "mlp_no_bn"])
def test_in_place_activations_give_the_out_of_place_outputs_and_gradients(act, kind):
    shapes = {"cnn": dict(batchnorm=True), "cnn_pool_first_no_bn": dict(batchnorm=False, pool_first=True),
              "mlp": dict(batchnorm=True), "mlp_no_bn": dict(batchnorm=False)}[kind]

    def make():
        torch.manual_seed(0)
        if kind.startswith("cnn"):
            return CNN([1, 8, 8], 3, channels=[4, 6], hidden=5, activation=act, dropout=0.0, **shapes)
        return MLP([1, 8, 8], 3, hidden=(7, 5), activation=act, **shapes)

    net = make()
    acts = [m for m in net.modules() if type(m).__name__ == act]
    assert acts and all(m.inplace for m in acts)
    reference = _out_of_place_copy(net, make)
    assert not any(getattr(m, "inplace", False) for m in reference.modules() if type(m).__name__ == act)
    x = torch.randn(16, 1, 8, 8)
    outs = [model(x) for model in (net, reference)]
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)
    for out in outs:
        (out * torch.arange(3.0)).sum().backward()
    for a, b in zip(net.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=0)


def test_other_activations_stay_out_of_place():
    assert not hasattr(MLP([4], 2, hidden=(3,), activation="Tanh").layers[2], "inplace")
    gelu = [m for m in CNN([1, 8, 8], 2, channels=[4], activation="GELU").modules() if isinstance(m, nn.GELU)]
    assert len(gelu) == 1 and not getattr(gelu[0], "inplace", False)
    elu = [m for m in CNN([1, 8, 8], 2, channels=[4], activation="ELU").modules() if isinstance(m, nn.ELU)]
    assert len(elu) == 1 and not elu[0].inplace


def test_residual_blocks_sit_after_the_blocks_asked_and_add_their_input():
    from trainlab.models.cnn import Residual

    net = CNN([1, 8, 8], 3, channels=[4, 8], res_blocks=[0, 2], pool_first=True).eval()
    kinds = [type(m).__name__ for m in net.features]
    assert kinds.count("Residual") == 2 and kinds[-2:] == ["Residual", "Residual"]
    assert kinds.index("Residual") > [i for i, k in enumerate(kinds) if k == "Conv2d"][-1]
    assert net(torch.rand(5, 1, 8, 8)).shape == (5, 3)
    block = net.features[-1]
    convs = [m for m in block.body if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.padding) for c in convs] == [(8, 8, (1, 1))] * 2
    for conv in convs:  # a zero body (fresh BN in eval: 0 -> 0, ReLU(0) = 0) leaves the input
        nn.init.zeros_(conv.weight)
    x = torch.randn(2, 8, 2, 2)
    assert torch.equal(block(x), x)
    assert isinstance(block, Residual)
    assert sum(isinstance(m, Residual) for m in CNN([1, 8, 8], 3, channels=[4, 8]).modules()) == 0


@pytest.mark.parametrize("res_blocks", [[1], [0, -1], [1, 1, 1]])
def test_bad_residual_counts_name_the_key(res_blocks):
    with pytest.raises(ValueError, match=r"model.net.res_blocks must be empty or 2 counts >= 0 .*"
                                         r"model.net.channels=\[4, 8\]\), got "):
        CNN([1, 8, 8], 3, channels=[4, 8], res_blocks=res_blocks)


def test_the_cnns_hidden_layers_are_built_in_the_order_listed():
    def kinds(net):
        return [(type(m).__name__, getattr(m, "out_features", None)) for m in net.head]

    def cnn(**kwargs):
        return CNN([1, 8, 8], 3, channels=[4], **kwargs)

    two = CNN([1, 8, 8], 3, channels=[4, 8], hidden=[6, 5])
    assert kinds(two) == [("Flatten", None), ("Linear", 6), ("BatchNorm1d", None), ("ReLU", None),
                          ("Linear", 5), ("BatchNorm1d", None), ("ReLU", None), ("Dropout", None),
                          ("Linear", 3)]
    assert two.head[1].in_features == 8 * 2 * 2 and two(torch.rand(4, 1, 8, 8)).shape == (4, 3)
    assert kinds(cnn(hidden=5)) == kinds(cnn(hidden=[5]))
    assert kinds(cnn(hidden=0)) == kinds(cnn(hidden=[]))
    assert [k for k, _ in kinds(cnn(hidden=0))] == ["Flatten", "Dropout", "Linear"]
    every = cnn(hidden=[6, 5], dropout=0.2, dropout_where="all")
    assert [k for k, _ in kinds(every)].count("Dropout") == 2  # after each hidden layer


def test_the_first_hidden_layer_computes_a_conv_that_covers_the_whole_last_map():
    torch.manual_seed(0)
    net = CNN([1, 8, 8], 3, channels=[4, 8], hidden=[5], batchnorm=False).eval()
    maps = torch.randn(6, 8, 2, 2)  # the last block's output: 8 maps of 2x2
    linear = net.head[1]
    conv = nn.Conv2d(8, 5, kernel_size=2, padding=0)  # no padding: one output per map
    with torch.no_grad():
        conv.weight.copy_(linear.weight.view(5, 8, 2, 2))
        conv.bias.copy_(linear.bias)
    for x in (maps, maps.contiguous(memory_format=torch.channels_last)):
        torch.testing.assert_close(net.head[:2](x), conv(x).flatten(1))


@pytest.mark.parametrize("hidden", [-1, [0], [4, 0], [3, -2], "wide", ["a"], 2.5, True])
def test_bad_hidden_widths_name_the_key(hidden):
    with pytest.raises(ValueError, match=r"model.net.hidden must be 0, a width >= 1 or a list of "
                                         r"widths >= 1, got "):
        CNN([1, 8, 8], 3, channels=[4], hidden=hidden)
