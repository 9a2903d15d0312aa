"""Every config value is checked before training: against the signature of the class it is
passed to, and, for the top-level keys no constructor sees, here.

Each problem stops the run with one message that names the key as a user types it, the bad
value and what is allowed. A key that is not a parameter of its ``_target_`` is refused by
name (unless the target takes ``**kwargs``, which then answers for it), so a mistyped or moved
key never goes unnoticed; a value of the wrong type for an annotated parameter is refused
before it can reach a comparison that would fail without naming it. A top-level key that no
config file defines (``+seeed=7``) is refused the same way, with the closest known key.
"""

from __future__ import annotations

import difflib
import functools
import importlib.resources
import inspect
import itertools
import re
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf
from pytorch_lightning import Trainer

from trainlab.callbacks.grad_clip import refuse_trainer_clipping
from trainlab.config_dir import CONFIG_DIR
from trainlab.errors import ConfigError
from trainlab.regularization import Regularization

# the primary config whose keys, and whose groups' keys, are the top-level keys of a run
PRIMARY = "train.yaml"
# keys of a `# @package _global_` file that are not keys of the job's config
NOT_JOB_KEYS = {"defaults", "hydra"}
# Hydra reads a file's package from the comment lines above its first key
PACKAGE_HEADER = re.compile(r"#\s*@package\s+(\S+)")
# Hydra's own keys in a node with a _target_
HYDRA_KEYS = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}
UNCHECKED = object()  # the verdict on an annotation this module does not check (a class, Callable...)
# keys that earlier versions took, and where their setting lives now
MOVED = {
    "model.regularization.weight_decay": "weight decay is the optimizer's: model.optimizer.weight_decay "
                                         "(or regularization=weight_decay)",
    "model.regularization.decoupled_weight_decay": "decoupled weight decay is the optimizer's: "
                                                   "optimizer=adamw, or regularization=decoupled with Adam",
}

# targets that pass their unknown keyword arguments on: the signature that answers for those
KWARGS_GO_TO = {
    "pytorch_lightning.callbacks.EMAWeightAveraging": "torch.optim.swa_utils.AveragedModel",
    "pytorch_lightning.callbacks.WeightAveraging": "torch.optim.swa_utils.AveragedModel",
}
# groups whose entries are objects (one callback or logger each), switched off with null
OBJECT_GROUPS = {"callbacks": "callbacks, early_stopping, weight_averaging or scheduler",
                 "logger": "logger"}

# a net takes only its own arguments: those a study or a user sets must be in its signature
NET_HINT = ("check its spelling; after net=NAME the keys are that network's own, and a study that "
            "sets model.net.{name} needs a network with a `{name}` argument (docs/EXTENDING.md)")


def _check(ok: bool, key: str, value: object, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is not allowed: {allowed}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def accepts(annotation: Any, value: Any) -> bool | object:
    """Whether a config ``value`` fits ``annotation``; ``UNCHECKED`` where it cannot tell."""
    if annotation is inspect.Parameter.empty or annotation is Any:
        return UNCHECKED
    if isinstance(value, DictConfig) and "_target_" in value:
        return UNCHECKED  # an object built from its own node (trainer.plugins' entries), checked there
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        verdicts = [accepts(a, value) for a in args]
        if any(v is True for v in verdicts):
            return True
        return UNCHECKED if any(v is UNCHECKED for v in verdicts) else False
    if origin is typing.Literal:
        return value in args
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return _is_int(value)
    if annotation is float:
        return _is_number(value)
    if annotation is str:
        return isinstance(value, str)
    if origin in (list, tuple, Sequence) or annotation in (list, tuple):
        if not isinstance(value, (ListConfig, list, tuple)):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            pairs = zip(args, value, strict=False)
            return len(args) == len(value) and all(accepts(a, v) is not False for a, v in pairs)
        return not args or all(accepts(args[0], v) is not False for v in value)
    if isinstance(annotation, type):  # a YAML scalar is never a Tensor, an Accelerator...
        return isinstance(value, annotation)
    return UNCHECKED


NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null"}
PLURALS = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}


