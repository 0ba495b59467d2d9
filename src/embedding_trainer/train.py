"""`train(cfg)`: the whole job, read top to bottom as its phases (`embedding_trainer.phases`): settings
checked, data loaded, evaluations, trainer, model and loss, fit, the kept model chosen and scored, its
report and folder written. The run's lifecycle around it (`tracked_run`, `run_command`):
`embedding_trainer.runs.lifecycle`."""

import os
import time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from omegaconf import DictConfig

from embedding_trainer.adapters.training import adapter_settings
from embedding_trainer.data.build import build_datamodule
from embedding_trainer.models.loading import model_loader
from embedding_trainer.phases.choose import choose_model, score_chosen
from embedding_trainer.phases.data import check_settings, objective_parts, prepare_data
from embedding_trainer.phases.evaluation import build_evaluations
from embedding_trainer.phases.fit import build_training, fit
from embedding_trainer.phases.loss import build_module
from embedding_trainer.phases.model import ModelStages, load_model, prepare_training_rows
from embedding_trainer.phases.report import log_config, report_and_save
from embedding_trainer.runs.lifecycle import RunPlace, tracked_run
from embedding_trainer.runs.provenance import record_provenance
from embedding_trainer.runs.resume import store_run_id
from embedding_trainer.runs.tracking import RunTracker
from embedding_trainer.settings.run import RunSettings


def train(cfg: DictConfig) -> tuple[dict[str, float], dict]:
    """Run one training job described by the composed config (see `tracked_run`).

    Returns:
        metrics: the fine-tuned model's flat `val/...` metrics (with `val/score`).
        objects: the built pieces: `model`, `module`, `datamodule`, `trainer`, `evaluation`
            (the callback, holding `baseline` and `history`), `finetuned` (per-dimension metrics),
            `results` (their JSON form, with the run's `provenance`, None on ranks but zero, as in
            results.json and the registry row) and `run_id` (the registry row).
    """
    return tracked_run(RunPlace.from_config(cfg), cfg.name, lambda tracker: _train(cfg, tracker))


def _train(cfg: DictConfig, tracker: RunTracker) -> tuple[dict[str, float], dict]:
    started = time.time()
    check_settings(cfg)
    settings = RunSettings.from_config(cfg)
    output_dir = settings.report.output_dir
    run_model = model_loader(settings.model)  # loaded once, by chunking or by the model phase
    datamodule = build_datamodule(cfg, lambda: run_model().tokenizer)  # the data edge
    data = prepare_data(datamodule, objective_parts(cfg, datamodule), run_model)
    evaluations = build_evaluations(settings.evaluation, settings.report.run, datamodule)
    training = build_training(settings.training, evaluations, data.parts, tracker)
    trainer = training.trainer
    store_run_id(output_dir, tracker.run_id)  # after the checks: a rejected run writes nothing

    # adapter=linear/two_layer: the model frozen, an adapter on its query route trains
    model = load_model(data.run_model, adapter_settings(cfg))
    provenance = (
        record_provenance(output_dir, settings.report.run, model, datamodule, trainer)
        if trainer.is_global_zero
        else None
    )
    model_stages = ModelStages.from_config(cfg, len(data.parts) == 1)
    rows = prepare_training_rows(model_stages, datamodule, model, evaluations, trainer.is_global_zero)
    built = build_module(
        settings.training,
        settings.model.lora,
        model,
        datamodule,
        data.parts,
        evaluations,
        training.world_size,
    )
    log_config(trainer.loggers, settings.report.resolved, provenance)

    fit(training, built.module, datamodule, built.ckpt_path, output_dir)

    chosen = choose_model(
        trainer,
        built.module,
        evaluations.evaluation,
        settings.training.max_epochs,
        settings.training.min_steps,
    )
    metrics = chosen.metrics
    results = model_path = scores = None
    if trainer.is_global_zero:  # per-example scores, the held-out test and the guards live on rank zero only
        scores = score_chosen(settings, evaluations, chosen.step, model, trainer)
        metrics.update(scores.final_metrics)
        results, model_path = report_and_save(
            settings.report,
            started,
            model,
            datamodule,
            evaluations,
            training,
            rows,
            built.parameters,
            chosen,
            scores,
            provenance,
        )
    return metrics, {
        "model": model,
        "module": built.module,
        "datamodule": datamodule,
        "trainer": trainer,
        "evaluation": evaluations.evaluation,
        "test": evaluations.test,
        "finetuned": scores.reported.finetuned if scores else chosen.selected,
        "results": results,
        "model_path": str(model_path) if model_path else None,
    }
