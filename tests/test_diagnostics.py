"""``callbacks.diagnostics``: gradient norms sampled at least once per epoch, epoch means of them."""

from __future__ import annotations

import math

import pytest
from pytorch_lightning.loggers import CSVLogger
from tiny import tiny_datamodule, tiny_model, tiny_trainer

from trainlab.callbacks.diagnostics import Diagnostics, sample_interval
from trainlab.rundir import read_metrics


@pytest.mark.parametrize(("every", "batches", "accumulate", "interval"), [
    (50, 1000, 1, 50),  # long epochs: the logger's interval
    (50, 17, 1, 17),  # short epochs: once per epoch
    (50, 17, 4, 5),  # 17 batches, 4 per step: 5 steps (the last batch steps too)
    (0, 17, 1, 17),  # no step logging: once per epoch
    (50, math.inf, 1, 50),  # a loader without a length
    (50, 0, 1, 1),  # no batches: never zero (global_step % interval)
])
def test_the_sample_interval_is_the_loggers_or_an_epoch_where_that_is_shorter(every, batches,
                                                                              accumulate, interval):
    assert sample_interval(every, batches, accumulate) == interval


def test_epochs_shorter_than_the_logging_interval_each_log_their_own_gradient_norms(tmp_path):
    model = tiny_model()
    sampled = []
    log = model.log

    def record(name, value, *args, **kwargs):
        if name == "grad/first_layer":
            sampled.append((model.trainer.global_step, value.item()))
        return log(name, value, *args, **kwargs)

    model.log = record
    logger = CSVLogger(tmp_path, name="csv")
    trainer = tiny_trainer(tmp_path, max_epochs=3, callbacks=[Diagnostics()], logger=logger,
                           log_every_n_steps=50)  # 5 steps an epoch (80 images, 16 a batch)
    trainer.fit(model, datamodule=tiny_datamodule())
    assert [step for step, _ in sampled] == [0, 5, 10]  # each epoch's first step
    logged = [row for row in read_metrics(tmp_path) if row["grad/first_layer"]]
    assert [int(row["epoch"]) for row in logged] == [0, 1, 2]
    # one sample an epoch: its mean is that sample, and the epochs differ
    norms = [float(row["grad/first_layer"]) for row in logged]
    assert norms == pytest.approx([value for _, value in sampled]) and len(set(norms)) == 3
