"""embedding-trainer: Hydra-composed training of text embedding models with sentence-transformers."""

__version__ = "0.1.0"
