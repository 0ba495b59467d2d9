"""How many in-batch (anchor, document) pairs the relevance mask (`loss.mask_known_relevance`) masks per
batch, on the shipped data, with the batches the harness draws (the loss's no-duplicates sampler).

Run from the repository root:  .venv/bin/python scripts/bench/masked_pairs.py [--batch-sizes 32 128]
For each data set (the Quora duplicate-question retrieval split, the SNLI triplets, the SQuAD pairs: all
training rows) prints the rows, the anchors with more than one relevant document, and per batch size the
mean and largest number of masked pairs per batch, the share of batches with any, and the in-batch pairs
scored per batch; the last line is one JSON object with all of them. Nothing is encoded: no model loads.
"""

import argparse
import json
import os
import tempfile
from collections import Counter

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from embedding_trainer.data.build import objective_datamodule
from embedding_trainer.data.relevance import RelevanceSets
from embedding_trainer.settings.resolvers import CONFIG_DIR, register_resolvers
from embedding_trainer.training.relevance_mask import BatchMask, ranking_plan

DATASETS = {
    "quora_retrieval": ["experiment=quora_retrieval"],
    "nli_triplets": ["dataset_type=triplet", "data=triplet"],
    "squad_pairs": [],
}


class QueryToDoc:
    directions = ("query_to_doc",)  # MNRL's default


def measure(overrides: list[str], batch_sizes: list[int], seed: int) -> dict:
    """The counts of one data set (see the module docstring)."""
    folder = tempfile.mkdtemp()
    paths = [f"paths.{key}={folder}/{key}" for key in ("output_dir", "log_dir", "cache_dir")]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, *paths, "data.max_samples=null", "data.leakage=off"])
    datamodule = objective_datamodule(cfg)
    datamodule.load()
    rows = datamodule.train_dataset
    columns = datamodule.inputs or datamodule.text_columns
    relevance = RelevanceSets.of_rows(rows, columns)
    per_anchor = Counter(rows[columns[0]])
    result = {
        "rows": len(rows),
        "anchors": len(per_anchor),
        "anchors_with_several_documents": sum(count > 1 for count in per_anchor.values()),
        "batches": {},
    }
    for batch_size in batch_sizes:
        sampler = instantiate(cfg.loss.batch_sampler)(
            rows, batch_size=batch_size, drop_last=True, generator=torch.Generator(), seed=seed
        )
        mask = BatchMask(relevance, lambda count: ranking_plan(QueryToDoc, count))
        counts = [int(mask.start(relevance([rows[i] for i in batch]), 0, len(batch))) for batch in sampler]
        result["batches"][batch_size] = {
            "batches": len(counts),
            "mean_masked_pairs": sum(counts) / len(counts),
            "max_masked_pairs": max(counts),
            "share_with_any": sum(count > 0 for count in counts) / len(counts),
            "pairs_scored": batch_size * batch_size * (len(columns) - 1),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    register_resolvers()
    results = {}
    for name, overrides in DATASETS.items():
        results[name] = result = measure(overrides, args.batch_sizes, args.seed)
        print(
            f"{name}: {result['rows']} rows, {result['anchors']} anchors, "
            f"{result['anchors_with_several_documents']} with several relevant documents"
        )
        for batch_size, figures in result["batches"].items():
            print(
                f"  batch {batch_size}: {figures['mean_masked_pairs']:.2f} masked pairs per batch (max "
                f"{figures['max_masked_pairs']}, {figures['share_with_any']:.0%} of {figures['batches']} batches "
                f"have any) of {figures['pairs_scored']} scored"
            )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