def describe(annotation: Any, plural: bool = False) -> str:
    """What an annotation allows, in words."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        kinds = [a for a in args if not (a is int and float in args)]  # a number covers integers
        return " or ".join(dict.fromkeys(describe(a, plural) for a in kinds))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (list, tuple, Sequence):
        return f"a list of {describe(args[0], plural=True)}" if args else "a list"
    return (PLURALS if plural else NAMES).get(annotation, getattr(annotation, "__name__", str(annotation)))


def _signature(target: Any) -> tuple[inspect.Signature, dict[str, Any]]:
    """The signature of a class's constructor or a function, with its resolved type hints."""
    function = target.__init__ if isinstance(target, type) else target
    signature = inspect.signature(target)
    try:
        hints = typing.get_type_hints(function)
    except Exception:  # hints that do not resolve at run time: check names only
        hints = {}
    return signature, hints


def check_node(node: DictConfig, key: str) -> None:
    """Check the keys and scalar values of one ``_target_`` node against its target."""
    target_name = node._target_
    try:
        target = get_object(target_name)
    except Exception as err:
        raise ConfigError(f"{key}._target_={target_name!r} cannot be imported: {err}") from None
    try:
        signature, hints = _signature(target)
    except (TypeError, ValueError):  # builtins without a signature
        return
    params = dict(signature.parameters)
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if takes_any and target_name in KWARGS_GO_TO:  # the keys it passes on must fit there
        params |= inspect.signature(get_object(KWARGS_GO_TO[target_name])).parameters
        takes_any = False
    for name in node:
        name = str(name)
        if name in HYDRA_KEYS:
            continue
        if name not in params:
            if takes_any:
                continue
            allowed = ", ".join(p for p in params if p not in ("self", "params"))
            hint = MOVED.get(f"{key}.{name}", NET_HINT.format(name=name) if key == "model.net"
                             else "remove it or check its spelling")
            raise ConfigError(f"{key}.{name} is not a parameter of {target_name} (it takes: {allowed}); "
                              f"{hint}")
        value = node[name]
        if isinstance(value, DictConfig) and "_target_" in value:
            continue  # an object of its own, checked as a node
        annotation = hints.get(name, params[name].annotation)
        if accepts(annotation, value) is False:
            raise ConfigError(f"{key}.{name}={_plain(value)!r} is not allowed: {describe(annotation)} "
                              f"(a parameter of {target_name})")


def _plain(value: Any) -> Any:
    """A config value as the user wrote it (``[1, 2]``, ``{'a': 1}``) for a message."""
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value)
    return value


def check_targets(node: Any, key: str = "") -> None:
    """Walk the config and check every node that has a ``_target_``."""
    if isinstance(node, DictConfig):
        if "_target_" in node:
            check_node(node, key)
        for name in node:
            check_targets(node[name], f"{key}.{name}" if key else str(name))
    elif isinstance(node, ListConfig):
        for i, item in enumerate(node):
            check_targets(item, f"{key}[{i}]")


def check_object_groups(cfg: DictConfig) -> None:
    """Every entry of ``callbacks`` and ``logger`` is an object (``_target_``) or null: a key
    set on an entry that is off would otherwise be dropped without a word."""
    for group, where in OBJECT_GROUPS.items():
        for name, node in (cfg.get(group) or {}).items():
            if node is not None and not (isinstance(node, DictConfig) and "_target_" in node):
                raise ConfigError(f"{group}.{name}={_plain(node)!r} is not an object (no _target_): "
                                  f"it sets keys of a {group[:-1] if group == 'callbacks' else group} "
                                  f"that is off; choose one first (config groups: {where}), "
                                  f"e.g. weight_averaging=ema before callbacks.weight_averaging.decay")


