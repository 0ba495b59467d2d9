"""Retrieval evaluation over a large corpus: the corpus embeddings on disk (`CorpusStore`, chunked top-k)
against the in-memory path, with the tiny offline model the tests build.

Run from the repository root:  nice .venv/bin/python scripts/bench/large_corpus.py [--documents N]
Generates N documents (default 1,000,000: 12 words each from a fixed 5,000-word vocabulary, seeded)
and --queries queries (5 words of one document each, that document relevant), then runs each stage in
a fresh process, so each peak RSS is its own:
  check   the first --subset documents (default 100,000): exact top-10 of the on-disk path against a
          brute-force torch.topk over the in-memory float32 embeddings of that subset
  memory  the --subset documents through the in-memory path (corpus_on_disk_from=None)
  disk    the --subset documents through the on-disk path; their peak RSS ratio against `memory`
  disk16  the same with a float16 store: its largest metric difference from `disk`
  large   all N documents through the on-disk path
Each stage prints its wall time per step (encode, top-k), its RssAnon before them (the texts, the
model, the libraries), the peak RssAnon sampled from /proc/self/status every 20 ms during them and
ru_maxrss; the last line is one JSON object with all of them. One intra-op thread by default
(`--threads`): on 2 shared cores, 2 threads encoded 5 times slower.
"""

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
from typing import Self

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from embedding_trainer.evaluation import RetrievalEvaluator
from embedding_trainer.evaluation.base import truncate
from embedding_trainer.evaluation.corpus_embeddings import chunked_top_k
from embedding_trainer.models import loading as models
from embedding_trainer.models.prompts import DOCUMENT, QUERY

WORDS_PER_DOCUMENT, VOCABULARY = 12, 5_000


class PeakMemory:
    """Peak RssAnon (MiB) of this process, sampled every 20 ms by a thread while the block runs."""

    def __enter__(self) -> Self:
        self.peak_anon, self._stop = 0.0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_anon = max(self.peak_anon, rss_anon_mib())
            self._stop.wait(0.02)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_anon = max(self.peak_anon, rss_anon_mib())


def rss_anon_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("/proc/self/status has no RssAnon line (Linux only).")


def retrieval_data(documents: int, queries: int, seed: int = 0):
    """`documents` generated documents (ids in generation order), `queries` queries among the first
    `documents` each made of 5 words of one of them (relevant), and their relevance."""
    rng = random.Random(seed)
    vocabulary = [f"w{index}" for index in range(VOCABULARY)]
    corpus = {
        f"d{index:07d}": " ".join(rng.choices(vocabulary, k=WORDS_PER_DOCUMENT)) for index in range(documents)
    }
    targets = rng.sample(range(documents), queries)
    query_texts = {
        f"q{index:05d}": " ".join(rng.sample(corpus[f"d{target:07d}"].split(), 5))
        for index, target in enumerate(targets)
    }
    relevant = {f"q{index:05d}": {f"d{target:07d}"} for index, target in enumerate(targets)}
    return query_texts, corpus, relevant


