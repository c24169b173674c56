"""Brand classifier: load, predict top-k, training, evaluation, model registry."""
