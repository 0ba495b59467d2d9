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
from embedding_trainer.reporting.run_report import evaluation_source
from embedding_trainer.settings.evaluation import EvaluationSettings
from embedding_trainer.settings.reporting import RunDescription
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


def build_evaluations(
    settings: EvaluationSettings,
    run: RunDescription,
    datamodule: EmbeddingDataModule | ObjectivesDataModule,
) -> Evaluations:
    """The `Evaluations` of `run` on its loaded `datamodule`, with the evaluation `settings`; with
    `settings.embedding_cache`, the ones scoring the model before training read and store its
    embeddings in the cache."""
    cache = EmbeddingCache(embeddings_folder(settings.cache_dir))
    baseline_cache = cache if settings.embedding_cache else None
    evaluation = build_evaluation(
        settings, run_evaluator(settings, datamodule, "selection_data"), baseline_cache
    )
    test = held_out_test(settings, run, datamodule, baseline_cache)
    general = general_evaluation(settings, evaluation.evaluator, datamodule.primary.eval_data, baseline_cache)
    # Probes the (first objective's) data; after `evaluation` in the callback list: it follows it.
    health = embedding_health(
        settings.health, list(settings.dims), settings.seed, datamodule.primary, evaluation
    )
    return Evaluations(evaluation, test, general, health, cache)


def run_evaluator(
    settings: EvaluationSettings, datamodule: EmbeddingDataModule | ObjectivesDataModule, data: str
) -> DimensionEvaluator:
    """The run's evaluator of its loaded data module's `data` (`selection_data` or `eval_data`): the one
    of the dataset type's `settings.evaluator`, or with several objectives an `ObjectivesEvaluator` of
    each one's."""
    if not settings.objective_evaluators:
        return build_evaluator(settings.evaluator, settings, getattr(datamodule, data))
    return ObjectivesEvaluator(
        {
            name: build_evaluator(evaluator, settings, getattr(datamodule.datamodules[name], data))
            for name, evaluator in settings.objective_evaluators.items()
        },
        settings.score_weights,
    )


def build_evaluator(
    evaluator: DictConfig, settings: EvaluationSettings, eval_data: EvalData
) -> DimensionEvaluator:
    """The evaluator of the partial config `evaluator` (a dataset type's), on `eval_data`, with the
    batch size and progress bar of `settings`."""
    return instantiate(evaluator)(
        eval_data, batch_size=settings.batch_size, show_progress_bar=settings.show_progress_bar
    )


def build_evaluation(
    settings: EvaluationSettings, evaluator: DimensionEvaluator, baseline_cache: EmbeddingCache | None = None
) -> EvaluationCallback:
    """The evaluation callback of the evaluation `settings` around `evaluator` (see `run_evaluator`):
    its `val/score` is the selection score; the baseline encodes through `baseline_cache` when given."""
    score = settings.selection_score
    return EvaluationCallback(
        evaluator,
        list(settings.dims),
        settings.every_n_steps,
        settings.baseline,
        Objective(score.metric or evaluator.primary_metric, score.dims),
        baseline_cache,
    )


def held_out_test(
    settings: EvaluationSettings,
    run: RunDescription,
    datamodule: EmbeddingDataModule | ObjectivesDataModule,
    baseline_cache: EmbeddingCache | None = None,
) -> BeforeAfterEvaluation | None:
    """When validation data chooses the checkpoint, the evaluation of `run`'s eval data (logged as
    `test/...`) before and after training that scores the reported table (its baseline encoding through
    `baseline_cache` when given); None otherwise."""
    if datamodule.validation_data is None:
        return None
    return BeforeAfterEvaluation(
        run_evaluator(settings, datamodule, "eval_data"),
        list(settings.dims),
        f"the test data ({evaluation_source(run)})",
        "test",
        settings.baseline,
        baseline_cache,
    )


def embeddings_folder(cache_dir: str | Path) -> Path:
    """Where the embedding cache of the run's unchanged models lives, in the run's `paths.cache_dir`."""
    return Path(cache_dir) / "embeddings"
