"""Sharded evaluation: the retrieval evaluator at every dimension in one process against the same
evaluator in N processes (gloo, as `trainer=ddp_sim`) that each encode their share of the queries and
the corpus inside `sharded_encoding` and gather the rest, side by side in one invocation.

Run from the repository root:  .venv/bin/python scripts/bench/sharded_eval.py [--max-queries N]
Every process, the single one included, gets `--threads` intra-op threads (default 1: one core each, as
each rank of a data-parallel run has its own device), so the ratio shows what sharding buys per device.
Defaults: the default job's evaluation (5,492 SQuAD test questions against all 2,067 paragraphs,
all-MiniLM-L6-v2, dims 384/256/128/64, batch 64) in 1 and 2 processes: about 4 minutes on 2 CPU cores.
Prints both times, their ratio (one process's seconds / the sharded seconds) and the largest metric
difference; the last line is one JSON object with all of them.
"""

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from bench_args import add_retrieval_arguments, bench_parser, load_bench_model

from embedding_trainer.data.sources import read_retrieval_split
from embedding_trainer.evaluation import RetrievalEvaluator
from embedding_trainer.utils.sharded_encoding import sharded_encoding


def timed_evaluation(args: argparse.Namespace) -> dict:
    """Seconds, metrics and sizes of one evaluation in this process (after a warm-up encode)."""
    torch.set_num_threads(args.threads)
    model = load_bench_model(args)
    split = read_retrieval_split(args.data, args.split)
    query_ids = sorted(split.queries)[: args.max_queries]
    evaluator = RetrievalEvaluator(
        {qid: split.queries[qid] for qid in query_ids},
        split.corpus,
        {qid: split.relevant_docs[qid] for qid in query_ids},
        batch_size=args.batch_size,
        show_progress_bar=False,
    )
    model.encode(["warm-up"] * args.batch_size)
    if dist.is_initialized():
        dist.barrier()  # every process starts the clock together
    start = time.perf_counter()
    with sharded_encoding(torch.device("cpu")):
        metrics = evaluator(model, args.dims)
    if dist.is_initialized():
        dist.barrier()  # the slowest process's end counts
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "metrics": metrics, "queries": len(query_ids), "documents": len(split.corpus)}


def sharded_worker(rank: int, args: argparse.Namespace, folder: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=args.processes
    )
    try:
        result = timed_evaluation(args)
        if rank == 0:
            Path(folder, "result.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


def main() -> None:
    parser = bench_parser(__doc__)
    add_retrieval_arguments(parser)
    parser.add_argument("--dims", type=int, nargs="+", default=[384, 256, 128, 64])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads of every process")
    args = parser.parse_args()

    single = timed_evaluation(args)
    print(f"{single['queries']} queries, {single['documents']} documents, dims {args.dims}")
    print(f"1 process: {single['seconds']:.1f} s", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        mp.start_processes(sharded_worker, args=(args, folder), nprocs=args.processes, start_method="spawn")
        sharded = json.loads(Path(folder, "result.json").read_text())
    print(f"{args.processes} processes, encoding sharded: {sharded['seconds']:.1f} s", flush=True)

    differences = [
        abs(value - sharded["metrics"][str(dim)][name])
        for dim, values in single["metrics"].items()
        for name, value in values.items()
    ]
    ratio = single["seconds"] / sharded["seconds"]
    print(
        f"sharded is {ratio:.2f}x faster; {len(differences)} metrics compared, largest difference {max(differences):.2e}"
    )
    print(
        json.dumps(
            {
                "benchmark": "sharded_eval",
                "queries": single["queries"],
                "documents": single["documents"],
                "processes": args.processes,
                "threads_per_process": args.threads,
                "one_process_s": round(single["seconds"], 2),
                "sharded_s": round(sharded["seconds"], 2),
                "ratio": round(ratio, 3),
                "metrics_compared": len(differences),
                "max_abs_diff": max(differences),
            }
        )
    )


if __name__ == "__main__":
    main()
