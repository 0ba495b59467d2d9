"""Hard-negative mining over a large corpus: the corpus embeddings on disk (`mining_on_disk`) against
sentence-transformers' in-memory `mine_hard_negatives`, with the tiny offline model the tests build.

Run from the repository root:
  nice .venv/bin/python scripts/bench/large_mining.py [--runs memory:100000,disk:100000,disk:300000]
Generates the documents of scripts/bench/large_corpus.py (12 words each, seeded) and --anchors
anchors (5 words of one document each, that document their positive), then mines --negatives negatives
per anchor, the best of the top 20 of the whole corpus (`mine_cached`; no relative_margin: the random
tiny model scores every pair alike, so a margin leaves nothing) in one fresh
process per run, so each peak RSS is its own: `memory:N` through sentence-transformers
(corpus_on_disk_from=null), `disk:N` with the embeddings on disk (corpus_on_disk_from=0), N documents.
Each run prints its wall time, its RssAnon before mining (the texts, the model, the libraries), the peak
RssAnon sampled every 20 ms while it mines, and ru_maxrss; then the on-disk / in-memory ratios at each
size both ran, and whether they mined the same rows and negatives (scores to 1e-6). One intra-op
thread by default (`--threads`).
"""

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import datasets
import torch
from large_corpus import PeakMemory, add_shared_arguments, in_fresh_process, retrieval_data, rss_anon_mib

from embedding_trainer.data.hard_negatives import HardNegativeSettings, mine_cached
from embedding_trainer.models import loading as models


def run(args: argparse.Namespace) -> dict:
    """One `miner:documents` run in this process: its figures (the mined rows stay in --work)."""
    torch.set_num_threads(args.threads)
    miner, documents = args.run.split(":")
    queries, corpus, relevant = retrieval_data(int(documents), args.anchors)
    rows = datasets.Dataset.from_dict(
        {
            "anchor": list(queries.values()),
            "positive": [corpus[next(iter(relevant[query]))] for query in queries],
        }
    )
    texts = list(corpus.values())
    del corpus
    model = models.build_tiny_model(args.model_cache, hidden_size=32, seed=3)
    settings = HardNegativeSettings(
        num_negatives=args.negatives,
        batch_size=args.batch_size,
        relative_margin=None,
        corpus_on_disk_from=None if miner == "memory" else 0,
    )
    result = {
        "run": args.run,
        "documents": len(texts),
        "anchors": len(rows),
        "rss_anon_before_mib": rss_anon_mib(),
    }
    with PeakMemory() as memory:
        start = time.perf_counter()
        mined = mine_cached(
            rows, model, settings, texts, Path(args.work) / args.run.replace(":", "_"), seed=0
        )
        result["seconds"] = time.perf_counter() - start
    result["peak_rss_anon_mib"] = memory.peak_anon
    result["ru_maxrss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["rows"], result["folder"] = len(mined.rows), str(mined.cached)
    return result


def same_mining(memory: dict, disk: dict) -> str:
    """How the two runs' mined rows compare: rows, negatives, largest score difference."""
    expected, found = (datasets.load_from_disk(str(Path(run["folder"]) / "rows")) for run in (memory, disk))
    if len(expected) != len(found):
        return f"different row counts: {len(expected)} in memory, {len(found)} on disk"
    negatives = [name for name in expected.column_names if name.startswith("negative_")]
    differing = sum(
        any(want[name] != got[name] for name in ["anchor", "positive", *negatives])
        for want, got in zip(expected, found)
    )
    gap = max(abs(a - b) for want, got in zip(expected["scores"], found["scores"]) for a, b in zip(want, got))
    return f"{len(found)} rows, {differing} with other negatives, largest score difference {gap:.1e}"


def compare(results: dict) -> None:
    """The on-disk / in-memory ratios, and whether they mined the same, at each size both ran."""
    for spec, figures in results.items():
        miner, documents = spec.split(":")
        other = results.get(f"memory:{documents}")
        if miner == "disk" and other is not None:
            for key in ("seconds", "peak_rss_anon_mib", "ru_maxrss_mib"):
                print(f"{key} on disk / in memory at {documents} documents: {figures[key] / other[key]:.2f}")
            print(f"same mining at {documents} documents: {same_mining(other, figures)}")


def run_all(specs: list[str]) -> dict:
    """Each `miner:documents` run in a fresh process, its figures printed: {spec: figures}."""
    results = {}
    with tempfile.TemporaryDirectory() as model_cache, tempfile.TemporaryDirectory() as work:
        for spec in specs:
            _, figures = in_fresh_process(
                __file__, "--run", spec, "--model-cache", model_cache, "--work", work
            )
            results[spec] = figures
            print(
                f"{spec}: {figures['documents']} documents, {figures['anchors']} anchors, {figures['rows']} rows "
                f"mined in {figures['seconds']:.1f} s, RssAnon before {figures['rss_anon_before_mib']:.0f} MiB, "
                f"peak {figures['peak_rss_anon_mib']:.0f} MiB, ru_maxrss {figures['ru_maxrss_mib']:.0f} MiB",
                flush=True,
            )
        compare(results)  # the mined rows are read back from `work`
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", default="memory:100000,disk:100000,disk:300000")
    parser.add_argument("--anchors", type=int, default=1_000)
    parser.add_argument("--negatives", type=int, default=3)
    add_shared_arguments(parser)
    parser.add_argument("--run", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        print(json.dumps(run(args)), flush=True)
        return
    print(json.dumps(run_all(args.runs.split(","))))


if __name__ == "__main__":
    main()
