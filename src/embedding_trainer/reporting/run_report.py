"""`report.md`: what was trained (or evaluated without training), how long, and the results with their plots."""

from pathlib import Path

from omegaconf import DictConfig

from embedding_trainer.evaluation.base import DimensionMetrics
from embedding_trainer.evaluation.significance import Significance
from embedding_trainer.lora import ParameterCount, trained_parameters
from embedding_trainer.losses import class_name
from embedding_trainer.models import hub_id
from embedding_trainer.objectives import objective_names, objective_view, objective_weights
from embedding_trainer.reporting.plots import plot_matryoshka_curve, plot_training_curves
from embedding_trainer.reporting.results import evaluated_table, primary_table


def base_model_name(cfg: DictConfig) -> str:
    """What the run started from: the model's name or path, or the factory that built it."""
    return str(cfg.model.encoder.get("name_or_path", cfg.model.encoder._target_))


def describe_run(cfg: DictConfig, parameters: ParameterCount | None = None) -> list[list[str]]:
    """Rows of (setting, value) naming what a run trained: model (by its hub id when it has one),
    data, loss, modifier (a row per objective when there are several), knobs, and the trained
    parameters (`parameters`: trainable of total; the LoRA settings)."""
    names = objective_names(cfg)
    if names:
        weights, score_weights = objective_weights(cfg, "weight"), objective_weights(cfg, "score_weight")
        trained_on = [
            [
                f"objective {name}",
                describe_objective(objective_view(cfg, name), weights[name], score_weights[name]),
            ]
            for name in names
        ]
        trained_on.append(["objective sampling", cfg.objective_sampling])
    else:
        trained_on = [
            ["dataset type", cfg.dataset_type.name],
            ["training data", training_source(cfg)],
            ["evaluation data", evaluation_source(cfg)],
            ["loss", class_name(cfg.loss._target_)],
            ["modifier", class_name(cfg.modifier.get("_target_")) or "none"],
            ["matryoshka dims", str(list(cfg.matryoshka_dims))],
            ["batch size", str(cfg.data.batch_size)],
        ]
    rows = [
        ["base model", hub_id(cfg.model) or base_model_name(cfg)],
        *trained_on,
        ["learning rate", str(cfg.optimizer.lr)],
        ["epochs / max steps", f"{cfg.trainer.max_epochs} / {cfg.trainer.max_steps}"],
        ["warmup ratio, schedule", f"{cfg.scheduler.warmup_ratio}, {cfg.scheduler.name}"],
        ["weight decay", str(cfg.optimizer.weight_decay)],
        ["precision", str(cfg.trainer.precision)],
        ["seed", str(cfg.seed)],
    ]
    trained = trained_parameters(cfg.model, parameters)
    if trained:
        rows.append(["trained parameters", trained])
    return rows


def training_source(cfg: DictConfig) -> str:
    """Where the training rows come from (with their split)."""
    return f"{cfg.data.train_path}" + (f" (split {cfg.data.train_split})" if cfg.data.train_split else "")


def describe_objective(view: DictConfig, weight: float, score_weight: float) -> str:
    """One objective in a line: dataset type, training data, loss in its modifier, batch size, weights."""
    modifier = class_name(view.modifier.get("_target_"))
    loss = class_name(view.loss._target_) + (
        f" in {modifier} {list(view.matryoshka_dims)}" if modifier else ""
    )
    return (
        f"{view.dataset_type.name} from {training_source(view)}; {loss}; batch size {view.data.batch_size}; "
        f"loss weight {weight}, score weight {score_weight}"
    )


def settings_table(rows: list[list[str]]) -> str:
    """Markdown table of (setting, value) rows."""
    return "\n".join(["| setting | value |", "|---|---|", *(f"| {key} | {value} |" for key, value in rows)])