def package_of(text: str, group: str) -> str:
    """The package a config file of ``group`` fills (``""``: the root), read from its header."""
    header = itertools.takewhile(lambda line: line.startswith("#") or not line.strip(),
                                 text.splitlines())
    package = next((m.group(1) for line in header if (m := PACKAGE_HEADER.match(line))),
                   "_group_")  # Hydra's default package: the group's path
    return package.replace("_group_", group.replace("/", ".")).removeprefix("_global_").strip(".")


@functools.cache
def keys_in(config_dir: Path) -> tuple[frozenset[str], dict[str, str]]:
    """The top-level keys the primary config and the groups of one config folder define, and
    the package each group fills (``{"optimizer": "model.optimizer", ...}``)."""
    keys: set[str] = set()
    packages: dict[str, str] = {}
    for path in sorted(config_dir.rglob("*.yaml")):
        group = path.parent.relative_to(config_dir).as_posix().removeprefix(".")
        if group.split("/")[0] == "hydra" or (not group and path.name != PRIMARY):
            continue  # Hydra's own node (not in the job's config); eval.yaml is another primary
        text = path.read_text()
        package = package_of(text, group)
        if group:
            packages.setdefault(group.split("/")[0], package)
        if package:
            keys.add(package.split(".")[0])
            continue
        content = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        keys |= {str(key) for key in content} - NOT_JOB_KEYS if isinstance(content, dict) else set()
    return frozenset(keys), packages


def config_dirs() -> list[Path]:
    """The config folders of this job: ``conf/``, and those ``--config-dir`` and
    ``hydra.searchpath`` add. (Structured configs are Hydra's and its plugins' own ``hydra/``.)"""
    dirs = [Path(CONFIG_DIR)]
    sources = HydraConfig.get().runtime.config_sources if HydraConfig.initialized() else []
    for source in sources:
        if source.schema == "file":
            dirs.append(Path(source.path))
        elif source.schema == "pkg":
            try:
                folder = importlib.resources.files(source.path.replace("/", "."))
            except ModuleNotFoundError:
                continue
            if isinstance(folder, Path):  # a package on disk (not inside a zip)
                dirs.append(folder)
    return list(dict.fromkeys(d.resolve() for d in dirs if d.is_dir()))


def check_top_level_keys(cfg: DictConfig) -> None:
    """Refuse a top-level key that no config file defines: ``+seeed=7`` adds a key nothing reads
    (Hydra refuses ``seeed=7`` itself, but ``+`` adds whatever it is given)."""
    known: set[str] = set()
    packages: dict[str, str] = {}
    for config_dir in reversed(config_dirs()):  # the first folder's group wins, as in Hydra
        keys, group_packages = keys_in(config_dir)
        known |= keys
        packages |= group_packages
    for name in map(str, cfg):
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            if packages.get(name):  # a group's name is not where its keys go (+optimizer.lr=...)
                hint = (f"did you mean {packages[name]}? ({name}=NAME chooses a file of the config "
                        f"group {name}, whose keys are under {packages[name]}) ")
            value = _plain(OmegaConf.masked_copy(cfg, [name]))[name]  # unresolved: as typed
            raise ConfigError(f"{name}={value!r} is not a key of the config: {hint}the top-level keys "
                              f"are {', '.join(sorted(known))} (conf/train.yaml and its groups); "
                              f"remove it or check its spelling")


def literal_values(annotation: Any) -> list[Any]:
    """The values of every ``Literal`` in an annotation (through ``Union`` and ``Optional``)."""
    if typing.get_origin(annotation) is typing.Literal:
        return list(typing.get_args(annotation))
    return [value for arg in typing.get_args(annotation) for value in literal_values(arg)]


@functools.cache
def lightning_precisions() -> tuple[Any, ...]:
    """Every ``precision`` Lightning's Trainer takes, read from its signature (a new one appears
    here when Lightning adds it); null is Lightning's default (32-true)."""
    return tuple(literal_values(typing.get_type_hints(Trainer.__init__)["precision"]))


