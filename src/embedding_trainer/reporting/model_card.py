"""The README model card written into the saved model folder."""

from pathlib import Path

from omegaconf import DictConfig

from embedding_trainer.evaluation.base import DimensionMetrics
from embedding_trainer.reporting.run_report import base_model_name, summary_sections


def write_model_card(
    model_dir: Path,
    cfg: DictConfig,
    evaluator_name: str,
    metric: str,
    baseline: DimensionMetrics | None,
    finetuned: DimensionMetrics,
) -> Path:
    """Write `README.md` in `model_dir`: what the model was trained from and on, its
    hyper-parameters, the per-dimension metrics, and how to load it (at any of its dims)."""
    dims = sorted(finetuned, reverse=True)
    card = [
        "---",
        "library_name: sentence-transformers",
        "pipeline_tag: sentence-similarity",
        "tags: [sentence-transformers, embedding-trainer, matryoshka]",
        "---",
        "",
        f"# {cfg.name}",
        "",
        f"A sentence-transformers model fine-tuned with embedding-trainer from "
        f"`{base_model_name(cfg)}`.",
        "",
        *summary_sections(cfg, "Training", f"Evaluation ({evaluator_name}, {metric})", metric, baseline, finetuned),
        "",
        "## Usage",
        "",
        "```python",
        "from sentence_transformers import SentenceTransformer",
        "",
        f'model = SentenceTransformer("{model_dir}")',
        'embeddings = model.encode(["An example sentence", "Another one"])',
        f"# Smaller, faster embeddings: truncate to any evaluated dimension ({', '.join(map(str, dims))})",
        f'small = SentenceTransformer("{model_dir}", truncate_dim={dims[-1]})',
        "```",
    ]
    path = model_dir / "README.md"
    path.write_text("\n".join(card) + "\n", encoding="utf-8")
    return path
