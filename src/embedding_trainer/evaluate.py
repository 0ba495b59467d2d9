"""`evaluate(cfg)`: score a model (a hub id, a folder, an earlier run's `model/`) on the eval data of a
data config at every evaluation dimension, without training (its command line, `python evaluate.py ...`:
`embedding_trainer.cli.evaluate_main`)."""

import json
import time
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from embedding_trainer.data.build import build_datamodule
from embedding_trainer.data.settings import check_data_sources, reads_run_data
from embedding_trainer.evaluation.base import metrics_json, using_cache
from embedding_trainer.evaluation.significance import PER_EXAMPLE_DIR, save_per_example
from embedding_trainer.models.loading import model_loader
from embedding_trainer.phases.evaluation import build_evaluation, build_evaluator, embeddings_folder
from embedding_trainer.phases.fit import build_trainer
from embedding_trainer.phases.report import log_config
from embedding_trainer.reporting.results import write_evaluation_results
from embedding_trainer.reporting.run_report import write_evaluation_report
from embedding_trainer.reporting.wandb_run import log_evaluated_table
from embedding_trainer.runs.lifecycle import RunPlace, tracked_run
from embedding_trainer.runs.provenance import record_provenance
from embedding_trainer.runs.resume import store_run_id
from embedding_trainer.runs.tracking import RunTracker
from embedding_trainer.settings.checks import check_counts, check_required
from embedding_trainer.settings.evaluation_checks import check_evaluation_dims
from embedding_trainer.settings.family import CROSS_ENCODER, model_family
from embedding_trainer.settings.run import RunSettings
from embedding_trainer.utils.embedding_cache import EmbeddingCache
from embedding_trainer.utils.errors import ConfigError
from embedding_trainer.utils.log import get_logger

log = get_logger(__name__)


def evaluate(cfg: DictConfig) -> tuple[dict[str, float], dict]:
    """Evaluate `cfg.model` on the eval rows of `cfg.data` with the evaluator of `cfg.dataset_type`,
    once at every one of `evaluation.dims`, in a run folder claimed and a registry row (task
    `cfg.task_name`, no model path) kept as `train`'s are (see `runs.lifecycle.tracked_run`).

    Writes `results.json` (`evaluator`, `primary_metric`, `model`, `evaluated` {dim: {metric: value}},
    `score` (the `val/score` objective), `provenance`), `results.md`, `report.md` with
    `plots/matryoshka.png`, `per_example/evaluated.npz` (when the evaluator scores per example) and
    `config_resolved.yaml`; logs the config, the `val/...` metrics (at step 0) and the table
    `results/evaluated` to the configured loggers.

    Returns:
        metrics: the flat `val/...` metrics, with `val/score`.
        objects: `model`, `datamodule`, `evaluation` (the callback holding the evaluator),
            `evaluated` (per-dimension metrics), `results` (as in results.json) and `run_id`.
    """
    return tracked_run(RunPlace.from_config(cfg), cfg.task_name, lambda tracker: _evaluate(cfg, tracker))


def check_saved_family(cfg: DictConfig) -> None:
    """ConfigError when an embedding model option (`model=local`, ...) loads a saved cross-encoder folder (its
    config_sentence_transformers.json says `"model_type": "CrossEncoder"`): it would load as an embedding
    model and be scored with the wrong evaluator. Reads one small file; loads nothing."""
    path = OmegaConf.select(cfg, "model.encoder.name_or_path", default=None)
    config = Path(str(path)) / "config_sentence_transformers.json"
    if model_family(cfg.model) == CROSS_ENCODER or path is None or not config.is_file():
        return
    if json.loads(config.read_text(encoding="utf-8")).get("model_type") == "CrossEncoder":
        raise ConfigError(
            f"{path} is a saved cross-encoder, which this model option loads as an embedding model (scored "
            "by the wrong evaluator): evaluate it with its cross-encoder evaluator by model=cross_encoder "
            f"model.encoder.name_or_path={path} model.encoder.max_seq_length=null (null: its saved maximum "
            "length, as it was trained)."
        )


def _evaluate(cfg: DictConfig, tracker: RunTracker) -> tuple[dict[str, float], dict]:
    started = time.time()
    check_required(cfg)
    check_evaluation_dims(cfg)
    check_counts(cfg)
    check_data_sources(cfg, training=False)
    check_saved_family(cfg)
    settings = RunSettings.from_config(cfg)
    scoring, run, output_dir = settings.evaluation, settings.report.run, settings.report.output_dir
    run_model = model_loader(settings.model)  # loaded once, by chunking or below
    datamodule = build_datamodule(cfg, lambda: run_model().tokenizer)
    # Only what is scored: the eval rows (none for an evaluator with a set of its own), and the training rows
    # where they are the k-NN support set and the class names, or hold the eval rows (data.eval_path null).
    datamodule.load_evaluation(reads_run_data(cfg), cfg.dataset_type.get("label_type") == "class")
    evaluation = build_evaluation(scoring, build_evaluator(scoring.evaluator, scoring, datamodule.eval_data))
    evaluator = evaluation.evaluator
    if evaluator.scores_with_loss:
        raise ConfigError(
            f"dataset_type={cfg.dataset_type.name} is scored by the {evaluator.name} classifier that training builds "
            "with the loss, which a saved model does not hold: evaluate on another dataset type, or train with "
            "train.py (its report scores the classifier)."
        )
    loggers = [instantiate(c) for c in cfg.logger.values()]  # not the trainer's: fast_dev_run swaps those out
    trainer = build_trainer(cfg.trainer, [], loggers)  # what provenance records the devices of
    model = run_model().to(trainer.strategy.root_device).eval()
    store_run_id(output_dir, tracker.run_id)  # after the model loads: a rejected run writes nothing
    provenance = record_provenance(output_dir, run, model, datamodule, trainer)

    cache = EmbeddingCache(embeddings_folder(scoring.cache_dir)) if scoring.embedding_cache else None
    with using_cache(evaluator, cache):  # the model does not change: its embeddings are stored
        evaluated = evaluator(model, evaluation.dims)
    metrics = evaluation.flatten(evaluated)
    if evaluator.last_per_example is not None:
        save_per_example(
            output_dir / PER_EXAMPLE_DIR / "evaluated.npz",
            evaluator.last_per_example,
            evaluator.example_ids,
            -1,
        )
    results = {
        "evaluator": evaluator.name,
        "primary_metric": evaluator.primary_metric,
        "model": run.base_model.source,
        "evaluated": metrics_json(evaluated),
        "score": metrics["val/score"],
        "provenance": provenance,
    }
    (output_dir / "config_resolved.yaml").write_text(settings.report.resolved_yaml, encoding="utf-8")
    table = write_evaluation_results(output_dir, results, evaluated)
    report = write_evaluation_report(
        output_dir,
        run,
        evaluator.name,
        evaluator.primary_metric,
        evaluated,
        evaluation.dims,
        time.time() - started,
    )
    log_config(loggers, settings.report.resolved, provenance)
    for logger in loggers:
        logger.log_metrics(metrics, step=0)
    log_evaluated_table(loggers, evaluated)
    for logger in loggers:
        logger.finalize("success")
    log.info(
        f"{results['model']}: {evaluator.name} {evaluator.primary_metric} by dimension:\n{table}\nReport: {report}"
    )
    return metrics, {
        "model": model,
        "datamodule": datamodule,
        "evaluation": evaluation,
        "evaluated": evaluated,
        "results": results,
        "model_path": None,
    }