def check_steps(trainer: DictConfig) -> None:
    """The run trains, and stops: some training batches, and an end in epochs, steps or time."""
    epochs, steps = trainer.get("max_epochs"), trainer.get("max_steps")
    _check(epochs is None or (_is_int(epochs) and (epochs >= 1 or epochs == -1)),
           "trainer.max_epochs", epochs, "an integer >= 1 (or -1 with trainer.max_steps)")
    _check(steps is None or (_is_int(steps) and (steps >= 1 or steps == -1)), "trainer.max_steps",
           steps, "an integer >= 1, or -1 for no limit (0 trains no step)")
    endless = epochs == -1 and steps in (None, -1) and not trainer.get("max_time") and \
        not trainer.get("fast_dev_run")
    if endless:  # Lightning's -1: train until stopped
        raise ConfigError(f"trainer.max_epochs=-1 is not allowed with trainer.max_steps={steps!r}: "
                          f"the run would train forever; set trainer.max_steps to an integer >= 1 "
                          f"(or trainer.max_time), or trainer.max_epochs to an integer >= 1")
    batches = trainer.get("limit_train_batches")
    _check(batches is None or (_is_int(batches) and batches >= 1) or
           (isinstance(batches, float) and 0 < batches <= 1), "trainer.limit_train_batches", batches,
           "an integer >= 1 (batches per epoch), a fraction in (0, 1] of them, or null for all "
           "(0 trains no batch)")


def check_one_key_per_idea(cfg: DictConfig) -> None:
    """Two keys set for one idea stop the run, each with the key to keep (README, "One key per
    idea"): the Trainer's clipping beside ``callbacks.grad_clip``, an explicit L2 penalty beside
    a decoupled weight decay."""
    trainer = cfg.trainer
    if (cfg.get("callbacks") or {}).get("grad_clip") is not None:
        refuse_trainer_clipping(trainer.get("gradient_clip_val"), trainer.get("gradient_clip_algorithm"))
    regularization, optimizer = cfg.model.get("regularization"), cfg.model.get("optimizer")
    if regularization is not None and optimizer is not None:
        penalties = instantiate(regularization)
        if isinstance(penalties, Regularization):
            penalties.check_optimizer(instantiate(optimizer))


def validate(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` for the first bad value found."""
    check_top_level_keys(cfg)
    check_object_groups(cfg)
    _check(_is_int(cfg.seed) and cfg.seed >= 0, "seed", cfg.seed, "an integer >= 0")
    trainer = cfg.trainer
    check_steps(trainer)
    precision, allowed = trainer.get("precision"), lightning_precisions()
    # 16 and "16" are both Lightning's; 16.0 and True are not
    _check(precision is None or any(type(precision) is type(a) and precision == a for a in allowed),
           "trainer.precision", precision,
           f"one of {', '.join(dict.fromkeys(map(str, allowed)))} or null (Lightning's Trainer)")
    for key in ("log_every_n_steps", "accumulate_grad_batches", "check_val_every_n_epoch"):
        value = trainer.get(key)
        _check(value is None or (_is_int(value) and value >= 1), f"trainer.{key}", value,
               "an integer >= 1")
    check_targets(cfg)
    averaging = (cfg.get("callbacks") or {}).get("weight_averaging") or {}
    decay = averaging.get("decay", 0.5)
    _check(_is_number(decay) and 0 <= decay < 1, "callbacks.weight_averaging.decay", decay,
           "a number in [0, 1): the share of the average kept at each update")
    optimizer = cfg.model.get("optimizer")
    if optimizer is not None and "lr" in optimizer:
        lr = optimizer.lr
        _check(_is_number(lr) and lr > 0, "model.optimizer.lr", lr, "a number > 0")
    check_one_key_per_idea(cfg)
