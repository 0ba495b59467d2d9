"""Phase 2 of a run: the evaluations around training. The evaluation callback whose `val/score` picks
the checkpoint, the held-out test that scores the reported table, the forgetting guard, the health probe,
and the embedding cache of the unchanged models' embeddings."""

from dataclasses import dataclass
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig

from embedding_trainer.data import EmbeddingDataModule
from embedding_trainer.data.datamodule import EvalData
from embedding_trainer.data.objectives import ObjectivesDataModule
from embedding_trainer.evaluation import DimensionEvaluator
from embedding_trainer.evaluation.before_after import BeforeAfterEvaluation
from embedding_trainer.evaluation.callback import EvaluationCallback
from embedding_trainer.evaluation.forgetting import GeneralEvaluation, general_evaluation
from embedding_trainer.evaluation.health import EmbeddingHealthCallback, embedding_health
from embedding_trainer.evaluation.objectives import ObjectivesEvaluator
from embedding_trainer.evaluation.selection_score import Objective
from embedding_trainer.phases.data import objective_parts
from embedding_trainer.reporting.run_report import evaluation_source
from embedding_trainer.training.objectives import objective_names, objective_weights
from embedding_trainer.utils.embedding_cache import EmbeddingCache


@dataclass
class Evaluations:
    """A run's evaluations: `evaluation` (its val/score picks the checkpoint), `test` (scores the reported
    table when validation data chose; None: `evaluation` does), `general` (the forgetting guard; None:
    off), `health` (the embedding-health probe; None: off) and `cache` (an unchanged model's embeddings
    of unchanged texts, encoded once: the baselines', a teacher's, a query adapter's frozen model's)."""

    evaluation: EvaluationCallback
    test: BeforeAfterEvaluation | None
    general: GeneralEvaluation | None
    health: EmbeddingHealthCallback | None
    cache: EmbeddingCache

    @property
    def evaluator(self) -> DimensionEvaluator:
        """The evaluator of the evaluation that picks the checkpoint."""
        return self.evaluation.evaluator

    def before_and_after(self) -> list[EvaluationCallback | BeforeAfterEvaluation]:
        """The evaluations that score the model before training and after it (`evaluation`, `test`,
        `general`), those the run has."""
        return [callback for callback in (self.evaluation, self.test, self.general) if callback is not None]

    def diagnostics(self) -> list:
        """The callbacks that follow `evaluation` in the trainer's list: `test`, `general`, `health`."""
        return [callback for callback in (self.test, self.general, self.health) if callback is not None]


def build_evaluations(cfg: DictConfig, datamodule: EmbeddingDataModule | ObjectivesDataModule) -> Evaluations:
    """The run's `Evaluations` of its loaded `datamodule`; with `evaluation.embedding_cache`, the ones
    scoring the model before training read and store its embeddings in the cache."""
    evaluation = build_evaluation(cfg.evaluation, run_evaluator(cfg, datamodule, "selection_data"))
    test = held_out_test(cfg, datamodule)
    general = general_evaluation(cfg, evaluation.evaluator, datamodule.primary.eval_data)
    # Probes the (first objective's) data; after `evaluation` in the callback list: it follows it.
    health = embedding_health(cfg, datamodule.primary, evaluation)
    evaluations = Evaluations(
        evaluation, test, general, health, EmbeddingCache(embeddings_folder(cfg.paths.cache_dir))
    )
    if cfg.evaluation.embedding_cache:
        for before_training in evaluations.before_and_after():
            before_training.baseline_cache = evaluations.cache
    return evaluations


def run_evaluator(
    cfg: DictConfig, datamodule: EmbeddingDataModule | ObjectivesDataModule, data: str
) -> DimensionEvaluator:
    """The run's evaluator of its loaded data module's `data` (`selection_data` or `eval_data`): the one
    `cfg.dataset_type` names, or with several objectives an `ObjectivesEvaluator` of each one's."""
    parts = objective_parts(cfg, datamodule)
    evaluators = [build_evaluator(part_cfg, getattr(part, data)) for part_cfg, part in parts]
    names = objective_names(cfg)
    if not names:
        return evaluators[0]
    return ObjectivesEvaluator(dict(zip(names, evaluators)), objective_weights(cfg, "score_weight"))


def build_evaluator(cfg: DictConfig, eval_data: EvalData) -> DimensionEvaluator:
    """The evaluator `cfg.dataset_type` names, on `eval_data`."""
    return instantiate(cfg.dataset_type.evaluator)(
        eval_data, batch_size=cfg.evaluation.batch_size, show_progress_bar=cfg.evaluation.show_progress_bar
    )


def build_evaluation(evaluation_cfg: DictConfig, evaluator: DimensionEvaluator) -> EvaluationCallback:
    """The evaluation callback of `evaluation_cfg` (the `evaluation` settings) around `evaluator`
    (see `run_evaluator`)."""
    objective = evaluation_cfg.objective
    return EvaluationCallback(
        evaluator,
        list(evaluation_cfg.dims),
        evaluation_cfg.every_n_steps,
        evaluation_cfg.baseline,
        Objective(
            objective.metric or evaluator.primary_metric, tuple(objective.dims) if objective.dims else None
        ),
    )


def held_out_test(
    cfg: DictConfig, datamodule: EmbeddingDataModule | ObjectivesDataModule
) -> BeforeAfterEvaluation | None:
    """When validation data chooses the checkpoint, the evaluation of the eval data (logged as
    `test/...`) before and after training that scores the reported table; None otherwise."""
    if datamodule.validation_data is None:
        return None
    return BeforeAfterEvaluation(
        run_evaluator(cfg, datamodule, "eval_data"),
        list(cfg.evaluation.dims),
        f"the test data ({evaluation_source(cfg)})",
        "test",
        cfg.evaluation.baseline,
    )


def embeddings_folder(cache_dir: str | Path) -> Path:
    """Where the embedding cache of the run's unchanged models lives, in the run's `paths.cache_dir`."""
    return Path(cache_dir) / "embeddings"
