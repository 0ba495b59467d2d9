"""`train(cfg)`: the whole job (validate, load data, load model, evaluate, train, evaluate, save),
and `run_command`, which runs a job for a command line (the entry points: `embedding_trainer.cli`)."""

import functools
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytorch_lightning as pl
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only
from sentence_transformers import SentenceTransformer

from embedding_trainer.adapters.training import adapted_model, adapter_kind, adapter_training
from embedding_trainer.data import EmbeddingDataModule
from embedding_trainer.data.build import build_datamodule
from embedding_trainer.data.datamodule import EvalData
from embedding_trainer.data.hard_negatives import MinedRows, hard_negative_settings, mine_for_run
from embedding_trainer.data.objectives import ObjectivesDataModule
from embedding_trainer.evaluation import DimensionEvaluator, DimensionMetrics
from embedding_trainer.evaluation.base import PerExample
from embedding_trainer.evaluation.before_after import BeforeAfterEvaluation
from embedding_trainer.evaluation.callback import EvaluationCallback
from embedding_trainer.evaluation.forgetting import general_evaluation
from embedding_trainer.evaluation.health import embedding_health
from embedding_trainer.evaluation.objectives import ObjectivesEvaluator
from embedding_trainer.evaluation.selection import Selection
from embedding_trainer.evaluation.selection_score import Objective
from embedding_trainer.evaluation.significance import Significance, record_significance
from embedding_trainer.models.loading import model_loader
from embedding_trainer.models.lora import (
    ParameterCount,
    build_loss_with_lora,
    merge_lora,
    merges_on_save,
    trained_parameters,
)
from embedding_trainer.reporting.guards import guard_sections, guard_warnings
from embedding_trainer.reporting.history import TrainingHistory, validation_scores
from embedding_trainer.reporting.hub import push_to_hub
from embedding_trainer.reporting.model_card import write_model_card
from embedding_trainer.reporting.objectives import objective_results, objective_sections
from embedding_trainer.reporting.plots import plot_mined_scores
from embedding_trainer.reporting.results import results_payload, write_results
from embedding_trainer.reporting.run_report import (
    evaluation_source,
    smoke_run_note,
    validation_source,
    write_run_report,
)
from embedding_trainer.reporting.teacher import teacher_section
from embedding_trainer.reporting.trained import TrainedLength
from embedding_trainer.reporting.wandb_run import finish_wandb, log_results_table
from embedding_trainer.runs.checkpoints import keep_checkpoints
from embedding_trainer.runs.hydra_job import in_multirun
from embedding_trainer.runs.preemption import (
    PreemptionCallback,
    RunPreempted,
    requeue_after,
    stopping_on_signals,
)
from embedding_trainer.runs.provenance import record_provenance
from embedding_trainer.runs.rank_launch import ranks_run_this_job
from embedding_trainer.runs.resume import (
    RandomStateCallback,
    resume_checkpoint,
    store_run_id,
)
from embedding_trainer.runs.run_folder import claim_run_folder
from embedding_trainer.runs.tracking import RegistryProgressCallback, RunTracker
from embedding_trainer.settings.checks import check_checkpoint_fits, validate_config
from embedding_trainer.settings.resolvers import register_resolvers
from embedding_trainer.sweeps.pruning import pruning_callbacks
from embedding_trainer.training.batch_negatives import InBatchNegativesCallback
from embedding_trainer.training.early_stopping import EarlyStopping
from embedding_trainer.training.losses import build_loss
from embedding_trainer.training.module import EmbeddingModule
from embedding_trainer.training.objectives import (
    WeightedObjectiveLoss,
    objective_names,
    objective_view,
    objective_weights,
)
from embedding_trainer.training.regularizers import regularized
from embedding_trainer.training.relevance_mask import with_relevance_mask
from embedding_trainer.training.step_plan import (
    TrainingPlan,
    check_in_batch_negatives,
    check_steps,
    train_min_steps,
)
from embedding_trainer.training.teacher import load_teacher, reported_evaluators, reported_scores, target_kind
from embedding_trainer.utils.embedding_cache import EmbeddingCache
from embedding_trainer.utils.errors import ConfigError, DataError, ModelLoadError, ModelPushError
from embedding_trainer.utils.log import get_logger
from embedding_trainer.utils.warnings_filter import silence_unactionable

