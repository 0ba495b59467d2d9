"""The model family of a run (`models.cross_encoder`): read from the model option's `family` and the loss
option's `model_family` (absent: an embedding model); `settings.checks.check_model_family` checks them
before anything loads."""

from omegaconf import DictConfig, OmegaConf

from embedding_trainer.models.cross_encoder import CROSS_ENCODER, EMBEDDING

# The family a model option's `family` names, in words.
FAMILY_NAMES = {EMBEDDING: "an embedding model", CROSS_ENCODER: "a cross-encoder"}
# A model option of each family, for messages.
FAMILY_MODELS = {EMBEDDING: "model=minilm", CROSS_ENCODER: "model=cross_encoder"}
# The embedding-only parts of the config a cross-encoder trains without (their key, set when not null, empty
# or 0, and how to unset it).
EMBEDDING_ONLY = {
    "modifier": ("modifier._target_", "modifier=none"),
    "teacher": ("teacher", "teacher=null"),
    "LoRA": ("model.lora", "model.lora=null"),
    "query adapter": ("adapter.kind", "adapter=none"),
    "regularizer": ("regularizer._target_", "regularizer=none"),
    "several objectives": ("objectives", "objectives=null"),
    "hard-negative mining by its embeddings": (
        "data.hard_negatives.num_negatives",
        "data.hard_negatives.num_negatives=0",
    ),
}


def model_family(model_cfg: DictConfig) -> str:
    """The family of a `model` block: its `family` (absent: an embedding model)."""
    return str(model_cfg.get("family") or EMBEDDING)


def loss_family(loss_cfg: DictConfig) -> str:
    """The model family a `loss` block trains: its `model_family` (absent: an embedding model)."""
    return str(loss_cfg.get("model_family") or EMBEDDING)


def selected(cfg: DictConfig, key: str):
    """The value at dotted `key` of `cfg`; None when it or a node above it is absent or null."""
    return OmegaConf.select(cfg, key, default=None)
