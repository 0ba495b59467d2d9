"""The README model card written into the saved model folder: sentence-transformers' model card
data as its metadata (what the Hugging Face Hub shows), then the run's own sections."""

from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from sentence_transformers import SentenceTransformer

from embedding_trainer.evaluation.base import DimensionMetrics
from embedding_trainer.evaluation.significance import Significance
from embedding_trainer.models import hub_id
from embedding_trainer.reporting.results import primary_table
from embedding_trainer.reporting.run_report import describe_run, settings_table

# The task each evaluator's metrics measure, as sentence-transformers' own evaluators name it.
TASKS = {
    "retrieval": "Information Retrieval",
    "similarity": "Semantic Similarity",
    "binary": "Binary Classification",
    "knn": "Classification",
    "softmax": "Classification",
    "triplet": "Triplet",
}


@dataclass(frozen=True)
class DimensionEvaluation:
    """One evaluated dimension in the form sentence-transformers' model card data takes an evaluator
    in: `name` (`dim_<n>`, its dataset in the hub's evaluation results), `description` (the task)."""

    name: str
    primary_metric: str
    description: str


def base_model_reference(cfg: DictConfig) -> str:
    """The base model in Markdown: a link to its hub page, else its local folder, else its factory."""
    base = hub_id(cfg.model)
    if base:
        return f"[`{base}`](https://huggingface.co/{base})"
    name = cfg.model.encoder.get("name_or_path")
    return f"a local model (`{name}`)" if name else f"a model built by `{cfg.model.encoder._target_}`"


def fill_card_data(
    model: SentenceTransformer, cfg: DictConfig, evaluator_name: str, metric: str, finetuned: DimensionMetrics
) -> None:
    """Set `model.model_card_data` from the run, without asking the hub: the base model's hub id,
    `model_card.model_name`, `.language` and `.license`, the tags, and the fine-tuned metrics of
    every dimension as its evaluation results."""
    settings = OmegaConf.to_container(cfg.model_card, resolve=True)
    card = model.model_card_data
    card.local_files_only = True
    card.generate_widget_examples = False  # no example encodings: the card is data, not a demo
    card.base_model = hub_id(cfg.model)
    card.model_name = settings["model_name"]
    if settings["language"]:
        card.set_language(settings["language"])
    if settings["license"]:
        card.set_license(settings["license"])
    card.add_tags(["embedding-trainer", "matryoshka"])
    task = TASKS.get(evaluator_name, evaluator_name.replace("_", " ").title())
    card.eval_results_dict = {
        DimensionEvaluation(f"dim_{dim}", metric, task): dict(values) for dim, values in finetuned.items()
    }


def write_model_card(
    model_dir: Path,
    cfg: DictConfig,
    model: SentenceTransformer,
    evaluator_name: str,
    metric: str,
    baseline: DimensionMetrics | None,
    finetuned: DimensionMetrics,
    provenance: dict,
    significance: Significance | None = None,
) -> Path:
    """Write `README.md` in `model_dir`: the metadata of `model`'s card data (filled by
    `fill_card_data`), what the model was trained from and on, its hyper-parameters, the
    per-dimension metrics (with `significance`, the change's interval, p-value and mark, as in
    results.md: `results.primary_table`), how to load it (at any of its dims), and the commit and
    library versions of the run's `provenance`."""
    fill_card_data(model, cfg, evaluator_name, metric, finetuned)
    dims = sorted(finetuned, reverse=True)
    base = base_model_reference(cfg)
    settings = [[key, base if key == "base model" else value] for key, value in describe_run(cfg)]
    card = [
        "---",
        model.model_card_data.to_yaml(),
        "---",
        "",
        f"# {cfg.name}",
        "",
        f"A sentence-transformers model fine-tuned with embedding-trainer from {base}.",
        "",
        "## Training",
        "",
        settings_table(settings),
        "",
        f"## Evaluation ({evaluator_name}, {metric})",
        "",
        primary_table(metric, baseline, finetuned, significance),
        "",
        "## Usage",
        "",
        "```python",
        "from sentence_transformers import SentenceTransformer",
        "",
        f'model = SentenceTransformer("{model_dir}")',
        *encode_lines(model),
        f"# Smaller, faster embeddings: truncate to any evaluated dimension ({', '.join(map(str, dims))})",
        f'small = SentenceTransformer("{model_dir}", truncate_dim={dims[-1]})',
        "```",
        "",
        "## Framework versions",
        "",
        *provenance_lines(provenance),
    ]
    path = model_dir / "README.md"
    path.write_text("\n".join(card) + "\n", encoding="utf-8")
    return path


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