log = get_logger(__name__)
register_resolvers()
silence_unactionable()

def train(cfg: DictConfig) -> tuple[dict[str, float], dict]:
    """Run one training job described by the composed config (see `tracked_run`).

    Returns:
        metrics: the fine-tuned model's flat `val/...` metrics (with `val/score`).
        objects: the built pieces: `model`, `module`, `datamodule`, `trainer`, `evaluation`
            (the callback, holding `baseline` and `history`), `finetuned` (per-dimension metrics),
            `results` (their JSON form, with the run's `provenance`, None on ranks but zero, as in
            results.json and the registry row) and `run_id` (the registry row).
    """
    return tracked_run(cfg, cfg.name, _train)


def tracked_run(
    cfg: DictConfig,
    task: str,
    job: Callable[[DictConfig, RunTracker], tuple[dict[str, float], dict]],
) -> tuple[dict[str, float], dict]:
    """Run `job(cfg, tracker)` in its own output folder (`paths.output_dir`), claimed for this run
    (refused when another run holds it, or a finished run is there and `overwrite` is off), and
    recorded in the run registry as `task` (its id: `runs.tracking.run_id_for`, the folder's name):
    `running`, then `success` with the job's `objects["results"]` and `objects["model_path"]`, or
    `failed` with the error, which is raised again. A ConfigError or DataError that leaves the folder
    as the start made it removes the folder, if this start created it (its row keeps no folder).
    Returns the job's (metrics, objects), objects with `run_id` added."""
    output_dir = str(cfg.paths.output_dir)
    tracker = RunTracker(cfg.registry.path, task, output_dir)
    claim = None
    if rank_zero_only.rank == 0:  # DDP ranks 1.. run in rank zero's claimed folder
        claim = claim_run_folder(output_dir, bool(cfg.get("overwrite", False)), tracker.run_id)
    try:
        if claim is not None and claim.previous is not None:
            tracker.moved(str(claim.folder), str(claim.previous))
        tracker.start(cfg, output_dir)
        try:
            with stopping_on_signals():
                metrics, objects = job(cfg, tracker)
        except BaseException as error:
            tracker.fail(error)
            finish_wandb(failed=True)
            if claim is not None and isinstance(error, (ConfigError, DataError)) and claim.discard_start():
                tracker.folder_removed()
            raise
        tracker.succeed(objects["results"], objects["model_path"])
        finish_wandb(failed=False)
    finally:
        if claim is not None:
            claim.release()
    return metrics, {**objects, "run_id": tracker.run_id}


