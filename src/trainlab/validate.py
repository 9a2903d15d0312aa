"""Checks of config values that no constructor sees before training starts.

Everything a constructor receives is validated there (DataModule, networks, callbacks,
Regularization, ...). What remains is checked here, each with one message that names the key,
the bad value and what is allowed.
"""

from __future__ import annotations

from omegaconf import DictConfig

PRECISIONS = ("32-true", "32", "64-true", "64", "bf16-mixed", "16-mixed", "bf16-true", "16-true",
              "transformer-engine")


class ConfigError(ValueError):
    """A config value is out of range or of the wrong type."""


def _check(ok: bool, key: str, value: object, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is not allowed: {allowed}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` for the first bad value found."""
    _check(_is_int(cfg.seed) and cfg.seed >= 0, "seed", cfg.seed, "an integer >= 0")
    trainer = cfg.trainer
    epochs = trainer.get("max_epochs")
    _check(epochs is None or (_is_int(epochs) and (epochs >= 1 or epochs == -1)),
           "trainer.max_epochs", epochs, "an integer >= 1 (or -1 with trainer.max_steps)")
    _check(str(trainer.get("precision")) in PRECISIONS, "trainer.precision",
           trainer.get("precision"), f"one of {', '.join(PRECISIONS[::2])}")
    for key in ("log_every_n_steps", "accumulate_grad_batches", "check_val_every_n_epoch"):
        value = trainer.get(key)
        _check(value is None or (_is_int(value) and value >= 1), f"trainer.{key}", value,
               "an integer >= 1")
    optimizer = cfg.model.get("optimizer")
    if optimizer is not None and "lr" in optimizer:
        lr = optimizer.lr
        _check(isinstance(lr, (int, float)) and not isinstance(lr, bool) and lr > 0,
               "model.optimizer.lr", lr, "a number > 0")
