"""The data edge: the only data code that reads the composed config.

It turns the config's dataset type, data block and loss batch sampler into the data module's typed
settings (`DataSettings`) and builds the data module (one per objective with several objectives)."""

from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from embedding_trainer.data.batching import BatchSettings
from embedding_trainer.data.datamodule import EmbeddingDataModule
from embedding_trainer.data.objectives import ObjectivesDataModule
from embedding_trainer.data.reading import ReaderSettings, Sources
from embedding_trainer.data.schema import Normalization, Schema
from embedding_trainer.data.settings import DataSettings
from embedding_trainer.data.splits import SplitSettings
from embedding_trainer.data.stages import LOAD_SLOTS, build_stages, stage_data_keys
from embedding_trainer.training.objectives import objective_names, objective_view
from embedding_trainer.utils.errors import ConfigError

# Data keys read elsewhere: the data stages' blocks (`data.stages`: hard_negatives, synthetic_queries,
# chunking, ...), min_steps (the trainer's, `train_min_steps`).
NOT_DATAMODULE_KEYS = ("min_steps",)
# The `data` keys `Sources.of` takes.
SOURCE_KEYS = ("train_path", "train_split", "eval_path", "eval_split", "validation_path", "validation_split")


def build_datamodule(
    cfg: DictConfig, tokenizer: Callable[[], object] | None = None
) -> EmbeddingDataModule | ObjectivesDataModule:
    """The data module of the composed dataset type, data source and loss batch sampler; with
    several objectives, theirs (each of its objective's view) in one `ObjectivesDataModule`.
    `tokenizer()`: the model's tokenizer, for chunking documents (see `EmbeddingDataModule`)."""
    names = objective_names(cfg)
    output_dir = cfg.paths.output_dir
    prepared = Path(output_dir) / "data" if output_dir else None
    if names:
        return ObjectivesDataModule(
            {
                name: objective_datamodule(
                    objective_view(cfg, name), tokenizer, prepared / name if prepared else None
                )
                for name in names
            },
            cfg.objective_sampling,
            cfg.seed,
        )
    return objective_datamodule(cfg, tokenizer, prepared)


def objective_datamodule(
    cfg: DictConfig, tokenizer: Callable[[], object] | None = None, prepared_folder: Path | None = None
) -> EmbeddingDataModule:
    """The data module of one objective: `cfg`'s dataset type, data source and loss batch sampler, writing
    its prepared rows to `prepared_folder` (None: nowhere)."""
    return EmbeddingDataModule(
        data_settings(cfg),
        prepared_folder=prepared_folder,
        stages=build_stages(cfg, LOAD_SLOTS),
        tokenizer=tokenizer,
    )


def data_settings(cfg: DictConfig) -> DataSettings:
    """`cfg`'s `DataSettings`: its dataset type's schema, its `data` block (less `NOT_DATAMODULE_KEYS` and the stages' keys), its
    loss's batch sampler and batch transform for the dataset type, and its seed.

    Raises:
        ConfigError: a `data` key no setting reads.
    """
    schema = OmegaConf.to_container(cfg.dataset_type, resolve=True)
    data = OmegaConf.to_container(cfg.data, resolve=True)
    for key in (*NOT_DATAMODULE_KEYS, *stage_data_keys()):
        data.pop(key, None)
    sources = Sources.of(**{key: data.pop(key) for key in SOURCE_KEYS if key in data})
    transform = instantiate((cfg.loss.get("batch_transform") or {}).get(schema["name"]))
    batching = BatchSettings(
        sampler=instantiate(cfg.loss.batch_sampler), transform=transform, **_take(BatchSettings, data)
    )
    reading = _take(ReaderSettings, data)
    reading["read_options"] = dict(reading.get("read_options") or {})
    normalization = {key: _frozen(value) for key, value in _take(Normalization, data).items()}
    splits = _take(SplitSettings, data)
    leakage = data.pop("leakage", "warn")
    if data:
        raise ConfigError(f"data: {', '.join(sorted(data))} is no data setting; remove it.")
    return DataSettings(
        schema=Schema(
            name=schema["name"],
            columns=tuple(schema["columns"]),
            label=schema.get("label"),
            label_type=schema.get("label_type"),
            variadic=schema.get("variadic"),
            inputs=tuple(schema["inputs"]) if schema.get("inputs") else None,
        ),
        sources=sources,
        batching=batching,
        reading=ReaderSettings(**reading),
        normalization=Normalization(**normalization),
        splits=SplitSettings(**splits),
        leakage=leakage,
        seed=cfg.seed,
    )


def _take(settings_class: type, data: dict) -> dict:
    """The keys of `data` that `settings_class` has as fields, removed from `data`."""
    return {field.name: data.pop(field.name) for field in fields(settings_class) if field.name in data}


def _frozen(value):
    """A list setting as a tuple (frozen settings hold no lists); None and other values as they are."""
    return tuple(value) if isinstance(value, list) else value