def _train(cfg: DictConfig, tracker: RunTracker) -> tuple[dict[str, float], dict]:
    started = time.time()
    validate_config(cfg)
    if smoke := smoke_run_note(cfg):  # debug=fdr
        log.info(smoke)
    output_dir = Path(cfg.paths.output_dir)
    pl.seed_everything(cfg.seed, workers=True)

    run_model = model_loader(cfg.model)  # loaded once, by chunking or below
    datamodule = build_datamodule(cfg, lambda: run_model().tokenizer)
    datamodule.load()
    # Its val/score picks the checkpoint.
    evaluation = build_evaluation(cfg, run_evaluator(cfg, datamodule, "selection_data"))
    evaluator = evaluation.evaluator
    test = held_out_test(cfg, datamodule)  # scores the reported table when validation data chose (None: same)
    # The forgetting guard (None: off).
    general = general_evaluation(cfg, evaluator, datamodule.primary.eval_data)
    # Probes the (first objective's) data; after `evaluation` in the callback list: it follows it.
    health = embedding_health(cfg, datamodule.primary, evaluation)
    diagnostics = [callback for callback in (test, general, health) if callback is not None]
    # An unchanged model's embeddings of unchanged texts, encoded once: the baselines' (unless
    # evaluation.embedding_cache=false), a teacher's and a query adapter's frozen model's.
    cache = EmbeddingCache(embeddings_folder(cfg))
    if cfg.evaluation.embedding_cache:
        for before_training in (evaluation, test, general):
            if before_training is not None:
                before_training.baseline_cache = cache
    parts = objective_parts(cfg, datamodule)
    if len(parts) == 1 and cfg.loss.get("in_batch_negatives"):
        diagnostics.append(InBatchNegativesCallback())
    history = TrainingHistory()
    configured = [instantiate(c) for c in cfg.callbacks.values()]
    # A partial callback config (callbacks=early_stopping) is completed with the evaluation it follows.
    following = [c(evaluation=evaluation) for c in configured if isinstance(c, functools.partial)]
    stopping = next((c for c in following if isinstance(c, EarlyStopping)), None)
    callbacks = [c for c in configured if not isinstance(c, functools.partial)] + [
        evaluation,
        *following,
        *diagnostics,
        history,
        RegistryProgressCallback(tracker, cfg.registry.progress_every_n_steps),
        *pruning_callbacks(cfg.sweep_trial, evaluation),
        RandomStateCallback(),
        PreemptionCallback(output_dir),
    ]
    loggers = [instantiate(c) for c in cfg.logger.values()]
    trainer = build_trainer(cfg, callbacks, loggers)
    world_size = trainer.num_nodes * trainer.num_devices  # known before the processes start
    for part_cfg, part in parts:
        plan = TrainingPlan.of(trainer, len(part.train_dataset), part_cfg.data.batch_size, world_size)
        check_steps(plan)
        check_in_batch_negatives(plan, part_cfg.loss, part.inputs or part.text_columns)
    if len(parts) == 1:  # several objectives train their epochs of the combined batches
        train_min_steps(trainer, plan, cfg.data.get("min_steps"))
    store_run_id(output_dir, tracker.run_id)  # after the checks: a rejected run writes nothing

    model = run_model()
    if adapter_kind(cfg):  # adapter=linear/two_layer: the model frozen, an adapter on its query route trains
        model = adapted_model(model, cfg.adapter)
    provenance = (
        record_provenance(output_dir, cfg, model, datamodule, trainer) if trainer.is_global_zero else None
    )
    datamodule.use_model(model)
    mined = None
    settings = hard_negative_settings(cfg.data) if len(parts) == 1 else None
    if settings is not None:
        mined = mine_for_run(
            datamodule.train_dataset,
            model,
            settings,
            cfg.data.encoding,
            cfg.paths.cache_dir,
            cfg.seed,
            cfg.data.document_title,
        )
        datamodule.replace_training_rows(mined.rows)
    datamodule.write_prepared()
    teacher = None
    if cfg.teacher is not None:  # a distillation loss: the teacher's outputs, computed once, are the labels
        teacher = load_teacher(
            cfg.teacher,
            target_kind(cfg),
            datamodule.train_dataset,
            datamodule.inputs or datamodule.text_columns,
            cache,
            reported_evaluators(test or evaluation, general) if trainer.is_global_zero else {},
            list(cfg.evaluation.dims),
            cfg.evaluation.batch_size,
            cfg.evaluation.show_progress_bar,
        )
        datamodule.targets = teacher.targets
    if adapter_kind(cfg):  # trains on the frozen embeddings of the training texts, computed once here
        loss = adapter_training(
            model,
            datamodule,
            cache,
            [callback.evaluator for callback in (evaluation, test, general) if callback is not None],
            cfg.loss.scale,
            list(cfg.matryoshka_dims) if cfg.modifier.get("_target_") else None,
            cfg.adapter.negatives,
            cfg.evaluation.batch_size,
            cfg.evaluation.show_progress_bar,
        )
    else:
        loss = build_loss_with_lora(  # model.lora: adapters added to `model` (null: none)
            model,
            cfg.model,
            any(part_cfg.loss.get("tie_encoder_decoder") for part_cfg, _ in parts),
            cfg.seed,
            lambda: run_loss(cfg, parts, model, world_size),
        )
    module = EmbeddingModule(model, loss, instantiate(cfg.optimizer), instantiate(cfg.scheduler))
    parameters = ParameterCount.of(module)  # the optimizer takes the trainable ones
    log.info(f"Trainable parameters (model and loss): {trained_parameters(cfg.model, parameters)}")
    ckpt_path = resume_checkpoint(output_dir, cfg.ckpt_path)
    if ckpt_path is not None:
        check_checkpoint_fits(ckpt_path, module)
    for scorer in (evaluator, test.evaluator if test else None):
        if scorer is not None:
            scorer.loss = module.loss
    log_config(trainer.loggers, cfg, provenance)

    with ranks_run_this_job(output_dir, world_size):
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)

    step, selected = select_final_model(trainer, module, evaluation)
    trained = TrainedLength.of(trainer, cfg.trainer.max_epochs, cfg.data.get("min_steps"), step)
    # No rank reads a checkpoint after this: rank zero may remove them once the model is saved.
    trainer.strategy.barrier("final_model_selected")
    metrics = evaluation.flatten(selected)
    results = model_path = reported = None
    if trainer.is_global_zero:  # per-example scores, the held-out test and the guards live on rank zero only
        reported = report_scores(evaluation, test, step, model, trainer.strategy.root_device)
        selection = Selection(
            selected_on=validation_source(cfg),
            scored_on=evaluation_source(cfg),
            step=step,
            candidates=len(evaluation.history),
            sweep=cfg.sweep_trial is not None,
        )
        log.info(selection.describe())
        final_metrics = test.flatten(reported.finetuned) if test else {}
        general_json = health_json = None
        if general is not None:
            final_metrics.update(general.flatten(general.finish(model, trainer.strategy.root_device)))
            general_json = general.to_json()
        if health is not None:
            health_json = health.to_json(step)
        log_final_metrics(trainer.loggers, final_metrics, step)
        metrics.update(final_metrics)
        significance = objectives = None
        if isinstance(evaluator, ObjectivesEvaluator):  # one table per objective; `score` mixes units
            objectives = objective_results(
                output_dir,
                evaluator,
                reported.baseline,
                reported.finetuned,
                reported.baseline_examples,
                reported.finetuned_examples,
                step,
                cfg.evaluation.bootstrap,
            )
        else:
            significance = record_significance(
                output_dir,
                evaluator,
                reported.baseline_examples,
                reported.finetuned_examples,
                step,
                **cfg.evaluation.bootstrap,
            )
        results = results_payload(
            evaluator.name,
            evaluator.primary_metric,
            reported.baseline,
            reported.finetuned,
            step,
            significance,
        )
        results.update(
            provenance=provenance,
            general=general_json,
            health=health_json,
            selection=selection.to_json(),
            training=trained.to_json(),
            early_stopping=stopping.to_json(step) if stopping else None,
            teacher=teacher.to_json(reported_scores(evaluator, reported, general)) if teacher else None,
            objectives={result.name: result.to_json() for result in objectives} if objectives else None,
        )
        model_path = finish_run(cfg, output_dir, model, reported, evaluator, results, significance)
        selection_warning = [f"> **Warning:** {selection.warning()}"] if selection.warning() else []
        write_run_report(
            output_dir,
            cfg,
            evaluator.name,
            evaluator.primary_metric,
            reported.baseline,
            reported.finetuned,
            trained,
            history.rows,
            validation_scores(evaluation),
            time.time() - started,
            data_notes(datamodule, mined, output_dir),
            significance,
            selection_warning + guard_warnings(results["general"], results["health"]),
            [
                selection.describe(),
                "",
                *([stopping.describe(step), ""] if stopping else []),
                *guard_sections(results["general"], results["health"]),
                *teacher_section(results["teacher"]),
                *objective_sections(objectives or []),
            ],
            parameters,
        )
        log_results_table(
            trainer.loggers, evaluator.primary_metric, reported.baseline, reported.finetuned, significance
        )
        if cfg.hub.push and model_path:
            url = push_to_hub(model, model_path, cfg.hub.repo_id, cfg.hub.private)
            log.info(f"Pushed the model to {url}")
        # Last: a run that failed before this point keeps every checkpoint, to resume from.
        keep_checkpoints(output_dir, cfg.checkpoints.keep, model_path)
    return metrics, {
        "model": model,
        "module": module,
        "datamodule": datamodule,
        "trainer": trainer,
        "evaluation": evaluation,
        "test": test,
        "finetuned": reported.finetuned if reported else selected,
        "results": results,
        "model_path": str(model_path) if model_path else None,
    }


