"""The README model card written into the saved model folder: sentence-transformers' model card
data as its metadata (what the Hugging Face Hub shows), then the run's own sections."""

from dataclasses import dataclass
from pathlib import Path

from sentence_transformers import SentenceTransformer

from embedding_trainer.evaluation.base import DimensionMetrics
from embedding_trainer.evaluation.significance import Significance
from embedding_trainer.models.cross_encoder import CROSS_ENCODER, family_of
from embedding_trainer.reporting.results import primary_table
from embedding_trainer.reporting.run_report import (
    data_name,
    describe_run,
    evaluation_dataset_id,
    settings_table,
)
from embedding_trainer.reporting.trained import TrainedLength
from embedding_trainer.settings.reporting import BaseModel, ModelCardSettings, ReportSettings, RunDescription

# The task each evaluator's metrics measure, as sentence-transformers' own evaluators name it.
TASKS = {
    "retrieval": "Information Retrieval",
    "similarity": "Semantic Similarity",
    "binary": "Binary Classification",
    "knn": "Classification",
    "softmax": "Classification",
    "triplet": "Triplet",
    "reranking": "Reranking",
    "pair_classification": "Cross Encoder Classification",
    "correlation": "Cross Encoder Correlation",
}


@dataclass(frozen=True)
class CardEvaluation:
    """The run's evaluation in the form sentence-transformers' model card data takes an evaluator in:
    `name` is the evaluated data (its dataset in the hub's evaluation results: `squad_pairs-test` is
    shown as "squad pairs test"), `description` the task, and the metrics it is given are named
    `<metric>_dim<d>`, one per metric and evaluated dimension."""

    name: str
    primary_metric: str
    description: str


def base_model_reference(base: BaseModel) -> str:
    """The `base` model in Markdown: a link to its hub page, else its local folder's name, else its factory."""
    if base.hub_id:
        return f"[`{base.hub_id}`](https://huggingface.co/{base.hub_id})"
    return (
        f"a local model (`{data_name(base.name_or_path)}`)"
        if base.name_or_path
        else f"a model built by `{base.factory}`"
    )


def fill_card_data(
    model: SentenceTransformer,
    settings: ModelCardSettings,
    run: RunDescription,
    evaluator_name: str,
    metric: str,
    finetuned: DimensionMetrics,
) -> None:
    """Set `model.model_card_data` from the `run`, without asking the hub: the base model's hub id,
    the `settings`' (model_card's) `model_name`, `language` and `license`, the tags, and the fine-tuned
    metrics of every dimension (`<metric>_dim<d>`) as its evaluation results on the evaluated data (by
    its hub id or file or folder name: `evaluation_dataset_id`)."""
    card = model.model_card_data
    card.local_files_only = True
    card.generate_widget_examples = False  # no example encodings: the card is data, not a demo
    card.base_model = run.base_model.hub_id
    card.model_name = settings.model_name
    if settings.language:
        card.set_language(settings.language)
    if settings.license:
        card.set_license(settings.license)
    card.add_tags(
        ["embedding-trainer"] if family_of(model) == CROSS_ENCODER else ["embedding-trainer", "matryoshka"]
    )
    task = TASKS.get(evaluator_name, evaluator_name.replace("_", " ").title())
    evaluation = CardEvaluation(evaluation_dataset_id(run), f"{metric}_dim{max(finetuned)}", task)
    card.eval_results_dict = {
        evaluation: {
            f"{name}_dim{dim}": value for dim, values in finetuned.items() for name, value in values.items()
        }
    }


