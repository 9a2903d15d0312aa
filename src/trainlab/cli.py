"""``trainlab-cli``: LightningCLI over the same Classifier and DataModules as the Hydra path.

::

    trainlab-cli fit --config cli/digits.yaml
    trainlab-cli fit --config cli/digits.yaml --model.optimizer=SGD --model.optimizer.lr=0.05
    trainlab-cli test --config cli/digits.yaml \
        --ckpt_path=outputs/cli/digits/version_0/checkpoints/last.ckpt
    trainlab-cli fit --config cli/digits.yaml --print_config > my.yaml

The optimizer is the model's own argument (``--model.optimizer``), so the Classifier keeps its
regularization parameter groups; LightningCLI's ``--optimizer``/``--lr_scheduler`` are switched
off because they would replace ``configure_optimizers``. LR decay is the same callback as in
Hydra, ``trainlab.callbacks.LRSchedule`` (in the YAML's ``trainer.callbacks``, or appended with
``--trainer.callbacks+=trainlab.callbacks.LRSchedule --trainer.callbacks.scheduler=StepLR
--trainer.callbacks.scheduler.step_size=3``).

Configs are parsed in jsonargparse's ``omegaconf+`` mode: ``${trainer.default_root_dir}`` in a
YAML is resolved after the command line is applied, so the logger follows
``--trainer.default_root_dir``.
"""

from __future__ import annotations

import sys

from trainlab.runtime import nvml_check, settings_line, tune_process
from trainlab.user_code import import_from_working_dir

# the entry point's module: OpenMP reads its setting when torch loads, below. The CLI takes
# conf/train.yaml's process defaults; OMP_WAIT_POLICY in the environment overrides them.
PROCESS = tune_process()

import pytorch_lightning as pl  # noqa: E402
from jsonargparse import set_parsing_settings  # noqa: E402
from pytorch_lightning.cli import ArgsType, LightningArgumentParser, LightningCLI  # noqa: E402
from typing_extensions import override  # noqa: E402

from trainlab.models import Classifier  # noqa: E402

PROCESS["process/nvml_check"] = nvml_check()  # Lightning is loaded

SUBCOMMANDS = ("fit", "validate", "test", "predict")
DATA_DERIVED = ("num_classes", "input_shape")


class TrainlabCLI(LightningCLI):
    """LightningCLI whose model takes the data's class count and input shape."""

    @override
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # the DataModule holds num_classes and input_shape (checked against the data); the
        # Classifier and its net receive them instead of repeating them in every config
        for key in DATA_DERIVED:
            parser.link_arguments(f"data.{key}", f"model.{key}", apply_on="instantiate")
            parser.link_arguments(f"data.{key}", f"model.net.init_args.{key}", apply_on="instantiate")


def build_cli(args: ArgsType = None, run: bool = True) -> LightningCLI:
    """Parse ``args`` and, with ``run``, run the subcommand.

    Args:
        args: command line without the program name, or a dict/Namespace; None reads sys.argv.
        run: False parses and instantiates without a subcommand (nothing is trained).

    Returns:
        The LightningCLI, holding ``model``, ``datamodule`` and ``trainer``.
    """
    # ${trainer.default_root_dir} in a YAML loaded under `fit` means fit's own trainer
    set_parsing_settings(omegaconf_absolute_to_relative_paths=True)
    parser_mode = {"parser_mode": "omegaconf+"}
    return TrainlabCLI(
        Classifier,
        pl.LightningDataModule,  # any of trainlab.data's DataModules, by class_path
        subclass_mode_data=True,
        auto_configure_optimizers=False,
        parser_kwargs={**parser_mode, **dict.fromkeys(SUBCOMMANDS, parser_mode)} if run
        else parser_mode,
        args=args,
        run=run,
    )


def main() -> None:
    """``trainlab-cli``: run the subcommand given on the command line."""
    # on stderr: stdout may be a config (--print_config > my.yaml)
    print(settings_line(PROCESS), file=sys.stderr)
    import_from_working_dir()
    build_cli()


if __name__ == "__main__":
    main()