def objective_parts(
    cfg: DictConfig, datamodule: EmbeddingDataModule | ObjectivesDataModule
) -> list[tuple[DictConfig, EmbeddingDataModule]]:
    """Each objective's config view and data module (one objective: `cfg` and `datamodule`)."""
    names = objective_names(cfg)
    if not names:
        return [(cfg, datamodule)]
    return [(objective_view(cfg, name), datamodule.datamodules[name]) for name in names]


def run_loss(
    cfg: DictConfig,
    parts: list[tuple[DictConfig, EmbeddingDataModule]],
    model: SentenceTransformer,
    world_size: int,
) -> torch.nn.Module:
    """The loss of each objective's config (`parts`, from `objective_parts`) around `model`, with its
    modifier and regularizer (regularizer=variance: a penalty added; none: the loss itself); with
    several objectives, a `WeightedObjectiveLoss` of them."""
    losses = [
        regularized(
            with_relevance_mask(  # known relevance is never an in-batch negative (loss.mask_known_relevance)
                build_loss(part_cfg.loss, part_cfg.modifier, model, world_size, len(part.class_names or [])),
                part_cfg,
                part,
            ),
            part_cfg,
            model,
        )
        for part_cfg, part in parts
    ]
    names = objective_names(cfg)
    if not names:
        return losses[0]
    return WeightedObjectiveLoss(dict(zip(names, losses)), objective_weights(cfg, "weight"))


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


