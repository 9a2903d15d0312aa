"""Networks and the LightningModule that trains them."""

from trainlab.models.classifier import Classifier
from trainlab.models.cnn import CNN
from trainlab.models.mlp import MLP

__all__ = ["CNN", "MLP", "Classifier"]