def summary_sections(
    cfg: DictConfig,
    setup_heading: str,
    metric_heading: str,
    metric: str,
    baseline: DimensionMetrics | None,
    finetuned: DimensionMetrics,
    significance: Significance | None = None,
    parameters: ParameterCount | None = None,
) -> list[str]:
    """Markdown lines: the run's settings table (with the trainable `parameters`), then the
    per-dimension table of `metric` (with the change's interval and p-value when `significance` is given)."""
    return [
        f"## {setup_heading}",
        "",
        settings_table(describe_run(cfg, parameters)),
        "",
        f"## {metric_heading}",
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
    trained_steps: int,
    history: list[tuple[int, float, float]],
    seconds: float,
    data_notes: list[str] | None = None,
    significance: Significance | None = None,
    warnings: list[str] | None = None,
    checks: list[str] | None = None,
    parameters: ParameterCount | None = None,
) -> Path:
    """Write `report.md` and its PNG plots (`plots/matryoshka.png`, `plots/training.png`) to
    `output_dir`; `trained_steps`: the optimizer steps run (the kept model may be an earlier step's:
    `checks` say which); `data_notes` (lines about the data, such as the leakage check) get a section;
    `significance` adds the change's interval and p-value to the results table; `warnings` (lines)
    go below the opening line, `checks` (Markdown sections) after the results; `parameters` (trainable
    of total) is a row of the settings table."""
    plots = output_dir / "plots"
    plot_matryoshka_curve(baseline, finetuned, metric, plots / "matryoshka.png")
    sections = [
        f"# Run report: {cfg.name}",
        "",
        (
            f"Trained {trained_steps} optimizer steps in {seconds / 60:.1f} minutes; evaluated with the {evaluator_name} "
            "evaluator before and after training at every dimension."
        ),
        "",
        *[line for warning in warnings or [] for line in (warning, "")],
        *summary_sections(
            cfg, "Setup", f"{metric} by dimension", metric, baseline, finetuned, significance, parameters
        ),
        "",
        "![Matryoshka curve](plots/matryoshka.png)",
    ]
    if checks:
        sections += ["", *checks]
    if data_notes:
        sections += ["", "## Data", "", *data_notes]
    if history:
        plot_training_curves(history, plots / "training.png")
        sections += ["", "## Training", "", "![Training loss and learning rate](plots/training.png)"]
    sections += ["", "Every metric of both models: `results.md` and `results.json`."]
    path = output_dir / "report.md"
    path.write_text("\n".join(sections) + "\n", encoding="utf-8")
    return path


def evaluation_source(cfg: DictConfig) -> str:
    """Where the evaluated rows came from: the evaluator's own file or folder, the eval data, the part of
    the training data held out for evaluation, or none (each objective's, when there are several)."""
    names = objective_names(cfg)
    if names:
        return "; ".join(f"{name}: {evaluation_source(objective_view(cfg, name))}" for name in names)
    evaluator = cfg.dataset_type.evaluator
    if evaluator.get("path"):
        return str(evaluator.path) + (f" (split {evaluator.split})" if evaluator.get("split") else "")
    data = cfg.data
    if data.eval_path is None:
        return (
            "none"
            if data.test_size is None
            else f"{data.train_path} (data.test_size={data.test_size} held out)"
        )
    return str(data.eval_path) + (f" (split {data.eval_split})" if data.eval_split else "")


def validation_source(cfg: DictConfig) -> str:
    """Where the rows that chose the checkpoint came from: the validation data, the training
    queries held out for it, or (with neither) the evaluation data (each objective's, when there are several)."""
    names = objective_names(cfg)
    if names:
        return "; ".join(f"{name}: {validation_source(objective_view(cfg, name))}" for name in names)
    data = cfg.data
    if data.validation_size is not None:
        return f"{data.train_path} (data.validation_size={data.validation_size} training queries held out)"
    if data.validation_path is None and data.validation_split is None:
        return evaluation_source(cfg)
    path = data.validation_path if data.validation_path is not None else data.eval_path
    return f"{path} (split {data.validation_split or 'dev'})"


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
