"""Multi-dimension retrieval evaluation: ours (encode once, slice per dimension) against
sentence-transformers' SequentialEvaluator of InformationRetrievalEvaluators with truncate_dim
(which re-encodes queries and corpus once per dimension), side by side, same model and data.

Run from the repository root:  .venv/bin/python scripts/bench/eval_dims.py [--max-queries N]
Defaults reproduce the target: the default job's evaluation (5,492 SQuAD test questions against all
2,067 paragraphs, all-MiniLM-L6-v2, dims 384/256/128/64, batch 64); about 9 minutes on 2 CPU cores.
Prints both times, their ratio (reference seconds / our seconds: how many times faster ours is) and
the largest metric difference; the last line is one JSON object with all of them.
"""

import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench_args import add_retrieval_arguments, bench_parser, load_bench_model
from sentence_transformers.sentence_transformer.evaluation import (
    InformationRetrievalEvaluator,
    SequentialEvaluator,
)

from embedding_trainer.data.sources import read_retrieval_split
from embedding_trainer.evaluation import RetrievalEvaluator


def main() -> None:
    parser = bench_parser(__doc__)
    add_retrieval_arguments(parser)
    parser.add_argument("--dims", type=int, nargs="+", default=[384, 256, 128, 64])
    args = parser.parse_args()

    model = load_bench_model(args)
    split = read_retrieval_split(args.data, args.split)
    query_ids = sorted(split.queries)[: args.max_queries]
    queries = {qid: split.queries[qid] for qid in query_ids}
    relevant = {qid: split.relevant_docs[qid] for qid in query_ids}
    print(f"{len(queries)} queries, {len(split.corpus)} documents, dims {args.dims}", flush=True)

    ours = RetrievalEvaluator(
        queries, split.corpus, relevant, batch_size=args.batch_size, show_progress_bar=False
    )
    start = time.perf_counter()
    our_metrics = ours(model, args.dims)
    our_seconds = time.perf_counter() - start
    print(f"ours: {our_seconds:.1f} s (one encoding, {len(args.dims)} dimensions)", flush=True)

    reference = SequentialEvaluator(
        [
            InformationRetrievalEvaluator(
                queries,
                split.corpus,
                relevant,
                truncate_dim=dim,
                name=f"dim{dim}",
                batch_size=args.batch_size,
                write_csv=False,
            )
            for dim in args.dims
        ]
    )
    start = time.perf_counter()
    reference_metrics = reference(model)
    reference_seconds = time.perf_counter() - start
    print(f"reference (SequentialEvaluator, truncate_dim): {reference_seconds:.1f} s", flush=True)

    differences = [
        abs(value - reference_metrics[f"dim{dim}_cosine_{name}"])
        for dim, values in our_metrics.items()
        for name, value in values.items()
    ]
    ratio = reference_seconds / our_seconds
    print(
        f"ours is {ratio:.2f}x faster; {len(differences)} metrics compared, largest difference {max(differences):.2e}"
    )
    print(
        json.dumps(
            {
                "benchmark": "eval_dims",
                "queries": len(queries),
                "documents": len(split.corpus),
                "dims": args.dims,
                "ours_s": round(our_seconds, 2),
                "reference_s": round(reference_seconds, 2),
                "ratio": round(ratio, 3),
                "metrics_compared": len(differences),
                "max_abs_diff": max(differences),
            }
        )
    )


if __name__ == "__main__":
    main()
