"""The data edge: the only data code that reads the composed config.

It turns the config's dataset type, data block and loss batch sampler into the data module's
typed settings and builds the data module (one per objective with several objectives)."""

from collections.abc import Callable

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from embedding_trainer.data.datamodule import EmbeddingDataModule
from embedding_trainer.data.objectives import ObjectivesDataModule
from embedding_trainer.data.synthetic_queries import synthetic_queries
from embedding_trainer.training.objectives import objective_names, objective_view

# Data keys read elsewhere: hard_negatives (a stage run once the model is loaded, see `_train`),
# synthetic_queries and chunking (read into `synthetic`), min_steps (the trainer's, `train_min_steps`).
NOT_DATAMODULE_KEYS = ("hard_negatives", "synthetic_queries", "chunking", "min_steps")


def build_datamodule(
    cfg: DictConfig, tokenizer: Callable[[], object] | None = None
) -> EmbeddingDataModule | ObjectivesDataModule:
    """The data module of the composed dataset type, data source and loss batch sampler; with
    several objectives, theirs (each of its objective's view) in one `ObjectivesDataModule`.
    `tokenizer()`: the model's tokenizer, for chunking documents (see `EmbeddingDataModule`)."""
    names = objective_names(cfg)
    if names:
        return ObjectivesDataModule(
            {name: objective_datamodule(objective_view(cfg, name), tokenizer) for name in names},
            cfg.objective_sampling,
            cfg.seed,
            cfg.paths.output_dir,
        )
    return objective_datamodule(cfg, tokenizer)


def objective_datamodule(
    cfg: DictConfig, tokenizer: Callable[[], object] | None = None
) -> EmbeddingDataModule:
    """The data module of one objective: `cfg`'s dataset type, data source and loss batch sampler."""
    schema = OmegaConf.to_container(cfg.dataset_type, resolve=True)
    data = OmegaConf.to_container(cfg.data, resolve=True)
    for key in NOT_DATAMODULE_KEYS:
        data.pop(key, None)
    return EmbeddingDataModule(
        dataset_type=schema["name"],
        columns=schema["columns"],
        label=schema.get("label"),
        label_type=schema.get("label_type"),
        variadic=schema.get("variadic"),
        inputs=schema.get("inputs"),
        batch_sampler=instantiate(cfg.loss.batch_sampler),
        batch_transform=instantiate((cfg.loss.get("batch_transform") or {}).get(schema["name"])),
        seed=cfg.seed,
        output_dir=cfg.paths.output_dir,
        synthetic=synthetic_queries(cfg.data, cfg.paths.cache_dir),
        tokenizer=tokenizer,
        **data,
    )
