"""Embedding cache: cold (encode and store) against warm (read back), same model and texts, in one
process, in a fresh temporary cache folder.

Run from the repository root:  .venv/bin/python scripts/bench/embedding_cache.py [--max-queries N]
Defaults: the default job's evaluation texts (all 2,067 SQuAD paragraphs and the test questions),
all-MiniLM-L6-v2, batch 64; about 2 minutes on 2 CPU cores. Prints the model fingerprint's time,
both times (each the corpus and the queries, as the retrieval evaluator asks for them) and their
ratio (cold seconds / warm seconds); the last line is one JSON object with all of them.
"""

import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from bench_args import add_retrieval_arguments, bench_parser, load_bench_model

from embedding_trainer.data.sources import read_retrieval_split
from embedding_trainer.utils.embedding_cache import EmbeddingCache
from embedding_trainer.utils.fingerprints import encoder_fingerprint


def main() -> None:
    parser = bench_parser(__doc__)
    add_retrieval_arguments(parser)
    args = parser.parse_args()

    model = load_bench_model(args)
    split = read_retrieval_split(args.data, args.split)
    columns = {
        "corpus": [split.corpus[doc] for doc in sorted(split.corpus)],
        "queries": [split.queries[qid] for qid in sorted(split.queries)[: args.max_queries]],
    }
    print(", ".join(f"{len(texts)} {name}" for name, texts in columns.items()), flush=True)

    start = time.perf_counter()
    encoder_fingerprint(model)
    fingerprint_seconds = time.perf_counter() - start
    print(f"encoder fingerprint: {fingerprint_seconds:.3f} s", flush=True)

    with tempfile.TemporaryDirectory() as folder:
        cache = EmbeddingCache(folder)
        seconds, results = {}, {}
        for run in ("cold", "warm"):
            start = time.perf_counter()
            results[run] = [
                cache.embeddings(model, texts, batch_size=args.batch_size, show_progress_bar=False)
                for texts in columns.values()
            ]
            seconds[run] = time.perf_counter() - start
            print(f"{run}: {seconds[run]:.2f} s", flush=True)
        stored_bytes = sum(path.stat().st_size for path in Path(folder).rglob("*.npy"))
    assert all(torch.equal(cold, warm) for cold, warm in zip(results["cold"], results["warm"]))
    ratio = seconds["cold"] / seconds["warm"]
    print(f"warm is {ratio:.0f}x faster than cold; {stored_bytes / 2**20:.1f} MiB stored")
    print(
        json.dumps(
            {
                "benchmark": "embedding_cache",
                **{name: len(texts) for name, texts in columns.items()},
                "fingerprint_s": round(fingerprint_seconds, 3),
                "cold_s": round(seconds["cold"], 2),
                "warm_s": round(seconds["warm"], 3),
                "ratio": round(ratio, 1),
                "stored_mib": round(stored_bytes / 2**20, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
