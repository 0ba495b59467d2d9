"""Phase 4 of a run, its first half: the model (with a query adapter when the run trains one), then the
training rows' steps that need it: hard-negative mining and a teacher's targets."""

from collections.abc import Callable
from dataclasses import dataclass

from omegaconf import DictConfig
from sentence_transformers import SentenceTransformer

from embedding_trainer.adapters.training import adapted_model
from embedding_trainer.data import EmbeddingDataModule
from embedding_trainer.data.hard_negatives import MinedRows
from embedding_trainer.data.objectives import ObjectivesDataModule
from embedding_trainer.data.stages import StageContext, build_stages
from embedding_trainer.data.stages.hard_negatives import HardNegativeMining
from embedding_trainer.phases.evaluation import Evaluations
from embedding_trainer.training.teacher import Teacher, load_teacher, reported_evaluators, target_kind


@dataclass
class TrainingRows:
    """What the model-dependent data steps made: `mined` (the hard-negative mining's rows and scores;
    None: no mining) and `teacher` (the distillation targets' teacher; None: no teacher)."""

    mined: MinedRows | None
    teacher: Teacher | None


def load_model(
    run_model: Callable[[], SentenceTransformer], adapter_cfg: DictConfig | None
) -> SentenceTransformer:
    """The run's model (`run_model()`); with `adapter_cfg` (adapter=linear/two_layer; None: no adapter),
    frozen, with an adapter on its query route that trains."""
    model = run_model()
    if adapter_cfg is not None:
        model = adapted_model(model, adapter_cfg)
    return model


def prepare_training_rows(
    cfg: DictConfig,
    datamodule: EmbeddingDataModule | ObjectivesDataModule,
    model: SentenceTransformer,
    one_objective: bool,
    evaluations: Evaluations,
    global_zero: bool,
) -> TrainingRows:
    """Give `datamodule` the `model`, run the data stages that need it on its training rows (`data.stages`:
    hard-negative mining, with `one_objective` only), write its prepared rows, then set the targets of
    `cfg.teacher` on it (scored on the reported evaluations on rank zero, `global_zero`)."""
    datamodule.use_model(model)
    stages = build_stages(cfg) if one_objective else []
    if stages:
        context = StageContext(
            model=lambda: model, cache=evaluations.cache, cache_dir=cfg.paths.cache_dir, seed=cfg.seed
        )
        datamodule.run_stages(stages, context)
    mined = next((stage.mined for stage in stages if isinstance(stage, HardNegativeMining)), None)
    datamodule.write_prepared()
    teacher = None
    if cfg.teacher is not None:  # a distillation loss: the teacher's outputs, computed once, are the labels
        teacher = run_teacher(
            cfg.teacher,
            target_kind(cfg),
            datamodule,
            evaluations,
            cfg.evaluation,
            global_zero,
        )
        datamodule.targets = teacher.targets
    return TrainingRows(mined, teacher)


def run_teacher(
    teacher_cfg: DictConfig,
    kind: str,
    datamodule: EmbeddingDataModule,
    evaluations: Evaluations,
    evaluation_cfg: DictConfig,
    global_zero: bool,
) -> Teacher:
    """The teacher of `teacher_cfg` with its `kind` targets of `datamodule`'s training rows, scored (on
    rank zero, `global_zero`) on the reported evaluations at `evaluation_cfg.dims`."""
    test, general = evaluations.test, evaluations.general
    return load_teacher(
        teacher_cfg,
        kind,
        datamodule.train_dataset,
        datamodule.inputs or datamodule.text_columns,
        evaluations.cache,
        reported_evaluators(test or evaluations.evaluation, general) if global_zero else {},
        list(evaluation_cfg.dims),
        evaluation_cfg.batch_size,
        evaluation_cfg.show_progress_bar,
    )
