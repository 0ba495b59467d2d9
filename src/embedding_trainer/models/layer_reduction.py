"""Layer reduction: a smaller student made from a model by keeping some of its transformer blocks (the
sentence-transformers distillation recipe: all-MiniLM-L6-v2's layers 0, 2 and 4 make a 3-layer student)."""

from collections.abc import Sequence

import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Transformer

from embedding_trainer.utils.errors import ConfigError

# Where a Hugging Face model keeps its blocks: encoders (BERT, MiniLM, RoBERTa) and decoders (Qwen, Llama).
BLOCK_LISTS = ("encoder.layer", "layers")


def keep_layers(model: SentenceTransformer, layers: Sequence[int]) -> None:
    """Keep only the transformer blocks numbered `layers` (0-based, in this order) of `model`, in place.
    Its config's layer count (and a decoder's per-layer types) follow, so the saved model loads as the
    smaller one with plain sentence-transformers.

    Raises:
        ConfigError: `layers` is empty, repeats a block or names one the model does not have, or the model
            has no block list this knows (`BLOCK_LISTS`).
    """
    transformer = _transformer(model).auto_model
    owner, name = _block_list(transformer)
    blocks = getattr(owner, name)
    kept = list(layers)
    if not kept or len(set(kept)) != len(kept) or not all(0 <= index < len(blocks) for index in kept):
        raise ConfigError(
            f"model.encoder.keep_layers={kept} must name distinct blocks of the model's {len(blocks)} "
            f"(0 to {len(blocks) - 1})."
        )
    setattr(owner, name, torch.nn.ModuleList([blocks[index] for index in kept]))
    config = transformer.config
    config.num_hidden_layers = len(kept)
    if isinstance(getattr(config, "layer_types", None), list):
        config.layer_types = [config.layer_types[index] for index in kept]


def _transformer(model: SentenceTransformer) -> Transformer:
    found = [module for module in model.modules() if isinstance(module, Transformer)]
    if not found:
        raise ConfigError(
            "model.encoder.keep_layers needs a model with a Transformer module; this one has none."
        )
    return found[0]


def _block_list(transformer: torch.nn.Module) -> tuple[torch.nn.Module, str]:
    """The module holding the block list, and the list's attribute name."""
    for path in BLOCK_LISTS:
        *parents, name = path.split(".")
        owner = transformer
        for parent in parents:
            owner = getattr(owner, parent, None)
        if isinstance(getattr(owner, name, None), torch.nn.ModuleList):
            return owner, name
    raise ConfigError(
        f"model.encoder.keep_layers: {type(transformer).__name__} keeps its blocks in none of "
        f"{', '.join(BLOCK_LISTS)}; this model cannot be reduced by layers."
    )
