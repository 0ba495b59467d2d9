"""`report.md`: what was trained (or evaluated without training), how long, and the results with their plots."""

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from embedding_trainer.data.sources import is_hub_id
from embedding_trainer.evaluation.base import DimensionMetrics
from embedding_trainer.evaluation.significance import Significance
from embedding_trainer.models.lora import ParameterCount, trained_parameters
from embedding_trainer.reporting.plots import plot_matryoshka_curve, plot_training_curves
from embedding_trainer.reporting.results import evaluated_table, primary_table
from embedding_trainer.reporting.trained import TrainedLength
from embedding_trainer.settings.reporting import DataDescription, RunDescription

TRAINING_CAPTION = "Training loss, learning rate and validation score (val/score) against optimizer step"
# How a data location is written: as given (`str`, the local report) or by `data_name` (the model card).
Naming = Callable[[str], str]


def data_name(location: str) -> str:
    """A data location as it reads anywhere: a hub dataset id as it is, a local file or folder by its
    own name (`/.../data/squad_pairs` -> `squad_pairs`), never the absolute path."""
    return location if is_hub_id(location) else Path(location).name


def describe_run(
    run: RunDescription, trained: TrainedLength, parameters: ParameterCount | None = None, name: Naming = str
) -> list[list[str]]:
    """Rows of (setting, value) naming what `run` trained: model (by its hub id when it has one),
    data (training, evaluation, and the data that chose the checkpoint; each location written by
    `name`), loss, modifier (a row per objective when there are several), knobs, the epochs and steps
    `trained`, and the trained parameters (`parameters`: trainable of total; the LoRA settings)."""
    chosen_and_scored = [
        ["evaluation data", evaluation_source(run, name)],
        ["checkpoint chosen on", validation_source(run, name)],
    ]
    if run.objectives:
        trained_on = [
            [f"objective {objective}", describe_objective(data, name)]
            for objective, data in run.objectives.items()
        ]
        trained_on += [["objective sampling", run.objective_sampling], *chosen_and_scored]
    else:
        data = run.data
        trained_on = [
            ["dataset type", data.dataset_type],
            ["training data", training_source(data, name)],
            *chosen_and_scored,
            ["loss", data.loss],
            ["modifier", data.modifier or "none"],
            ["matryoshka dims", str(data.matryoshka_dims)],
            ["batch size", str(data.batch_size)],
        ]
    rows = [
        ["base model", run.base_model.hub_id or run.base_model.source],
        *trained_on,
        ["learning rate", str(run.learning_rate)],
        *trained.rows(),
        ["warmup ratio, schedule", f"{run.warmup_ratio}, {run.schedule}"],
        ["weight decay", str(run.weight_decay)],
        ["precision", str(run.precision)],
        ["seed", str(run.seed)],
    ]
    what_trained = trained_parameters(parameters, run.lora)
    if what_trained:
        rows.append(["trained parameters", what_trained])
    return rows


def training_source(data: DataDescription, name: Naming = str) -> str:
    """Where the training rows come from (with their split)."""
    return name(str(data.train_path)) + (f" (split {data.train_split})" if data.train_split else "")


def describe_objective(data: DataDescription, name: Naming = str) -> str:
    """One objective in a line: dataset type, training data, loss in its modifier, batch size, weights."""
    loss = data.loss + (f" in {data.modifier} {data.matryoshka_dims}" if data.modifier else "")
    return (
        f"{data.dataset_type} from {training_source(data, name)}; {loss}; batch size {data.batch_size}; "
        f"loss weight {data.weight}, score weight {data.score_weight}"
    )


def settings_table(rows: list[list[str]]) -> str:
    """Markdown table of (setting, value) rows."""
    return "\n".join(["| setting | value |", "|---|---|", *(f"| {key} | {value} |" for key, value in rows)])


def smoke_run_note(run: RunDescription) -> str | None:
    """The line that says `run` is a smoke run (`fast_dev_run`: trainer.fast_dev_run, as debug=fdr sets)
    and which guards it skips (its `forgetting_guard` or `health_probe` that is off); None for a real run."""
    if not run.fast_dev_run:
        return None
    skipped = [
        f"{what} (evaluation.{key}=null)"
        for key, what, on in (
            ("forgetting_guard", "the forgetting guard", run.forgetting_guard),
            ("health", "the embedding-health probe", run.health_probe),
        )
        if not on
    ]
    return (
        "debug=fdr: a smoke run (trainer.fast_dev_run): one training batch and one evaluation on a few rows, "
        "which checks that the configuration runs end to end; its numbers are no result"
        + (f"; skipped: {', '.join(skipped)}" if skipped else "")
        + "."
    )


def summary_sections(
    run: RunDescription,
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
        settings_table(describe_run(run, trained, parameters)),
        "",
        f"## {metric} by dimension",
        "",
        primary_table(metric, baseline, finetuned, significance),
    ]


