"""A hostile or mistyped setting stops the run before training with one line naming the key, the
bad value and what is allowed: an unknown top-level key, a run that would train forever or not
at all, a precision Lightning does not take."""

from __future__ import annotations

import re
import typing

import pytest
from conftest import run_cli

from trainlab.errors import ConfigError
from trainlab.validate import validate

# what conf/train.yaml and its groups define, listed in every unknown-key message
TOP_LEVEL_KEYS = ("callbacks, data, gpu_pack, logger, model, optimized_metric, paths, process, "
                  "resume, retry_failed, seed, site, tag, test, trainer")


def refusal(cfg_factory, *overrides: str) -> str:
    """The message validation refuses ``data=digits OVERRIDES`` with."""
    with pytest.raises(ConfigError) as caught:
        validate(cfg_factory("data=digits", *overrides))
    message = str(caught.value)
    assert "\n" not in message  # one line
    return message


@pytest.mark.parametrize(("override", "named", "hint"), [
    ("+tset=false", "tset=False", "did you mean test?"),
    ("+seeed=7", "seeed=7", "did you mean seed?"),
    ("+trainner.max_epochs=3", "trainner={'max_epochs': 3}", "did you mean trainer?"),
    # a group's name is not where its keys live
    ("+optimizer.lr=0.1", "optimizer={'lr': 0.1}", "did you mean model.optimizer? (optimizer=NAME"),
    ("+learning_rate=0.1", "learning_rate=0.1", ""),  # nothing close: the list alone
])
def test_an_unknown_top_level_key_is_refused_with_the_closest_known_one(cfg_factory, override, named,
                                                                         hint):
    message = refusal(cfg_factory, override)
    assert message.startswith(f"{named} is not a key of the config: {hint}")
    assert f"the top-level keys are {TOP_LEVEL_KEYS} (conf/train.yaml and its groups)" in message
    assert message.endswith("remove it or check its spelling")
    if not hint:
        assert "did you mean" not in message


ENDLESS = ("trainer.max_epochs=-1 is not allowed with trainer.max_steps=-1: the run would train "
           "forever; set trainer.max_steps to an integer >= 1 (or trainer.max_time), or "
           "trainer.max_epochs to an integer >= 1")
ZERO_STEPS = "trainer.max_steps=0 is not allowed: an integer >= 1, or -1 for no limit (0 trains no step)"
ZERO_BATCHES = ("is not allowed: an integer >= 1 (batches per epoch), a fraction in (0, 1] of them, "
                "or null for all (0 trains no batch)")


@pytest.mark.parametrize(("overrides", "message"), [
    (("trainer.max_epochs=-1",), ENDLESS),
    (("trainer.max_epochs=-1", "trainer.max_steps=-1"), ENDLESS),
    (("trainer.max_epochs=-1", "trainer.max_steps=0"), ZERO_STEPS),
    (("trainer.max_steps=0",), ZERO_STEPS),
    (("trainer.limit_train_batches=0",), f"trainer.limit_train_batches=0 {ZERO_BATCHES}"),
    (("trainer.limit_train_batches=0.0",), f"trainer.limit_train_batches=0.0 {ZERO_BATCHES}"),
    (("trainer.limit_train_batches=1.5",), f"trainer.limit_train_batches=1.5 {ZERO_BATCHES}"),
])
def test_a_run_that_would_train_forever_or_not_at_all_is_refused(cfg_factory, overrides, message):
    assert refusal(cfg_factory, *overrides) == message


@pytest.mark.parametrize("overrides", [
    ("trainer.max_epochs=-1", "trainer.max_steps=100"),  # Lightning's -1: steps end the run
    ("trainer.max_epochs=-1", "+trainer.max_time=00:00:05:00"),
    ("trainer.max_epochs=3", "trainer.max_steps=-1"),
    ("trainer.limit_train_batches=1",),
    ("trainer.limit_train_batches=0.5",),
])
def test_a_run_with_an_end_and_some_batches_is_allowed(cfg_factory, overrides):
    """Controls: the bounded combinations next to the refused ones pass."""
    validate(cfg_factory("data=digits", *overrides))


def lightning_precisions() -> list[str]:
    """Every precision Lightning takes, from its own (private) literal, as a command line types it."""
    from lightning_fabric.connector import _PRECISION_INPUT

    def values(annotation) -> list:
        if typing.get_origin(annotation) is typing.Literal:
            return list(typing.get_args(annotation))
        return [v for arg in typing.get_args(annotation) for v in values(arg)]

    return list(dict.fromkeys(str(v) for v in values(_PRECISION_INPUT)))


@pytest.mark.parametrize("value", ["fp16", "8-true", "16.0", "true"])
def test_a_bad_precision_is_refused_listing_every_value_lightning_takes(cfg_factory, value):
    message = refusal(cfg_factory, f"trainer.precision={value}")
    listed = re.fullmatch(r"trainer\.precision=(.+) is not allowed: one of (.+) or null "
                          r"\(Lightning's Trainer\)", message)
    assert listed, message
    assert listed[1] in (repr(value), "16.0", "True")  # Hydra reads 16.0 and true as a float and a bool
    assert listed[2].split(", ") == lightning_precisions()


@pytest.mark.parametrize("value", ["16", "bf16", "transformer-engine-float16", "null"])
def test_every_precision_lightning_takes_is_allowed(cfg_factory, value):
    """Lightning's aliases (16, bf16) and newer values pass, as Lightning's Trainer takes them."""
    cfg = cfg_factory("data=digits", f"trainer.precision={value}")
    validate(cfg)
    assert cfg.trainer.precision is None or str(cfg.trainer.precision) in lightning_precisions()


@pytest.mark.e2e
@pytest.mark.parametrize(("override", "message"), [
    ("+seeed=7", "error: seeed=7 is not a key of the config: did you mean seed?"),
    ("trainer.max_epochs=-1", "error: trainer.max_epochs=-1 is not allowed with trainer.max_steps=-1"),
])
def test_train_py_stops_on_a_hostile_key_with_one_line_and_no_run(tmp_path, override, message):
    run = tmp_path / "run"
    proc = run_cli("data=digits", override, f"hydra.run.dir={run}", timeout=120)  # before: endless
    assert proc.returncode != 0
    assert message in proc.stderr and "Traceback" not in proc.stderr + proc.stdout
    # Hydra makes the dir and saves the config before the job starts; nothing of a run follows
    written = {p.name for p in run.iterdir()} if run.exists() else set()
    assert written <= {".hydra", "train.log", ".owner"}, written
