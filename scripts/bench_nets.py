"""Samples/s of CNN variants in a bare training loop: the numbers behind ``fmnist_fast``'s net.

Each variant is ``trainlab.models.CNN`` on random 1x28x28 batches, trained with SGD-Nesterov
and label smoothing as in ``+experiment=fmnist_fast``; variants alternate over ``--rounds`` and
the median is reported. The process settings are ``python train.py``'s (``trainlab.runtime``),
so ``OMP_WAIT_POLICY=PASSIVE python scripts/bench_nets.py`` measures sleeping OpenMP threads.

    python scripts/bench_nets.py                              # the default variants
    python scripts/bench_nets.py --variants c16-32-64:h512:pf --precision bf16
    python scripts/bench_nets.py --variants c16-48-96:h192-512:pf:fd --precision bf16 --batch-size 512
    python scripts/bench_nets.py --variants c32-64:h0,c32-64:h0:fd --batch-size 128  # dropout

``:fd`` switches the opt-in ``FastDropout`` on (``model.net.fast_dropout=true``; without it the
nets use ``nn.Dropout``). The other flags after the widths switch one of trainlab's CPU speed-ups
off, to measure it: ``:op`` out-of-place activations
instead of in-place ones, ``:ap`` each activation before its max-pool instead of after it,
``:uf`` SGD's per-tensor loop instead of its fused step.

    python scripts/bench_nets.py --variants c32-64:h0,c32-64:h0:fd,c32-64:h0:op,c32-64:h0:ap,c32-64:h0:uf
"""

from __future__ import annotations

import argparse
import statistics
import time

# name -> CNN keyword arguments; a name is "c<channels>:h<hidden>[:pf][:fd][:op][:ap][:uf]"
# (h192-512: two hidden layers, model.net.hidden=[192,512])
FLAGS = {"pf", "fd", "op", "ap", "uf"}
DEFAULT_VARIANTS = ("c32-64:h0", "c16-32-64:h512", "c16-32-64:h512:pf", "c16-32:h256:pf")


def parse_variant(name: str) -> tuple[dict, set[str]]:
    """``c16-32-64:h512:pf:op`` -> ({channels [16, 32, 64], hidden [512], pool_first}, {"op"}):
    the CNN's arguments and the speed-ups switched off."""
    parts = name.split(":")
    flags = set(parts[2:])
    try:
        kwargs = {"channels": [int(c) for c in parts[0].removeprefix("c").split("-")],
                  "hidden": [int(h) for h in parts[1].removeprefix("h").split("-")],
                  "pool_first": "pf" in flags,
                  "fast_dropout": "fd" in flags}
    except (IndexError, ValueError):
        kwargs = None
    if kwargs is None or not flags <= FLAGS:
        raise SystemExit(f"--variants: {name!r} is not like c16-32-64:h512, c16-32-64:h512:pf "
                         f"or c16-32-64:h512:pf:fd (flags: {sorted(FLAGS)})")
    return kwargs, flags - {"pf", "fd"}


def switch_off(net, flags: set[str]):
    """``net`` with its in-place activations made out-of-place (``op``), each activation that
    follows a max-pool moved before it (``ap``) and any opt-in ``FastDropout`` replaced by
    ``nn.Dropout`` (``td``)."""
    from torch import nn

    from trainlab.models.layers import POOL_COMMUTING_ACTIVATIONS, FastDropout

    if "ap" in flags and hasattr(net, "features"):
        layers = list(net.features)
        for i, layer in enumerate(layers[:-1]):
            after = layers[i + 1]
            if isinstance(layer, nn.MaxPool2d) and type(after).__name__ in POOL_COMMUTING_ACTIVATIONS:
                layers[i], layers[i + 1] = after, layer  # pool-act -> act-pool
        net.features = nn.Sequential(*layers)

    for module in list(net.modules()):
        for name, child in module.named_children():
            if "td" in flags and isinstance(child, FastDropout):
                setattr(module, name, nn.Dropout(child.p))
            elif "op" in flags and getattr(child, "inplace", False) and not isinstance(child, nn.Dropout):
                child.inplace = False
    return net


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", default=",".join(DEFAULT_VARIANTS))
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--steps", type=int, default=20, help="timed steps per round")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    from trainlab.runtime import tune_process

    settings = tune_process()  # as train.py, before torch loads
    import torch
    import torch.nn.functional as F

    from trainlab.models import CNN

    names = [v for v in args.variants.split(",") if v]
    variants = {name: parse_variant(name) for name in names}
    x = torch.randn(args.batch_size, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch_size,))
    rates: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(args.rounds):
        for name, (kwargs, off) in variants.items():
            torch.manual_seed(0)
            net = switch_off(CNN([1, 28, 28], 10, **kwargs).to(memory_format=torch.channels_last), off)
            opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True,
                                  weight_decay=5e-4, fused="uf" not in off)
            for step in range(5 + args.steps):  # 5 untimed steps first
                if step == 5:
                    start = time.perf_counter()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16"):
                    loss = F.cross_entropy(net(x), y, label_smoothing=0.1)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            rates[name].append(args.steps * args.batch_size / (time.perf_counter() - start))
    print(f"{settings}; batch {args.batch_size}, {args.precision}, torch threads "
          f"{torch.get_num_threads()}, median of {args.rounds} rounds of {args.steps} steps")
    base = statistics.median(rates[names[0]])
    for name in names:
        rate = statistics.median(rates[name])
        print(f"  {name:>22}: {rate:7,.0f} samples/s  {rate / base:5.2f}x {names[0]}")


if __name__ == "__main__":
    main()
