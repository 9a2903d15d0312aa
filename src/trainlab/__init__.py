"""trainlab: a Hydra + Lightning lab for training techniques."""
