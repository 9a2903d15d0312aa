"""The optimizer configs: PyTorch's fused step where it has one, the same update as its loop."""

from __future__ import annotations

import pytest
import torch
from conftest import ROOT
from hydra.utils import instantiate

from trainlab.models import CNN

FUSED = ["adam", "adamw", "sgd", "sgd_momentum", "adagrad"]


@pytest.mark.parametrize("name", FUSED)
def test_fused_config_steps_like_the_per_tensor_loop(name, cfg_factory):
    cfg = cfg_factory(f"optimizer={name}", "data=digits")
    assert cfg.model.optimizer.fused is True
    nets = [CNN([1, 8, 8], 10, channels=[8]) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    before = [p.detach().clone() for p in nets[0].parameters()]
    fused = instantiate(cfg.model.optimizer)(nets[0].parameters())
    loop = instantiate(cfg.model.optimizer, fused=None)(nets[1].parameters())
    assert fused.defaults["fused"] is True and not loop.defaults["fused"]
    torch.manual_seed(0)  # eval mode: no dropout draw, BN from running statistics
    x, y = torch.randn(32, 1, 8, 8), torch.randint(0, 10, (32,))
    for _ in range(3):
        for net, opt in zip(nets, (fused, loop), strict=True):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net.eval()(x), y).backward()
            opt.step()
    for a, b, start in zip(nets[0].parameters(), nets[1].parameters(), before, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        assert not torch.equal(a, start)  # three steps moved every parameter


def test_every_fused_config_is_listed_here():
    configs = (ROOT / "conf" / "optimizer").glob("*.yaml")
    with_fused = sorted(p.stem for p in configs if "fused:" in p.read_text())
    assert with_fused == sorted(FUSED)
