"""Checks of the data settings that need no data: which sources a run needs, and which it may be given,
for the dataset type's evaluator. They run before anything is read or loaded."""

from omegaconf import DictConfig

from embedding_trainer.utils.errors import ConfigError


def reads_run_data(cfg: DictConfig) -> bool:
    """Whether the dataset type's evaluator scores the run's own eval data (`from_eval_data`), not a
    fixed set of its own (such as the STS benchmark for unlabelled sentences)."""
    return str(cfg.dataset_type.evaluator._target_).endswith(".from_eval_data")


def check_data_sources(cfg: DictConfig, training: bool) -> None:
    """Training needs `data.train_path`; an evaluator of the run's data needs eval data: `data.eval_path`,
    or with it null `data.test_size` of the training rows (so, for evaluate.py, `data.train_path`)."""
    data, name = cfg.data, cfg.dataset_type.name
    if training and data.train_path is None:
        raise ConfigError(
            "data.train_path is null: set it to the training data (a data file, a retrieval folder or a hub "
            "dataset id); evaluate.py scores a model without it."
        )
    if not reads_run_data(cfg) or data.eval_path is not None:
        return
    if data.test_size is None:
        raise ConfigError(
            f"dataset_type={name} is scored on eval data, but data.eval_path and data.test_size are both null: "
            "set data.eval_path=<your test data>, or data.test_size=0.1 to hold out 10% of the training rows."
        )
    if data.train_path is None:
        raise ConfigError(
            f"dataset_type={name} is scored on data.eval_path, which is null, and data.train_path (whose "
            "data.test_size part it would hold out) is null too: set data.eval_path=<your test data>."
        )


def check_validation_data(cfg: DictConfig) -> None:
    """Validation data is only asked for where the dataset type's evaluator reads the run's data
    (not a fixed set of its own, such as the STS benchmark for unlabelled sentences)."""
    data = cfg.data
    asked = [
        key for key in ("validation_path", "validation_split", "validation_size") if data.get(key) is not None
    ]
    if asked and not reads_run_data(cfg):
        raise ConfigError(
            f"dataset_type={cfg.dataset_type.name} is evaluated on a fixed set of its own "
            f"({cfg.dataset_type.evaluator._target_}), not on the run's data: {', '.join(asked)} would change "
            "nothing; remove it."
        )