def run_stage(args: argparse.Namespace) -> dict:
    """One stage in this process (see the module docstring): its figures."""
    torch.set_num_threads(args.threads)
    documents = args.documents if args.stage == "large" else args.subset
    queries, corpus, relevant = retrieval_data(documents, args.queries)
    model = models.build_tiny_model(args.model_cache, hidden_size=32, seed=3)
    evaluator = RetrievalEvaluator(
        queries,
        corpus,
        relevant,
        batch_size=args.batch_size,
        show_progress_bar=False,
        corpus_chunk_size=args.chunk_size,
        corpus_on_disk_from=None if args.stage == "memory" else 0,
        corpus_store_dtype="float16" if args.stage == "disk16" else "float32",
    )
    del corpus
    result = {"stage": args.stage, "documents": documents, "queries": len(evaluator.queries)}
    result["rss_anon_before_mib"] = rss_anon_mib()  # the texts, the model, the libraries
    with PeakMemory() as memory:
        start = time.perf_counter()
        query_embeddings = evaluator.encode(model, evaluator.queries, QUERY)
        if args.stage == "memory":
            corpus_embeddings = evaluator.encode(model, evaluator.corpus, DOCUMENT)
        else:
            corpus_embeddings = evaluator.corpus_store(model)
        result["encode_s"] = time.perf_counter() - start
        start = time.perf_counter()
        metrics = {}
        for dim in (32, 16):
            corpus_at_dim = truncate(corpus_embeddings, dim) if args.stage == "memory" else corpus_embeddings
            grades = evaluator.ranked_grades(truncate(query_embeddings, dim), corpus_at_dim)
            metrics[dim] = {
                name: values.mean().item() for name, values in evaluator.per_query(grades).items()
            }
        result["top_k_s"] = time.perf_counter() - start
        if args.stage == "check":
            result["top10_equal"] = top10_equal(evaluator, model, query_embeddings, corpus_embeddings)
        if args.stage != "memory":
            corpus_embeddings.close()
    result["metrics"] = metrics
    result["peak_rss_anon_mib"] = memory.peak_anon
    result["ru_maxrss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def top10_equal(evaluator, model, query_embeddings, store) -> dict:
    """Whether the on-disk top-10 of every query equals torch.topk over all scores of the in-memory
    float32 embeddings (encoded whole, as the in-memory path does) at the full dimension, and whether it
    equals a stable sort of all scores of the stored rows themselves (the top-k alone, ties included);
    prints how far the stored rows are from the in-memory ones and the score gaps where the first differs."""
    in_memory = truncate(evaluator.encode(model, evaluator.corpus, DOCUMENT), 32)
    stored = torch.cat([rows for _, rows in store.chunks(32, evaluator.corpus_chunk_size)])
    queries = truncate(query_embeddings, 32)
    scores = queries @ in_memory.T
    _, expected = scores.topk(10, dim=1)
    _, found = chunked_top_k(queries, store.chunks(32, evaluator.corpus_chunk_size), 10)
    differing = (found != expected).any(dim=1)
    exact = (queries @ stored.T).argsort(dim=1, descending=True, stable=True)[:, :10]
    same_sets = torch.equal(found.sort(dim=1).values, expected.sort(dim=1).values)
    gaps = [
        (scores[row, found[row, rank]] - scores[row, expected[row, rank]]).abs().item()
        for row in differing.nonzero()[:, 0].tolist()
        for rank in (found[row] != expected[row]).nonzero()[:, 0].tolist()
    ]
    print(
        f"queries whose top-10 differ from torch.topk over the in-memory embeddings: {differing.sum().item()} of "
        f"{len(queries)} (same documents in every top-10: {same_sets}; in-memory score gaps where they differ: "
        f"{gaps}); largest |stored - in-memory| component: {(stored - in_memory).abs().max().item():.1e}",
        flush=True,
    )
    return {"in_memory": not differing.any().item(), "stored": torch.equal(found, exact)}


def add_shared_arguments(parser: argparse.ArgumentParser) -> None:
    """The encoding batch size, the intra-op threads and the model's folder (set by the parent process)."""
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument(
        "--threads", type=int, default=1, help="intra-op threads (more than the free cores slows it)"
    )
    parser.add_argument("--model-cache", help=argparse.SUPPRESS)


def in_fresh_process(script: str, *extra: str) -> tuple[str, dict]:
    """Run `script` in a new Python process with this process's arguments and `extra`: its standard
    output, and the JSON object on its last line."""
    command = [sys.executable, script, *sys.argv[1:], *extra]
    output = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout
    return output, json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--documents", type=int, default=1_000_000)
    parser.add_argument("--subset", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--chunk-size", type=int, default=50_000, help="corpus_chunk_size")
    add_shared_arguments(parser)
    parser.add_argument("--stages", default="check,memory,disk,disk16,large")
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        print(json.dumps(run_stage(args)), flush=True)
        return
    results = {}
    with tempfile.TemporaryDirectory() as model_cache:
        for stage in args.stages.split(","):
            output, figures = in_fresh_process(__file__, "--stage", stage, "--model-cache", model_cache)
            print(output, end="", flush=True)
            results[stage] = figures
            print(
                f"{stage}: {figures['documents']} documents, encode {figures['encode_s']:.1f} s, top-k "
                f"{figures['top_k_s']:.1f} s, RssAnon before {figures['rss_anon_before_mib']:.0f} MiB, peak "
                f"{figures['peak_rss_anon_mib']:.0f} MiB, ru_maxrss "
                f"{figures['ru_maxrss_mib']:.0f} MiB",
                flush=True,
            )
    summary(results)


def summary(results: dict) -> None:
    """The comparisons between stages, then one JSON line of everything."""
    if "check" in results:
        equal, subset = results["check"]["top10_equal"], results["check"]["documents"] // 1000
        print(f"top-10 equal on {subset}k subset: {equal['in_memory']}")
        print(
            f"top-10 equal to a stable sort over the stored embeddings on {subset}k subset: {equal['stored']}"
        )
    if "memory" in results and "disk" in results:
        for key in ("peak_rss_anon_mib", "ru_maxrss_mib"):
            ratio = results["disk"][key] / results["memory"][key]
            print(f"{key} on disk / in memory at {results['disk']['documents']} documents: {ratio:.2f}")
    if "disk" in results and "disk16" in results:
        difference = max(
            abs(value - results["disk"]["metrics"][dim][name])
            for dim, values in results["disk16"]["metrics"].items()
            for name, value in values.items()
        )
        print(f"largest metric difference, float16 store vs float32: {difference:.2e}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
