"""The query adapters, as sentence-transformers modules that map a `sentence_embedding` to one of the
same size and start as the identity, so training begins from the frozen model's own scores."""

from typing import ClassVar

import torch
from sentence_transformers.base.modules import Dense, Module
from torch import nn

ADAPTER_KINDS = ("linear", "two_layer")


def build_adapter(kind: str, dimension: int, hidden_dimension: int | None = None) -> Module:
    """A `linear` (`linear_adapter`) or `two_layer` (`ResidualMLPAdapter`; `hidden_dimension`
    None: `dimension`) adapter for embeddings of `dimension` components."""
    if kind == "linear":
        return linear_adapter(dimension)
    if kind == "two_layer":
        return ResidualMLPAdapter(dimension, hidden_dimension or dimension)
    raise ValueError(f"Unknown adapter kind {kind!r}: use one of {', '.join(ADAPTER_KINDS)}.")


def linear_adapter(dimension: int) -> Dense:
    """x -> W x + b with W the identity and b zero at first, as sentence-transformers' own `Dense`
    module (no activation): a plain sentence-transformers installation loads it."""
    return Dense(
        dimension,
        dimension,
        bias=True,
        activation_function=None,
        init_weight=torch.eye(dimension),
        init_bias=torch.zeros(dimension),
    )


class ResidualMLPAdapter(Module):
    """x -> x + W2 relu(W1 x + b1) + b2, a residual two-layer perceptron whose output layer starts at
    zero (so the adapter starts as the identity). Loading a saved model that holds it needs this package."""

    config_keys: ClassVar[list[str]] = ["dimension", "hidden_dimension"]

    def __init__(self, dimension: int, hidden_dimension: int) -> None:
        super().__init__()
        self.dimension, self.hidden_dimension = dimension, hidden_dimension
        self.hidden = nn.Linear(dimension, hidden_dimension)
        self.output = nn.Linear(hidden_dimension, dimension)
        nn.init.zeros_(self.output.weight)
        nn.init.zeros_(self.output.bias)

    def forward(self, features: dict[str, torch.Tensor], **kwargs) -> dict[str, torch.Tensor]:
        embedding = features["sentence_embedding"]
        features["sentence_embedding"] = embedding + self.output(torch.relu(self.hidden(embedding)))
        return features

    def get_embedding_dimension(self) -> int:
        return self.dimension

    def save(self, output_path: str, *args, safe_serialization: bool = True, **kwargs) -> None:
        self.save_config(output_path)
        self.save_torch_weights(output_path, safe_serialization=safe_serialization)

    @classmethod
    def load(cls, model_name_or_path: str, **kwargs) -> "ResidualMLPAdapter":
        hub = {
            key: kwargs[key] for key in ("subfolder", "token", "cache_folder", "revision") if key in kwargs
        }
        adapter = cls(**cls.load_config(model_name_or_path, **hub))
        return cls.load_torch_weights(model_name_or_path=model_name_or_path, model=adapter, **hub)