def build_evaluation(cfg: DictConfig, evaluator: DimensionEvaluator) -> EvaluationCallback:
    """The evaluation callback of `cfg.evaluation` around `evaluator` (see `run_evaluator`)."""
    objective = cfg.evaluation.objective
    return EvaluationCallback(
        evaluator,
        list(cfg.evaluation.dims),
        cfg.evaluation.every_n_steps,
        cfg.evaluation.baseline,
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


@dataclass
class ReportedScores:
    """What the reported before/after table shows, with the per-example scores behind it."""

    baseline: DimensionMetrics | None
    finetuned: DimensionMetrics
    baseline_examples: PerExample | None
    finetuned_examples: PerExample | None


def report_scores(
    evaluation: EvaluationCallback,
    test: BeforeAfterEvaluation | None,
    step: int,
    model: SentenceTransformer,
    device: torch.device,
) -> ReportedScores:
    """The reported scores of the chosen model (in `model`, chosen at `step`): the held-out `test`
    evaluation of it when there is one (evaluated now, on `device`), else the evaluation that chose it."""
    if test is None:
        return ReportedScores(
            evaluation.baseline,
            evaluation.history[step],
            evaluation.baseline_examples,
            evaluation.examples.get(step),
        )
    test.finish(model, device)
    return ReportedScores(test.baseline, test.finetuned, test.baseline_examples, test.finetuned_examples)


def log_final_metrics(loggers: list, metrics: dict[str, float], step: int) -> None:
    """Log `metrics` at `step` after training, and flush every logger (it closed its file at the fit's end)."""
    if not metrics:
        return
    for logger in loggers:
        logger.log_metrics(metrics, step=step)
        logger.save()


def embeddings_folder(cfg: DictConfig) -> Path:
    """Where the embedding cache of the run's unchanged models lives."""
    return Path(cfg.paths.cache_dir) / "embeddings"


def log_config(loggers: list, cfg: DictConfig, provenance: dict | None) -> None:
    """Log the resolved config, with the run's `provenance`, as every logger's hyper-parameters."""
    for logger in loggers:
        logger.log_hyperparams({**OmegaConf.to_container(cfg, resolve=True), "provenance": provenance})


def data_notes(datamodule: EmbeddingDataModule, mined: MinedRows | None, output_dir: Path) -> list[str]:
    """The report's lines about the data: the leakage check, and the hard-negative mining with its
    score histogram (`plots/hard_negatives.png`) and the miner's own summary."""
    notes = [datamodule.leakage.describe()]
    if mined is not None:
        plot_mined_scores(mined.scores, output_dir / "plots" / "hard_negatives.png")
        notes += [
            "",
            mined.describe(),
            "",
            "![Miner scores of positives and negatives](plots/hard_negatives.png)",
            "",
            "```",
            mined.summary,
            "```",
        ]
    return notes


def build_trainer(cfg: DictConfig, callbacks: list[pl.Callback], loggers: list) -> pl.Trainer:
    """The Lightning Trainer of `cfg.trainer`; its own refusals (unknown accelerator or precision,
    bad counts) become ConfigError naming the trainer settings."""
    try:
        return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    except InstantiationException as error:
        cause = error.__cause__ or error
        raise ConfigError(
            f"The Lightning Trainer refused the trainer settings: {cause}. Fix the trainer.* value it names "
            "(see conf/trainer/default.yaml for the defaults)."
        ) from None


def select_final_model(
    trainer: pl.Trainer, module: EmbeddingModule, evaluation: EvaluationCallback
) -> tuple[int, DimensionMetrics]:
    """Load the best checkpoint's weights into `module` when it is not the last evaluated state;
    return its step and metrics (from the evaluation history, so nothing is re-encoded)."""
    last_step, last_metrics = evaluation.latest()
    checkpoint = trainer.checkpoint_callback
    best_path = getattr(checkpoint, "best_model_path", "") if checkpoint else ""
    if not best_path:
        return last_step, last_metrics
    state = torch.load(best_path, map_location="cpu", weights_only=False)
    best_step = state["global_step"]
    if best_step == last_step or best_step not in evaluation.history:
        return last_step, last_metrics
    log.info(f"Restoring the best checkpoint (step {best_step}) from {best_path}")
    module.load_state_dict(state["state_dict"])
    return best_step, evaluation.history[best_step]


def finish_run(
    cfg: DictConfig,
    output_dir: Path,
    model: SentenceTransformer,
    reported: ReportedScores,
    evaluator: DimensionEvaluator,
    results: dict,
    significance: Significance | None = None,
) -> Path | None:
    """Save the model with its model card and the resolved config, write `results` (the payload,
    with the run's provenance) and the tables, and print the comparison table. Returns the model
    folder (None when save_model is off). With `model.lora.merge_on_save`, `model`'s adapters are
    merged into its weights (in place) before it is saved."""
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "config_resolved.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True), encoding="utf-8")
    model_path = None
    if cfg.save_model:
        model_path = output_dir / "model"
        if merges_on_save(cfg.model):  # model.lora.merge_on_save: a plain folder (the model in memory too)
            merge_lora(model)
        model.save(str(model_path), create_model_card=False)
        write_model_card(
            model_path,
            cfg,
            model,
            evaluator.name,
            evaluator.primary_metric,
            reported.baseline,
            reported.finetuned,
            results["provenance"],
            TrainedLength(**results["training"]),
            significance,
        )
        log.info(f"Saved the fine-tuned model to {model_path} (load it with SentenceTransformer(path))")
    table = write_results(output_dir, results, reported.baseline, reported.finetuned, significance)
    log.info(
        f"{evaluator.name} {evaluator.primary_metric} by dimension:\n{table}\nReport: {output_dir / 'report.md'}"
    )
    return model_path


def run_command(
    job: Callable[[DictConfig], tuple[dict[str, float], dict]], cfg: DictConfig
) -> dict[str, float]:
    """The metrics of `job(cfg)` run from a command line: a ConfigError, DataError, ModelLoadError or
    ModelPushError is logged and exits with status 2 (raised in a multi-run), a preempted run exits
    with its `RunPreempted.exit_code`."""
    try:
        metrics, _ = job(cfg)
    except (ConfigError, DataError, ModelLoadError, ModelPushError) as error:
        log.error(f"{type(error).__name__}: {error}")
        if in_multirun():
            raise  # one failed job of a multi-run or sweep (Hydra records it), not the end of the others
        sys.exit(2)
    except RunPreempted as preempted:
        log.warning(str(preempted))
        requeue_after(preempted)  # last: SLURM answers the requeue with a SIGTERM
        sys.exit(preempted.exit_code)
    return metrics
