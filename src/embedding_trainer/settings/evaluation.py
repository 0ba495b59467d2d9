"""What a run's evaluations need to know of the composed config (`EvaluationSettings`, read once by
`from_config`): the evaluated dimensions, the selection score (`val/score`), the evaluators, the
forgetting guard, the health probe, the intervals and the embedding cache; and the sweep trial a run
reports its `val/score` to (`SweepTrial`)."""

from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from embedding_trainer.settings.family import CROSS_ENCODER, model_family
from embedding_trainer.settings.renamed_keys import fold_renamed_keys
from embedding_trainer.training.objectives import objective_names, objective_view, objective_weights


@dataclass(frozen=True)
class SelectionScore:
    """`val/score`: `metric` (None: the evaluator's primary metric) averaged over `dims` (None: every
    evaluated dimension)."""

    metric: str | None = None
    dims: tuple[int, ...] | None = None


@dataclass(frozen=True)
class HealthSettings:
    """The embedding-health probe: `probe_size` distinct texts; warns below `min_fraction` of the
    reference's spread or effective rank."""

    probe_size: int
    min_fraction: float


@dataclass(frozen=True)
class Bootstrap:
    """The paired bootstrap of the change's intervals: `resamples` (0: none), `confidence`, `seed`."""

    resamples: int = 10_000
    confidence: float = 0.95
    seed: int = 0


@dataclass(frozen=True)
class SweepTrial:
    """The Optuna trial a sweep's run is (`sweep_trial`): its study's `storage` and `study_name`, and
    its `number`."""

    storage: str
    study_name: str
    number: int


@dataclass(frozen=True)
class EvaluationSettings:
    """A run's evaluations: the `dims` every evaluation reports, `every_n_steps` (None: each epoch's
    end), the `baseline` before training, the `selection_score`, the evaluators' `batch_size` and
    `show_progress_bar`, the intervals' `bootstrap`, the `embedding_cache` (on or off; kept in
    `cache_dir`), the dataset type's `evaluator` config (each objective's in `objective_evaluators`,
    empty for one objective, with their `score_weights`), the `forgetting_guard` evaluator config (None:
    off) and its `forgetting_max_drop` (None when off), the `health` probe (None: off), the `seed` of the probe's
    order, and the `sweep_trial` (None: not in a sweep). Evaluator configs are partial Hydra configs."""

    dims: tuple[int, ...]
    every_n_steps: int | None
    baseline: bool
    selection_score: SelectionScore
    batch_size: int
    show_progress_bar: bool
    bootstrap: Bootstrap
    embedding_cache: bool
    cache_dir: Path
    evaluator: DictConfig
    objective_evaluators: dict[str, DictConfig]
    score_weights: dict[str, float]
    forgetting_guard: DictConfig | None
    forgetting_max_drop: float | None
    health: HealthSettings | None
    seed: int
    sweep_trial: SweepTrial | None

    @property
    def forgetting_label(self) -> str:
        """The forgetting guard's data as the report names it: its file or folder, else its factory."""
        guard = self.forgetting_guard
        return str(OmegaConf.select(guard, "path", default=guard._target_))

    @classmethod
    def from_config(cls, cfg: DictConfig) -> "EvaluationSettings":
        """The evaluation settings of the composed config `cfg` (its renamed keys folded:
        `fold_renamed_keys`)."""
        fold_renamed_keys(cfg)
        evaluation = cfg.evaluation
        guard = evaluation.forgetting_guard
        score, health = evaluation.selection_score, evaluation.health
        evaluator = cfg.dataset_type.evaluator
        if model_family(cfg.model) == CROSS_ENCODER:  # its own evaluator; the guards encode embeddings
            evaluator, guard, health = cfg.dataset_type.reranker_evaluator, None, None
        return cls(
            dims=tuple(evaluation.dims),
            every_n_steps=evaluation.every_n_steps,
            baseline=evaluation.baseline,
            selection_score=SelectionScore(score.metric, tuple(score.dims) if score.dims else None),
            batch_size=evaluation.batch_size,
            show_progress_bar=evaluation.show_progress_bar,
            bootstrap=Bootstrap(**OmegaConf.to_container(evaluation.bootstrap, resolve=True)),
            embedding_cache=bool(evaluation.embedding_cache),
            cache_dir=Path(cfg.paths.cache_dir),
            evaluator=evaluator,
            objective_evaluators={
                name: objective_view(cfg, name).dataset_type.evaluator for name in objective_names(cfg)
            },
            score_weights=objective_weights(cfg, "score_weight"),
            forgetting_guard=guard,
            forgetting_max_drop=None if guard is None else float(evaluation.forgetting_max_drop),
            health=None if health is None else HealthSettings(health.probe_size, float(health.min_fraction)),
            seed=cfg.seed,
            sweep_trial=sweep_trial(cfg.sweep_trial),
        )


def sweep_trial(block: DictConfig | None) -> SweepTrial | None:
    """The `sweep_trial` block the sweeper sets (`{storage, study_name, number}`) as a `SweepTrial`;
    None outside a sweep."""
    if not block:
        return None
    return SweepTrial(str(block.storage), str(block.study_name), int(block.number))
