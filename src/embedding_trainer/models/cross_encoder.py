"""The cross-encoder (reranker) model family: a sentence-transformers `CrossEncoder` that scores a
(query, passage) pair in one pass, built offline from a transformer with a new one-logit scoring head,
and the checks and batches that let it train through the same phases as an embedding model.

A model option names its family in `family:` (absent: `sentence_transformer`), a loss option the family
it trains in `model_family:` (absent: `sentence_transformer`); `settings.checks.check_model_family`
refuses a mismatch before anything loads. A cross-encoder's one "dimension" is its score (`model.dimension: 1`)."""

from dataclasses import dataclass

import torch
from omegaconf import DictConfig
from sentence_transformers.cross_encoder import CrossEncoder

from embedding_trainer.models.loading import tiny_transformer_folder

EMBEDDING = "sentence_transformer"
CROSS_ENCODER = "cross_encoder"


def model_family(model_cfg: DictConfig) -> str:
    """The family of a `model` block: its `family` (absent: an embedding model)."""
    return str(model_cfg.get("family") or EMBEDDING)


def loss_family(loss_cfg: DictConfig) -> str:
    """The model family a `loss` block trains: its `model_family` (absent: an embedding model)."""
    return str(loss_cfg.get("model_family") or EMBEDDING)


def family_of(model: object) -> str:
    """The family of a loaded `model`: `cross_encoder` for a CrossEncoder, else `sentence_transformer`."""
    return CROSS_ENCODER if isinstance(model, CrossEncoder) else EMBEDDING


def new_cross_encoder(name_or_path: str, max_seq_length: int | None = None, seed: int = 0) -> CrossEncoder:
    """A `CrossEncoder` from the transformer of `name_or_path` (a Hugging Face or sentence-transformers
    folder, or a hub id) with a one-logit scoring head, initialised from `seed` when the folder has none
    (a saved cross-encoder keeps its own). Seeded on a forked random state: the run's stream is untouched."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = CrossEncoder(name_or_path, num_labels=1, max_length=max_seq_length)
    return model


def build_tiny_cross_encoder(
    cache_dir: str,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    max_seq_length: int = 64,
    seed: int = 0,
) -> CrossEncoder:
    """`new_cross_encoder` over the tiny random BERT of `tiny_transformer_folder` (offline, for tests)."""
    folder = tiny_transformer_folder(cache_dir, hidden_size, num_layers, num_heads, max_seq_length, seed)
    return new_cross_encoder(str(folder), max_seq_length, seed)


# The family a model option's `family` names, in words.
FAMILY_NAMES = {EMBEDDING: "an embedding model", CROSS_ENCODER: "a cross-encoder"}
# A model option of each family, for messages.
FAMILY_MODELS = {EMBEDDING: "model=minilm", CROSS_ENCODER: "model=cross_encoder"}
# The embedding-only parts of the config a cross-encoder trains without (their key, and how to unset it).
EMBEDDING_ONLY = {
    "modifier": ("modifier._target_", "modifier=none"),
    "teacher": ("teacher", "teacher=null"),
    "LoRA": ("model.lora", "model.lora=null"),
    "query adapter": ("adapter.kind", "adapter=none"),
    "regularizer": ("regularizer._target_", "regularizer=none"),
    "several objectives": ("objectives", "objectives=null"),
}


def selected(cfg: DictConfig, key: str):
    """The value at dotted `key` of `cfg`; None when it or a node above it is absent or null."""
    node = cfg
    for name in key.split("."):
        if not isinstance(node, DictConfig) or node.get(name) is None:
            return None
        node = node[name]
    return node


@dataclass
class TextBatchCollator:
    """Collate rows into `(texts, labels)` for a cross-encoder loss, which tokenizes its own pairs:
    `texts` holds one list of strings per input column (in order), `labels` the label column's values
    (zeros when there is none, as for (query, positive[, negatives]) rows)."""

    inputs: list[str]
    label_column: str | None

    def __call__(self, rows: list[dict]) -> tuple[list[list[str]], torch.Tensor]:
        texts = [[row[column] for row in rows] for column in self.inputs]
        if self.label_column is None:
            return texts, torch.zeros(len(rows))
        return texts, torch.tensor([row[self.label_column] for row in rows])
