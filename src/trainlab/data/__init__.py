"""Datasets and DataModules."""

from trainlab.data.batches import TensorBatchLoader
from trainlab.data.image_datamodule import ImageDataModule
from trainlab.data.sources import DataUnavailableError, ImageSplits
from trainlab.data.tabular import TabularDataModule

__all__ = ["DataUnavailableError", "ImageDataModule", "ImageSplits", "TabularDataModule",
           "TensorBatchLoader"]
