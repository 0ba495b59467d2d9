"""What a run's reports, model card, provenance and saved folder need to know of the composed config:
`ReportSettings` (with the `RunDescription` the setup tables are made of), read once by `from_config`."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from embedding_trainer.models.lora import LoraSettings
from embedding_trainer.models.settings import ModelSettings
from embedding_trainer.training.losses import class_name
from embedding_trainer.training.objectives import objective_names, objective_view, objective_weights


@dataclass(frozen=True)
class DataDescription:
    """One objective's data, loss and evaluator as the reports name them: the `dataset_type`'s name, the
    `data` locations and splits (as configured: a location may be None), the evaluator's own file
    (`evaluator_path`, `evaluator_split`; None: it scores the run's eval data), the `loss` and `modifier`
    class names, the `matryoshka_dims` trained at, the `batch_size`, and the objective's loss `weight`
    and `score_weight` (1 for a one-objective run)."""

    dataset_type: str
    train_path: Any
    train_split: str | None
    eval_path: Any
    eval_split: str | None
    test_size: Any
    validation_path: Any
    validation_split: str | None
    validation_size: Any
    evaluator_path: Any
    evaluator_split: str | None
    loss: str
    modifier: str | None
    matryoshka_dims: list[int]
    batch_size: Any
    weight: float = 1.0
    score_weight: float = 1.0

    @classmethod
    def from_config(
        cls, cfg: DictConfig, weight: float = 1.0, score_weight: float = 1.0
    ) -> "DataDescription":
        """The description of the one-objective run `cfg` (or an objective's view of it)."""
        data, evaluator = cfg.data, cfg.dataset_type.evaluator
        return cls(
            dataset_type=cfg.dataset_type.name,
            train_path=data.train_path,
            train_split=data.train_split,
            eval_path=data.eval_path,
            eval_split=data.eval_split,
            test_size=data.test_size,
            validation_path=data.get("validation_path"),
            validation_split=data.get("validation_split"),
            validation_size=data.get("validation_size"),
            evaluator_path=evaluator.get("path"),
            evaluator_split=evaluator.get("split"),
            loss=class_name(cfg.loss._target_),
            modifier=class_name(cfg.modifier.get("_target_")),
            matryoshka_dims=list(cfg.matryoshka_dims),
            batch_size=cfg.data.batch_size,
            weight=weight,
            score_weight=score_weight,
        )


@dataclass(frozen=True)
class BaseModel:
    """The model a run starts from: its `hub_id` (None: not on the hub), the folder or id it loads from
    (`name_or_path`; None: a factory builds it) and that `factory` (the encoder's `_target_`)."""

    hub_id: str | None
    name_or_path: str | None
    factory: str

    @property
    def source(self) -> str:
        """The model's name or path, or the factory that built it."""
        return self.name_or_path if self.name_or_path is not None else self.factory


@dataclass(frozen=True)
class RunDescription:
    """What a run trained, as its setup tables show it: `name`, the `base_model`, the `data` of the
    top-level groups and each objective's (`objectives`, empty for a one-objective run) with the
    `objective_sampling`, the optimizer, schedule, precision and seed, the `lora` settings, whether it
    is a smoke run (`fast_dev_run`), and whether its `forgetting_guard` and `health_probe` are on."""

    name: str
    base_model: BaseModel
    data: DataDescription
    objectives: dict[str, DataDescription]
    objective_sampling: str | None
    learning_rate: Any
    warmup_ratio: Any
    schedule: str
    weight_decay: Any
    precision: Any
    seed: int
    lora: LoraSettings | None
    fast_dev_run: bool
    forgetting_guard: bool
    health_probe: bool

    @classmethod
    def from_config(cls, cfg: DictConfig) -> "RunDescription":
        """The description of the composed config `cfg`."""
        names = objective_names(cfg)
        weights, score_weights = objective_weights(cfg, "weight"), objective_weights(cfg, "score_weight")
        model = ModelSettings.from_config(cfg.model)
        return cls(
            name=cfg.name,
            base_model=BaseModel(model.hub_id, model.name_or_path, str(cfg.model.encoder._target_)),
            data=DataDescription.from_config(cfg),
            objectives={
                name: DataDescription.from_config(
                    objective_view(cfg, name), weights[name], score_weights[name]
                )
                for name in names
            },
            objective_sampling=cfg.get("objective_sampling"),
            learning_rate=cfg.optimizer.lr,
            warmup_ratio=cfg.scheduler.warmup_ratio,
            schedule=cfg.scheduler.name,
            weight_decay=cfg.optimizer.weight_decay,
            precision=cfg.trainer.precision,
            seed=cfg.seed,
            lora=model.lora,
            fast_dev_run=bool(cfg.trainer.get("fast_dev_run")),
            forgetting_guard=cfg.evaluation.get("forgetting_guard") is not None,
            health_probe=cfg.evaluation.get("health") is not None,
        )


@dataclass(frozen=True)
class ModelCardSettings:
    """The model card's `model_name` (None: sentence-transformers' default), `language` (a code or a
    list of them) and `license` (None: not set)."""

    model_name: str | None = None
    language: str | list[str] | None = None
    license: str | None = None


@dataclass(frozen=True)
class ReportSettings:
    """Where and what a run writes: its `output_dir` (`paths.output_dir`), whether the model is saved
    (`save_model`, merging LoRA adapters first with `merge_lora`), the `model_card`, the hub upload
    (`hub_push`, `hub_repo_id`, `hub_private`), the checkpoints kept (`keep_checkpoints`), the `run`'s
    description, and the resolved config (`resolved`, as a container, and `resolved_yaml`)."""

    output_dir: Path
    save_model: bool
    merge_lora: bool
    model_card: ModelCardSettings
    hub_push: bool
    hub_repo_id: str | None
    hub_private: bool
    keep_checkpoints: str
    run: RunDescription
    resolved: dict
    resolved_yaml: str

    @classmethod
    def from_config(cls, cfg: DictConfig) -> "ReportSettings":
        """The report settings of the composed config `cfg` (resolved now)."""
        description = RunDescription.from_config(cfg)
        return cls(
            output_dir=Path(cfg.paths.output_dir),
            save_model=bool(cfg.save_model),
            merge_lora=description.lora is not None and description.lora.merge_on_save,
            model_card=ModelCardSettings(**OmegaConf.to_container(cfg.model_card, resolve=True)),
            hub_push=bool(cfg.hub.push),
            hub_repo_id=cfg.hub.repo_id,
            hub_private=bool(cfg.hub.private),
            keep_checkpoints=cfg.checkpoints.keep,
            run=description,
            resolved=OmegaConf.to_container(cfg, resolve=True),
            resolved_yaml=OmegaConf.to_yaml(cfg, resolve=True),
        )
