"""The model zoo of issue 19: small transformers models (random weights) under
eager, janus_frame (default and eager backends) and torch.compile.
``python -m bench.zoo --help``; registry in models.py, worker.py measures."""
