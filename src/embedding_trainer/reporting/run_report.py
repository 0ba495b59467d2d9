"""`report.md`: what was trained (or evaluated without training), how long, and the results with their plots."""

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from omegaconf import DictConfig

from embedding_trainer.data.sources import is_hub_id
from embedding_trainer.evaluation.base import DimensionMetrics
from embedding_trainer.evaluation.significance import Significance
from embedding_trainer.models.loading import hub_id
from embedding_trainer.models.lora import ParameterCount, trained_parameters
from embedding_trainer.reporting.plots import plot_matryoshka_curve, plot_training_curves
from embedding_trainer.reporting.results import evaluated_table, primary_table
from embedding_trainer.reporting.trained import TrainedLength
from embedding_trainer.training.losses import class_name
from embedding_trainer.training.objectives import objective_names, objective_view, objective_weights

TRAINING_CAPTION = "Training loss, learning rate and validation score (val/score) against optimizer step"
# How a data location is written: as given (`str`, the local report) or by `data_name` (the model card).
Naming = Callable[[str], str]


def data_name(location: str) -> str:
    """A data location as it reads anywhere: a hub dataset id as it is, a local file or folder by its
    own name (`/.../data/squad_pairs` -> `squad_pairs`), never the absolute path."""
    return location if is_hub_id(location) else Path(location).name


def base_model_name(cfg: DictConfig) -> str:
    """What the run started from: the model's name or path, or the factory that built it."""
    return str(cfg.model.encoder.get("name_or_path", cfg.model.encoder._target_))


def describe_run(
    cfg: DictConfig, trained: TrainedLength, parameters: ParameterCount | None = None, name: Naming = str
) -> list[list[str]]:
    """Rows of (setting, value) naming what a run trained: model (by its hub id when it has one),
    data (training, evaluation, and the data that chose the checkpoint; each location written by
    `name`), loss, modifier (a row per objective when there are several), knobs, the epochs and steps
    `trained`, and the trained parameters (`parameters`: trainable of total; the LoRA settings)."""
    names = objective_names(cfg)
    chosen_and_scored = [
        ["evaluation data", evaluation_source(cfg, name)],
        ["checkpoint chosen on", validation_source(cfg, name)],
    ]
    if names:
        weights, score_weights = objective_weights(cfg, "weight"), objective_weights(cfg, "score_weight")
        trained_on = [
            [
                f"objective {objective}",
                describe_objective(
                    objective_view(cfg, objective), weights[objective], score_weights[objective], name
                ),
            ]
            for objective in names
        ]
        trained_on += [["objective sampling", cfg.objective_sampling], *chosen_and_scored]
    else:
        trained_on = [
            ["dataset type", cfg.dataset_type.name],
            ["training data", training_source(cfg, name)],
            *chosen_and_scored,
            ["loss", class_name(cfg.loss._target_)],
            ["modifier", class_name(cfg.modifier.get("_target_")) or "none"],
            ["matryoshka dims", str(list(cfg.matryoshka_dims))],
            ["batch size", str(cfg.data.batch_size)],
        ]
    rows = [
        ["base model", hub_id(cfg.model) or base_model_name(cfg)],
        *trained_on,
        ["learning rate", str(cfg.optimizer.lr)],
        *trained.rows(),
        ["warmup ratio, schedule", f"{cfg.scheduler.warmup_ratio}, {cfg.scheduler.name}"],
        ["weight decay", str(cfg.optimizer.weight_decay)],
        ["precision", str(cfg.trainer.precision)],
        ["seed", str(cfg.seed)],
    ]
    trained_params = trained_parameters(cfg.model, parameters)
    if trained_params:
        rows.append(["trained parameters", trained_params])
    return rows


def training_source(cfg: DictConfig, name: Naming = str) -> str:
    """Where the training rows come from (with their split)."""
    return name(str(cfg.data.train_path)) + (
        f" (split {cfg.data.train_split})" if cfg.data.train_split else ""
    )


def describe_objective(view: DictConfig, weight: float, score_weight: float, name: Naming = str) -> str:
    """One objective in a line: dataset type, training data, loss in its modifier, batch size, weights."""
    modifier = class_name(view.modifier.get("_target_"))
    loss = class_name(view.loss._target_) + (
        f" in {modifier} {list(view.matryoshka_dims)}" if modifier else ""
    )
    return (
        f"{view.dataset_type.name} from {training_source(view, name)}; {loss}; batch size {view.data.batch_size}; "
        f"loss weight {weight}, score weight {score_weight}"
    )


