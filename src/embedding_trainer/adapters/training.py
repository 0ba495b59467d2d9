"""A query-adapter run (`adapter=linear` or `adapter=two_layer`): its config checks, and the pieces the
training run swaps in: the model with the adapter on its query route, batches of frozen embeddings
instead of tokens, and the adapter's ranking loss."""

from dataclasses import dataclass

from omegaconf import DictConfig
from sentence_transformers import SentenceTransformer

from embedding_trainer.adapters.loss import QueryAdapterLoss
from embedding_trainer.adapters.modules import ADAPTER_KINDS, build_adapter
from embedding_trainer.adapters.router import FROZEN_ROUTE, query_adapter, with_query_adapter
from embedding_trainer.adapters.vectors import TrainingDocuments, VectorBatchCollator
from embedding_trainer.data.datamodule import EmbeddingDataModule
from embedding_trainer.evaluation.base import DimensionEvaluator
from embedding_trainer.evaluation.retrieval import RetrievalEvaluator
from embedding_trainer.models.prompts import DOCUMENT
from embedding_trainer.training.losses import class_name
from embedding_trainer.utils.embedding_cache import EmbeddingCache
from embedding_trainer.utils.errors import ConfigError
from embedding_trainer.utils.text_vectors import training_vectors

ADAPTER_DATASET_TYPES = ("pair", "triplet", "n_tuple")
ADAPTER_NEGATIVES = ("batch", "corpus")
RANKING_LOSS = "MultipleNegativesRankingLoss"
MATRYOSHKA = "MatryoshkaLoss"


@dataclass(frozen=True)
class AdapterSettings:
    """A query-adapter run's settings (`adapter=linear` or `adapter=two_layer`, checked by `check_adapter`):
    its `kind`, the two-layer adapter's `hidden_dimension` (None: the model's dimension) and what each query
    is ranked against, `negatives` (`batch`: the batch's documents; `corpus`: every training document)."""

    kind: str
    hidden_dimension: int | None = None
    negatives: str = "batch"


def adapter_kind(cfg: DictConfig) -> str | None:
    """The settings edge: the run's adapter kind (`cfg.adapter.kind`); None: no adapter, the model itself
    trains."""
    return (cfg.get("adapter") or {}).get("kind")


def adapter_settings(cfg: DictConfig) -> AdapterSettings | None:
    """The settings edge: the run's `AdapterSettings` (`cfg.adapter`); None: no adapter, the model itself
    trains."""
    kind = adapter_kind(cfg)
    if kind is None:
        return None
    return AdapterSettings(kind, cfg.adapter.get("hidden_dimension"), cfg.adapter.get("negatives", "batch"))


def check_adapter(cfg: DictConfig) -> None:
    """An adapter run's settings fit, before anything loads: a known kind, retrieval data (anchor and
    positive columns), MultipleNegativesRankingLoss (whose `scale` it uses) with no modifier or
    Matryoshka, no LoRA, and a positive hidden size for `two_layer`."""
    kind = adapter_kind(cfg)
    if kind is None:
        return
    if kind not in ADAPTER_KINDS:
        raise ConfigError(
            f"adapter.kind={kind!r} is not an adapter: use adapter=linear or adapter=two_layer."
        )
    if cfg.dataset_type.name not in ADAPTER_DATASET_TYPES:
        raise ConfigError(
            f"A query adapter trains on queries and their documents; dataset_type={cfg.dataset_type.name} has "
            f"none. Use dataset_type={', '.join(ADAPTER_DATASET_TYPES)}, or adapter=none to train the model itself."
        )
    if class_name(cfg.loss.get("_target_")) != RANKING_LOSS:
        raise ConfigError(
            "A query adapter trains with in-batch ranking (MultipleNegativesRankingLoss, with its scale): "
            "use loss=mnrl, or adapter=none to train the model itself with this loss."
        )
    modifier = class_name(cfg.modifier.get("_target_"))
    if modifier not in (None, MATRYOSHKA):
        raise ConfigError(
            f"A query adapter trains at the Matryoshka dimensions or at full size; modifier {modifier} works "
            "on the encoder's layers, which stay frozen. Use modifier=matryoshka or modifier=none."
        )
    if cfg.model.get("lora") is not None:
        raise ConfigError(
            "adapter and model.lora both choose what trains: set one (adapter=none, or model.lora=null)."
        )
    if cfg.adapter.get("negatives", "batch") not in ADAPTER_NEGATIVES:
        raise ConfigError(
            f"adapter.negatives={cfg.adapter.negatives!r}: use batch (the batch's documents, as MNRL) or "
            "corpus (every training document)."
        )
    if cfg.get("regularizer", {}).get("_target_") is not None:
        raise ConfigError(
            "regularizer penalises the encoder's embeddings, which an adapter run never trains: use regularizer=none."
        )
    hidden = cfg.adapter.get("hidden_dimension")
    if hidden is not None and (not isinstance(hidden, int) or hidden < 1):
        raise ConfigError(
            f"adapter.hidden_dimension={hidden!r}: set a positive whole number, or null (the model's)."
        )


def adapted_model(model: SentenceTransformer, settings: AdapterSettings) -> SentenceTransformer:
    """`model`, frozen, with a new adapter of `settings` on its query route (`with_query_adapter`)."""
    adapter = build_adapter(settings.kind, model.get_embedding_dimension(), settings.hidden_dimension)
    return with_query_adapter(model, adapter)


def adapter_training(
    model: SentenceTransformer,
    datamodule: EmbeddingDataModule,
    cache: EmbeddingCache,
    evaluators: list[DimensionEvaluator],
    scale: float,
    dims: list[int] | None,
    negatives: str = "batch",
    batch_size: int = 64,
    show_progress_bar: bool = True,
) -> QueryAdapterLoss:
    """Prepare the adapter `model` (from `adapted_model`) to train: the frozen embeddings of the
    training rows (`training_vectors`: read from `cache`, the corpora of the retrieval `evaluators`
    encoded as their baselines encode them) batched by `datamodule` from now on (`use_collator`), the
    run's `evaluators` reading the frozen embeddings from `cache` at every evaluation (`use_frozen_cache`:
    only the adapter runs), and the loss (`QueryAdapterLoss` with `scale`, at each of `dims`; None:
    full size), ranking each query against the batch's documents (`negatives="batch"`) or every
    training document (`"corpus"`)."""
    for evaluator in evaluators:
        evaluator.use_frozen_cache(cache)
    corpora = [evaluator.corpus for evaluator in evaluators if isinstance(evaluator, RetrievalEvaluator)]
    inputs = datamodule.inputs or datamodule.text_columns
    vectors = training_vectors(
        model,
        datamodule.train_dataset,
        inputs,
        cache,
        corpora,
        batch_size,
        show_progress_bar,
        route=FROZEN_ROUTE,
        purpose="Adapter training",
    )
    documents = None
    if negatives == "corpus":
        documents = TrainingDocuments.of(datamodule.train_dataset, inputs, vectors[DOCUMENT])
    datamodule.use_collator(VectorBatchCollator(vectors, inputs, documents))
    return QueryAdapterLoss(query_adapter(model), scale, dims, documents.embeddings if documents else None)
