"""Phase 4 of a run, its first half: the model (with a query adapter when the run trains one), then the
data stages that need it (`data.stages`: hard-negative mining, a teacher's targets)."""

from collections.abc import Callable
from dataclasses import dataclass

from omegaconf import DictConfig
from sentence_transformers import SentenceTransformer

from embedding_trainer.adapters.training import AdapterSettings, adapted_model
from embedding_trainer.data import EmbeddingDataModule
from embedding_trainer.data.hard_negatives import MinedRows
from embedding_trainer.data.objectives import ObjectivesDataModule
from embedding_trainer.data.stages import MODEL_SLOTS, DataStage, StageContext, build_stages
from embedding_trainer.data.stages.hard_negatives import HardNegativeMining
from embedding_trainer.data.stages.teacher import TeacherStage
from embedding_trainer.phases.evaluation import Evaluations
from embedding_trainer.training.teacher import Teacher, reported_evaluators


@dataclass
class TrainingRows:
    """What the model-dependent data steps made: `mined` (the hard-negative mining's rows and scores;
    None: no mining) and `teacher` (the distillation targets' teacher; None: no teacher)."""

    mined: MinedRows | None
    teacher: Teacher | None


def load_model(
    run_model: Callable[[], SentenceTransformer], adapter: AdapterSettings | None
) -> SentenceTransformer:
    """The run's model (`run_model()`); with `adapter` (adapter=linear/two_layer; None: no adapter),
    frozen, with an adapter on its query route that trains."""
    model = run_model()
    if adapter is not None:
        model = adapted_model(model, adapter)
    return model


@dataclass(frozen=True)
class ModelStages:
    """The data stages that need the model (`data.stages`, `MODEL_SLOTS`: hard-negative mining, a
    teacher's targets; none when `stages` is empty), and the `cache_dir` and `seed` they run with."""

    stages: list[DataStage]
    cache_dir: str
    seed: int

    @classmethod
    def from_config(cls, cfg: DictConfig, one_objective: bool) -> "ModelStages":
        """The stages `cfg` uses that need the model, built by their `from_config` (`one_objective` only)."""
        return cls(build_stages(cfg, MODEL_SLOTS) if one_objective else [], cfg.paths.cache_dir, cfg.seed)


def prepare_training_rows(
    model_stages: ModelStages,
    datamodule: EmbeddingDataModule | ObjectivesDataModule,
    model: SentenceTransformer,
    evaluations: Evaluations,
    global_zero: bool,
) -> TrainingRows:
    """Give `datamodule` the `model`, run the data stages that need it on its training rows (`model_stages`:
    hard-negative mining, then a teacher's targets, scored on the reported evaluations on rank zero,
    `global_zero`), then write its prepared rows."""
    datamodule.use_model(model)
    stages = model_stages.stages
    if stages:
        datamodule.run_stages(stages, stage_context(model_stages, model, evaluations, global_zero))
    datamodule.write_prepared()
    mined = next((stage.mined for stage in stages if isinstance(stage, HardNegativeMining)), None)
    teacher = next((stage.teacher for stage in stages if isinstance(stage, TeacherStage)), None)
    return TrainingRows(mined, teacher)


def stage_context(
    model_stages: ModelStages, model: SentenceTransformer, evaluations: Evaluations, global_zero: bool
) -> StageContext:
    """What the data stages may use: the `model`, the embedding cache, the stages' cache folder and seed, the
    tokenizer and the reported evaluations (`reported_evaluators`; none on ranks but zero, `global_zero`)."""
    reported = evaluations.test or evaluations.evaluation
    return StageContext(
        model=lambda: model,
        cache=evaluations.cache,
        cache_dir=model_stages.cache_dir,
        seed=model_stages.seed,
        tokenizer=lambda: model.tokenizer,
        evaluators=reported_evaluators(reported, evaluations.general) if global_zero else {},
    )
