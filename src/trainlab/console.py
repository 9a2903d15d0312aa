"""What a run prints: the composed config as a tree and a per-layer model summary."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from omegaconf import DictConfig, OmegaConf
from rich import get_console
from rich.syntax import Syntax
from rich.table import Table
from rich.tree import Tree
from torch import nn

FIRST_GROUPS = ("data", "model", "callbacks", "logger", "trainer", "paths")


def print_config_tree(cfg: DictConfig) -> None:
    """Print the resolved config, one branch per top-level key (groups first)."""
    tree = Tree("config", style="bold")
    keys = [k for k in FIRST_GROUPS if k in cfg] + [k for k in cfg if k not in FIRST_GROUPS]
    for key in keys:
        node = cfg[key]
        text = OmegaConf.to_yaml(node, resolve=True) if isinstance(node, DictConfig) else str(node)
        tree.add(str(key), style="yellow").add(Syntax(text.rstrip(), "yaml", theme="ansi_dark"))
    get_console().print(tree)


def summary(model: nn.Module, input_size: Sequence[int], batch_size: int = 2) -> Table:
    """Per-layer output shapes and parameter counts for one input of ``input_size``
    (``torchsummary.summary(model, input_size=...)`` as the notes use it), printed as a table."""
    rows: list[tuple[str, str, list[int], int]] = []
    hooks = []

    def hook(name: str):
        def record(module: nn.Module, args, output) -> None:
            shape = list(output.shape) if isinstance(output, torch.Tensor) else []
            params = sum(p.numel() for p in module.parameters(recurse=False))
            rows.append((name, type(module).__name__, shape, params))
        return record

    for name, module in model.named_modules():
        if not list(module.children()):  # leaves only
            hooks.append(module.register_forward_hook(hook(name)))
    was_training = model.training
    param = next(model.parameters(), None)
    x = torch.zeros(batch_size, *input_size, dtype=param.dtype if param is not None else torch.float32)
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    table = Table(title=f"{type(model).__name__}, input {list(input_size)}")
    for col in ("layer", "type", "output shape", "params"):
        table.add_column(col, justify="right" if col == "params" else "left")
    for name, kind, shape, params in rows:
        table.add_row(name, kind, str([-1, *shape[1:]]), f"{params:,}")
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    table.caption = f"total params {total:,} (trainable {trainable:,})"
    get_console().print(table)
    return table