def settings_table(rows: list[list[str]]) -> str:
    """Markdown table of (setting, value) rows."""
    return "\n".join(["| setting | value |", "|---|---|", *(f"| {key} | {value} |" for key, value in rows)])


def smoke_run_note(cfg: DictConfig) -> str | None:
    """The line that says a run is a smoke run (trainer.fast_dev_run, as debug=fdr sets) and which
    guards it skips; None for a real run."""
    if not cfg.trainer.get("fast_dev_run"):
        return None
    skipped = [
        f"{what} (evaluation.{key}=null)"
        for key, what in (("general", "the forgetting guard"), ("health", "the embedding-health probe"))
        if cfg.evaluation.get(key) is None
    ]
    return (
        "debug=fdr: a smoke run (trainer.fast_dev_run): one training batch and one evaluation on a few rows, "
        "which checks that the configuration runs end to end; its numbers are no result"
        + (f"; skipped: {', '.join(skipped)}" if skipped else "")
        + "."
    )


def summary_sections(
    cfg: DictConfig,
    trained: TrainedLength,
    metric: str,
    baseline: DimensionMetrics | None,
    finetuned: DimensionMetrics,
    significance: Significance | None = None,
    parameters: ParameterCount | None = None,
) -> list[str]:
    """Markdown lines: the run's settings table (with what it `trained` and the trainable
    `parameters`), then the per-dimension table of `metric` (with the change's interval and p-value
    when `significance` is given)."""
    return [
        "## Setup",
        "",
        settings_table(describe_run(cfg, trained, parameters)),
        "",
        f"## {metric} by dimension",
        "",
        primary_table(metric, baseline, finetuned, significance),
    ]


def write_run_report(
    output_dir: Path,
    cfg: DictConfig,
    evaluator_name: str,
    metric: str,
    baseline: DimensionMetrics | None,
    finetuned: DimensionMetrics,
    trained: TrainedLength,
    history: list[tuple[int, float, float]],
    val_scores: list[tuple[int, float]],
    seconds: float,
    data_notes: list[str] | None = None,
    significance: Significance | None = None,
    warnings: list[str] | None = None,
    checks: list[str] | None = None,
    parameters: ParameterCount | None = None,
) -> Path:
    """Write `report.md` and its PNG plots (`plots/matryoshka.png`, `plots/training.png`) to
    `output_dir`. `trained`: the epochs and optimizer steps the fit ran (the kept model may be an
    earlier step's: `checks` say which); `history`: (step, loss, lr) rows and `val_scores`: (step,
    val/score) of every evaluation, for the training plot; `data_notes` (lines about the data, such
    as the leakage check) get a section; `significance` adds the change's interval and p-value to the
    results table and the plot; `warnings` (lines) go below the opening line, after the smoke-run
    note of a smoke run; `checks` (Markdown sections) after the results; `parameters` (trainable of
    total) is a row of the settings table."""
    plots = output_dir / "plots"
    plot_matryoshka_curve(baseline, finetuned, metric, plots / "matryoshka.png", significance=significance)
    smoke = smoke_run_note(cfg)
    notes = ([f"> **Note:** {smoke}"] if smoke else []) + (warnings or [])
    sections = [
        f"# Run report: {cfg.name}",
        "",
        (
            f"{trained.sentence()} in {seconds / 60:.1f} minutes; evaluated with the {evaluator_name} "
            "evaluator before and after training at every dimension."
        ),
        "",
        *[line for note in notes for line in (note, "")],
        *summary_sections(cfg, trained, metric, baseline, finetuned, significance, parameters),
        "",
        "![Matryoshka curve](plots/matryoshka.png)",
        *(["", matryoshka_caption(significance)] if baseline else []),
    ]
    if checks:
        sections += ["", *checks]
    if data_notes:
        sections += ["", "## Data", "", *data_notes]
    if history:
        plot_training_curves(history, val_scores, trained.kept_step, plots / "training.png")
        sections += ["", "## Training", "", f"![{TRAINING_CAPTION}](plots/training.png)"]
    sections += ["", "Every metric of both models: `results.md` and `results.json`."]
    path = output_dir / "report.md"
    path.write_text("\n".join(sections) + "\n", encoding="utf-8")
    return path


def matryoshka_caption(significance: Significance | None) -> str:
    """What the two panels of `plots/matryoshka.png` show (with a baseline), and what its error bars are."""
    bars = (
        f"its {significance.confidence:.0%} paired bootstrap interval as error bars (where the metric is a "
        "mean over examples)"
        if significance is not None and significance.changes
        else "no interval (see the table's legend)"
    )
    return (
        "Top: the metric of the baseline and the fine-tuned model at each dimension. Bottom: the change "
        f"(fine-tuned minus baseline), with {bars}."
    )


