"""Counting the mining's distinct documents (`hard_negatives.on_disk`, which picks the miner): the set of
every text it built before against the sorted 64-bit str hashes it counts now, on generated texts.

Run from the repository root:  .venv/bin/python scripts/bench/mining_document_count.py [--documents N]
Defaults: 1,000,000 corpus documents and 200,000 training rows whose positives are the first of them.
Prints, for each way, its answer, its time and (in a second pass, under tracemalloc, which slows it)
the peak of memory traced while it counts.
"""

import argparse
import time
import tracemalloc

import datasets

from embedding_trainer.data.hard_negatives import HardNegativeSettings, on_disk


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--documents", type=int, default=1_000_000)
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args()
    texts = [
        f"document number {i} about a topic of its own, some more words here" for i in range(args.documents)
    ]
    rows = datasets.Dataset.from_dict({"anchor": texts[: args.rows], "positive": texts[: args.rows]})
    threshold = args.documents // 2
    ways = {
        "before: set(rows['positive']).union(corpus)": lambda: (
            len(set(rows["positive"]).union(texts)) >= threshold
        ),
        "now: on_disk (str hashes, sorted)": lambda: on_disk(
            rows, HardNegativeSettings(corpus_on_disk_from=threshold), texts
        ),
    }
    for name, count in ways.items():
        started = time.perf_counter()
        answer = count()
        seconds = time.perf_counter() - started
        tracemalloc.start()
        count()
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        print(f"{name}: {answer}, {seconds:.2f} s, traced peak {peak:.0f} MiB")


if __name__ == "__main__":
    main()
