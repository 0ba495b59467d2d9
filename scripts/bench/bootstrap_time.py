"""Paired bootstrap time: ours (`embedding_trainer.evaluation.significance.paired_bootstrap`: index
matrix drawn in chunks, draw counts @ per-query changes) against a naive loop that draws one resample
at a time and averages the changed rows with numpy, same data, in one process.

Run from the repository root:  .venv/bin/python scripts/bench/bootstrap_time.py [--naive-resamples N]
Defaults reproduce the target: 5,492 queries (the SQuAD test questions) x 4 dimensions x 10,000
resamples, 95% interval. The per-query changes are synthetic (per-query NDCG-like scores in [0, 1]
with a small gain; the time does not depend on the values). The naive loop runs --naive-resamples
resamples (default 1,000) and its time is scaled linearly to the full count, which the output says.
Prints both times, their ratio (naive seconds / our seconds) and both intervals; the last line is
one JSON object with all of them.
"""

import argparse
import json
import time

import numpy as np

from embedding_trainer.evaluation.significance import paired_bootstrap


def naive_interval(differences: np.ndarray, resamples: int, confidence: float, seed: int) -> np.ndarray:
    """One resample per iteration: draw n indices, average those rows; then the percentile interval."""
    rng = np.random.default_rng(seed)
    n = len(differences)
    means = np.empty((resamples, differences.shape[1]))
    for resample in range(resamples):
        means[resample] = differences[rng.integers(0, n, n)].mean(axis=0)
    tail = (1 - confidence) / 2
    return np.quantile(means, [tail, 1 - tail], axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--queries", type=int, default=5492)
    parser.add_argument("--dims", type=int, default=4)
    parser.add_argument("--resamples", type=int, default=10_000)
    parser.add_argument(
        "--naive-resamples", type=int, default=1_000, help="resamples the naive loop runs (scaled up)"
    )
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    baseline = rng.beta(2, 3, size=(args.queries, args.dims))
    finetuned = np.clip(baseline + rng.normal(0.02, 0.2, size=baseline.shape), 0, 1)
    differences = finetuned - baseline
    print(f"{args.queries} queries x {args.dims} dims, {args.resamples:,} resamples", flush=True)

    paired_bootstrap(differences[:50], 10, args.confidence, args.seed)  # imports and BLAS set-up, untimed
    start = time.perf_counter()
    low, high = paired_bootstrap(differences, args.resamples, args.confidence, args.seed)
    ours = time.perf_counter() - start
    print(f"ours: {ours:.3f} s", flush=True)

    start = time.perf_counter()
    naive_low, naive_high = naive_interval(differences, args.naive_resamples, args.confidence, args.seed)
    naive_measured = time.perf_counter() - start
    naive = naive_measured * args.resamples / args.naive_resamples
    print(
        f"naive loop: {naive_measured:.3f} s for {args.naive_resamples:,} resamples, "
        f"extrapolated to {args.resamples:,}: {naive:.2f} s",
        flush=True,
    )
    print(f"ours is {naive / ours:.1f}x faster")
    for dim in range(args.dims):
        print(
            f"dim {dim}: mean change {differences[:, dim].mean():+.5f}; ours [{low[dim]:+.5f}, {high[dim]:+.5f}], "
            f"naive ({args.naive_resamples:,} resamples) [{naive_low[dim]:+.5f}, {naive_high[dim]:+.5f}]"
        )
    print(
        json.dumps(
            {
                "benchmark": "bootstrap_time",
                "queries": args.queries,
                "dims": args.dims,
                "resamples": args.resamples,
                "ours_s": round(ours, 3),
                "naive_resamples_run": args.naive_resamples,
                "naive_measured_s": round(naive_measured, 3),
                "naive_extrapolated_s": round(naive, 2),
                "ratio": round(naive / ours, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