class EvaluatedData(NamedTuple):
    """Where one objective's evaluated rows come from: `path` (a file, folder or hub id) and its
    `split`, or the training data with `held_out` rows (data.test_size)."""

    path: str
    split: str | None
    held_out: bool = False


def evaluated_data(cfg: DictConfig) -> EvaluatedData | None:
    """The evaluated rows of one objective: the evaluator's own file or folder, else the eval data,
    else the part of the training data data.test_size holds out; None: no eval rows."""
    evaluator = cfg.dataset_type.evaluator
    if evaluator.get("path"):
        return EvaluatedData(str(evaluator.path), evaluator.get("split"))
    data = cfg.data
    if data.eval_path is not None:
        return EvaluatedData(str(data.eval_path), data.eval_split)
    return None if data.test_size is None else EvaluatedData(str(data.train_path), None, held_out=True)


def evaluation_source(cfg: DictConfig, name: Naming = str) -> str:
    """Where the evaluated rows came from (`evaluated_data`, the location written by `name`), or none
    (each objective's, when there are several)."""
    names = objective_names(cfg)
    if names:
        return "; ".join(
            f"{objective}: {evaluation_source(objective_view(cfg, objective), name)}" for objective in names
        )
    data = evaluated_data(cfg)
    if data is None:
        return "none"
    if data.held_out:
        return f"{name(data.path)} (data.test_size={cfg.data.test_size} held out)"
    return name(data.path) + (f" (split {data.split})" if data.split else "")


def evaluation_dataset_id(cfg: DictConfig) -> str:
    """The evaluated data as a dataset id for the model card's metadata: its hub id or file or folder
    name, with its split (`squad_pairs-test`); objectives' joined by `+`."""
    names = objective_names(cfg)
    if names:
        return "+".join(evaluation_dataset_id(objective_view(cfg, objective)) for objective in names)
    data = evaluated_data(cfg)
    if data is None:
        return "none"
    return (
        data_name(data.path)
        + (f"-{data.split}" if data.split else "")
        + ("-held-out" if data.held_out else "")
    )


def validation_source(cfg: DictConfig, name: Naming = str) -> str:
    """Where the rows that chose the checkpoint came from: the validation data, the training
    queries held out for it, or (with neither) the evaluation data (each objective's, when there are
    several); locations written by `name`."""
    names = objective_names(cfg)
    if names:
        return "; ".join(
            f"{objective}: {validation_source(objective_view(cfg, objective), name)}" for objective in names
        )
    data = cfg.data
    if data.validation_path is not None or data.validation_split is not None:  # given: validation_size unused
        path = data.validation_path if data.validation_path is not None else data.eval_path
        return f"{name(str(path))} (split {data.validation_split or 'dev'})"
    if data.validation_size is not None:
        return f"{name(str(data.train_path))} (data.validation_size={data.validation_size} training queries held out)"
    return evaluation_source(cfg, name)


def write_evaluation_report(
    output_dir: Path,
    cfg: DictConfig,
    evaluator_name: str,
    metric: str,
    evaluated: DimensionMetrics,
    seconds: float,
    data_notes: list[str] | None = None,
) -> Path:
    """Write `report.md` of an evaluation without training, and its plot `plots/matryoshka.png`, to
    `output_dir`: the model and data evaluated, `metric` per dimension, and `data_notes` (lines)."""
    plot_matryoshka_curve(None, evaluated, metric, output_dir / "plots" / "matryoshka.png", label="evaluated")
    setup = [
        ["model", base_model_name(cfg)],
        ["dataset type", cfg.dataset_type.name],
        ["evaluation data", evaluation_source(cfg)],
        ["dimensions", str(list(cfg.evaluation.dims))],
    ]
    intro = (
        f"Evaluated {base_model_name(cfg)} without training, with the {evaluator_name} evaluator at every "
        f"dimension, in {seconds / 60:.1f} minutes."
    )
    sections = [
        f"# Evaluation report: {cfg.name}",
        "",
        intro,
        "",
        "## Setup",
        "",
        settings_table(setup),
        "",
        f"## {metric} by dimension",
        "",
        evaluated_table(metric, evaluated),
        "",
        "![Matryoshka curve](plots/matryoshka.png)",
    ]
    if data_notes:
        sections += ["", "## Data", "", *data_notes]
    sections += ["", "Every metric: `results.md` and `results.json`."]
    path = output_dir / "report.md"
    path.write_text("\n".join(sections) + "\n", encoding="utf-8")
    return path
