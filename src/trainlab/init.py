"""Weight initialization schemes, applied with ``module.apply`` to Linear and Conv layers.

A scheme is any ``torch.nn.init`` function (``xavier_uniform_``, ``kaiming_normal_``,
``normal_``, ``orthogonal_``...) given as a Hydra ``_partial_`` with its arguments, so a new
scheme is a YAML file. The notes fill biases with 0.01; ``bias`` sets that constant.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from trainlab.errors import ConfigError

log = logging.getLogger(__name__)

INIT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


class WeightInit:
    """Initialize every Linear/Conv weight with ``weight`` and fill biases with ``bias``.

    Args:
        weight: in-place init function of a tensor, e.g. ``partial(nn.init.xavier_uniform_)``;
            None keeps PyTorch's default weights.
        bias: constant for every bias; None keeps PyTorch's default biases.
    """

    def __init__(self, weight: Callable[[torch.Tensor], object] | None = None,
                 bias: float | None = None) -> None:
        if weight is not None:
            try:  # fail now, before training, on e.g. an unknown nonlinearity or mode
                weight(torch.empty(4, 4))
            except (ValueError, TypeError) as err:
                raise ConfigError(f"model.init.weight: {err}") from err
        self.weight, self.bias = weight, bias

    def __call__(self, module: nn.Module) -> nn.Module:
        if (self.weight is not None or self.bias is not None) and \
                not any(isinstance(m, INIT_LAYERS) for m in module.modules()):
            raise ConfigError(f"model.init initializes nn.Linear and nn.Conv layers; "
                              f"{type(module).__name__} has none: use init=default")
        module.apply(self._init_layer)
        return module

    @torch.no_grad()
    def _init_layer(self, layer: nn.Module) -> None:
        if not isinstance(layer, INIT_LAYERS):
            return
        if self.weight is not None:
            self.weight(layer.weight)
        if self.bias is not None and layer.bias is not None:
            layer.bias.fill_(self.bias)


class PretrainedInit:
    """Initialize from saved weights: the notes treat pre-training as fine-tuning's init.

    Loads with ``weights_only=True`` (no arbitrary unpickling). Accepts a plain state dict, or a
    Lightning checkpoint whose ``state_dict`` keys start with ``prefix``.

    Args:
        path: checkpoint or state-dict file.
        strict: every key of the network must be loaded with the right shape, nothing extra.
        prefix: key prefix to strip (``net.`` for trainlab's Lightning checkpoints).
    """

    def __init__(self, path: str, strict: bool = True, prefix: str = "net.") -> None:
        if not Path(path).is_file():
            raise ConfigError(f"model.init.path: no checkpoint file at {path!r}")
        self.path, self.strict, self.prefix = path, strict, prefix
        self.report: dict[str, list[str]] = {}

    def _state_dict(self) -> dict[str, torch.Tensor]:
        try:
            blob = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as err:  # pickle errors vary; all mean "not a safe weights file"
            raise ConfigError(f"model.init.path: {self.path} is not a loadable weights file "
                              f"with weights_only=True ({err})") from err
        state = blob.get("state_dict", blob)
        if any(k.startswith(self.prefix) for k in state):
            state = {k[len(self.prefix):]: v for k, v in state.items() if k.startswith(self.prefix)}
        return state

    def __call__(self, module: nn.Module) -> nn.Module:
        state = self._state_dict()
        own = module.state_dict()
        loadable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        self.report = {
            "loaded": sorted(loadable),
            "missing": sorted(k for k in own if k not in state),
            "unexpected": sorted(k for k in state if k not in own),
            "shape_mismatch": sorted(k for k in state if k in own and own[k].shape != state[k].shape),
        }
        if self.strict and (self.report["missing"] or self.report["unexpected"]
                            or self.report["shape_mismatch"]):
            raise ConfigError(f"model.init (pretrained, strict): {self.path} does not match the "
                              f"network: missing={self.report['missing']}, unexpected="
                              f"{self.report['unexpected']}, shape_mismatch="
                              f"{self.report['shape_mismatch']}; set model.init.strict=false to "
                              "load the matching part")
        module.load_state_dict(loadable, strict=False)
        log.info("Pretrained init from %s: loaded %d tensors, missing %d, unexpected %d, "
                 "shape mismatch %d", self.path, *(len(v) for v in self.report.values()))
        return module