def write_run_report(
    output_dir: Path,
    run: RunDescription,
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
    """Write `report.md` of `run` and its PNG plots (`plots/matryoshka.png`, `plots/training.png`) to
    `output_dir`. `trained`: the epochs and optimizer steps the fit ran (the kept model may be an
    earlier step's: `checks` say which); `history`: (step, loss, lr) rows and `val_scores`: (step,
    val/score) of every evaluation, for the training plot; `data_notes` (lines about the data, such
    as the leakage check) get a section; `significance` adds the change's interval and p-value to the
    results table and the plot; `warnings` (lines) go below the opening line, after the smoke-run
    note of a smoke run; `checks` (Markdown sections) after the results; `parameters` (trainable of
    total) is a row of the settings table."""
    plots = output_dir / "plots"
    plot_matryoshka_curve(baseline, finetuned, metric, plots / "matryoshka.png", significance=significance)
    smoke = smoke_run_note(run)
    notes = ([f"> **Note:** {smoke}"] if smoke else []) + (warnings or [])
    sections = [
        f"# Run report: {run.name}",
        "",
        (
            f"{trained.sentence()} in {seconds / 60:.1f} minutes; evaluated with the {evaluator_name} "
            "evaluator before and after training at every dimension."
        ),
        "",
        *[line for note in notes for line in (note, "")],
        *summary_sections(run, trained, metric, baseline, finetuned, significance, parameters),
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


def evaluated_data(data: DataDescription) -> EvaluatedData | None:
    """The evaluated rows of one objective: the evaluator's own file or folder, else the eval data,
    else the part of the training data data.test_size holds out; None: no eval rows."""
    if data.evaluator_path:
        return EvaluatedData(str(data.evaluator_path), data.evaluator_split)
    if data.eval_path is not None:
        return EvaluatedData(str(data.eval_path), data.eval_split)
    return None if data.test_size is None else EvaluatedData(str(data.train_path), None, held_out=True)


def evaluation_source(run: RunDescription, name: Naming = str) -> str:
    """Where `run`'s evaluated rows came from (`data_evaluation_source`; each objective's, when there
    are several)."""
    if run.objectives:
        return "; ".join(
            f"{objective}: {data_evaluation_source(data, name)}" for objective, data in run.objectives.items()
        )
    return data_evaluation_source(run.data, name)


def data_evaluation_source(data: DataDescription, name: Naming = str) -> str:
    """Where one objective's evaluated rows came from (`evaluated_data`, the location written by
    `name`), or none."""
    evaluated = evaluated_data(data)
    if evaluated is None:
        return "none"
    if evaluated.held_out:
        return f"{name(evaluated.path)} (data.test_size={data.test_size} held out)"
    return name(evaluated.path) + (f" (split {evaluated.split})" if evaluated.split else "")


def evaluation_dataset_id(run: RunDescription) -> str:
    """The evaluated data as a dataset id for the model card's metadata: its hub id or file or folder
    name, with its split (`squad_pairs-test`); objectives' joined by `+`."""
    return (
        "+".join(map(data_dataset_id, run.objectives.values()))
        if run.objectives
        else data_dataset_id(run.data)
    )


def data_dataset_id(data: DataDescription) -> str:
    """One objective's evaluated data as a dataset id (see `evaluation_dataset_id`)."""
    evaluated = evaluated_data(data)
    if evaluated is None:
        return "none"
    return (
        data_name(evaluated.path)
        + (f"-{evaluated.split}" if evaluated.split else "")
        + ("-held-out" if evaluated.held_out else "")
    )


def validation_source(run: RunDescription, name: Naming = str) -> str:
    """Where the rows that chose `run`'s checkpoint came from (`data_validation_source`; each
    objective's, when there are several)."""
    if run.objectives:
        return "; ".join(
            f"{objective}: {data_validation_source(data, name)}" for objective, data in run.objectives.items()
        )
    return data_validation_source(run.data, name)


def data_validation_source(data: DataDescription, name: Naming = str) -> str:
    """Where the rows that chose the checkpoint came from for one objective: the validation data, the
    training queries held out for it, or (with neither) the evaluation data; locations written by `name`."""
    if data.validation_path is not None or data.validation_split is not None:  # given: validation_size unused
        path = data.validation_path if data.validation_path is not None else data.eval_path
        return f"{name(str(path))} (split {data.validation_split or 'dev'})"
    if data.validation_size is not None:
        return f"{name(str(data.train_path))} (data.validation_size={data.validation_size} training queries held out)"
    return data_evaluation_source(data, name)


def write_evaluation_report(
    output_dir: Path,
    run: RunDescription,
    evaluator_name: str,
    metric: str,
    evaluated: DimensionMetrics,
    dims: list[int],
    seconds: float,
    data_notes: list[str] | None = None,
) -> Path:
    """Write `report.md` of `run`, an evaluation without training at `dims`, and its plot
    `plots/matryoshka.png`, to `output_dir`: the model and data evaluated, `metric` per dimension, and
    `data_notes` (lines)."""
    plot_matryoshka_curve(None, evaluated, metric, output_dir / "plots" / "matryoshka.png", label="evaluated")
    setup = [
        ["model", run.base_model.source],
        ["dataset type", run.data.dataset_type],
        ["evaluation data", evaluation_source(run)],
        ["dimensions", str(list(dims))],
    ]
    intro = (
        f"Evaluated {run.base_model.source} without training, with the {evaluator_name} evaluator at every "
        f"dimension, in {seconds / 60:.1f} minutes."
    )
    sections = [
        f"# Evaluation report: {run.name}",
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