def write_model_card(
    model_dir: Path,
    settings: ReportSettings,
    model: SentenceTransformer,
    evaluator_name: str,
    metric: str,
    baseline: DimensionMetrics | None,
    finetuned: DimensionMetrics,
    provenance: dict,
    trained: TrainedLength,
    significance: Significance | None = None,
) -> Path:
    """Write `README.md` in `model_dir`: the metadata of `model`'s card data (filled by
    `fill_card_data` from `settings.model_card`), what the model was trained from and on (data by hub
    id or file or folder name, never a local path), its hyper-parameters and the epochs and steps it
    `trained`, the data that chose the checkpoint and the data that scored it, the per-dimension metrics
    (with `significance`, the change's interval, p-value and mark, as in results.md:
    `results.primary_table`), how to load it (by `settings.hub_repo_id`, else a placeholder path; at any
    of its dims), and the commit and library versions of the run's `provenance`."""
    run = settings.run
    fill_card_data(model, settings.model_card, run, evaluator_name, metric, finetuned)
    dims = sorted(finetuned, reverse=True)
    base = base_model_reference(run.base_model)
    rows = describe_run(run, trained, name=data_name)
    table = [[key, base if key == "base model" else value] for key, value in rows]
    card = [
        "---",
        model.model_card_data.to_yaml(),
        "---",
        "",
        f"# {run.name}",
        "",
        f"A sentence-transformers model fine-tuned with embedding-trainer from {base}.",
        "",
        "## Training",
        "",
        settings_table(table),
        "",
        f"## Evaluation ({evaluator_name}, {metric})",
        "",
        primary_table(metric, baseline, finetuned, significance),
        "",
        "## Usage",
        "",
        "```python",
        *usage_lines(model, settings.hub_repo_id, dims),
        "```",
        "",
        "## Framework versions",
        "",
        *provenance_lines(provenance),
    ]
    path = model_dir / "README.md"
    path.write_text("\n".join(card) + "\n", encoding="utf-8")
    return path


def usage_lines(model: SentenceTransformer, repo_id: str | None, dims: list[int]) -> list[str]:
    """The usage example: load by hub id `repo_id` (hub.repo_id), else by a placeholder path, encode
    (`encode_lines`), and load truncated to the smallest of `dims` (descending)."""
    model_id = repo_id or "path/to/model"
    where = "" if repo_id else "  # this folder, or its hub id once uploaded"
    if family_of(model) == CROSS_ENCODER:
        return cross_encoder_usage(model_id, where)
    return [
        "from sentence_transformers import SentenceTransformer",
        "",
        f'model = SentenceTransformer("{model_id}"){where}',
        *encode_lines(model),
        f"# Smaller, faster embeddings: truncate to any evaluated dimension ({', '.join(map(str, dims))})",
        f'small = SentenceTransformer("{model_id}", truncate_dim={dims[-1]})',
    ]


def cross_encoder_usage(model_id: str, where: str) -> list[str]:
    """The usage example of a cross-encoder: load it, score pairs and rank passages for a query."""
    query = "How many people live in Berlin?"
    passages = ["Berlin has 3.7 million inhabitants.", "Berlin is known for its museums."]
    return [
        "from sentence_transformers import CrossEncoder",
        "",
        f'model = CrossEncoder("{model_id}"){where}',
        f"scores = model.predict([({query!r}, {passages[0]!r}), ({query!r}, {passages[1]!r})])",
        f"ranked = model.rank({query!r}, {passages!r})  # passages by score, best first",
    ]


def encode_lines(model: SentenceTransformer) -> list[str]:
    """The usage example's encode calls: `encode_query`/`encode_document` when the model has a query or
    document prompt (they prepend it), plain `encode` otherwise."""
    if not any(model.prompts.get(name) for name in ("query", "document")):
        return ['embeddings = model.encode(["An example sentence", "Another one"])']
    shown = ", ".join(
        f"{name}: {model.prompts[name]!r}" for name in ("query", "document") if model.prompts.get(name)
    )
    return [
        f"# The model's prompts ({shown}) are prepended by encode_query and encode_document",
        'query_embeddings = model.encode_query(["What is the capital of France?"])',
        'document_embeddings = model.encode_document(["Paris is the capital of France."])',
    ]


def provenance_lines(provenance: dict) -> list[str]:
    """Markdown list items: the project's commit (or why it is unknown) and the library versions."""
    git = provenance["git"]
    if git["commit"] is None:
        source = f"- git commit: unknown ({git['reason']})"
    else:
        source = f"- git commit: `{git['commit']}`" + (" with uncommitted changes" if git["dirty"] else "")
    return [source, *(f"- {name}: {version}" for name, version in provenance["versions"].items() if version)]
