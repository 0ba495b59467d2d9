"""Hard-negative mining time: cold (mined) against warm (read back from the cache), same model, data
and settings, in one process.

Run from the repository root:  .venv/bin/python scripts/bench/mining_time.py [--max-rows N]
Defaults: every shipped SQuAD training pair (5,078 questions), all-MiniLM-L6-v2, the `data.hard_negatives`
defaults with 3 negatives (ranks 0..20, top, relative margin 0.05), corpus = the training positives
or, with --corpus-folder, the whole retrieval corpus (2,067 paragraphs); --relative-margin and
--rows-without-negatives (sampled, the default, or drop) change those settings. Prints both times, their
ratio and how many rows got mined negatives, sampled ones or were left out; the last line is one JSON
object with all of them.
"""

import json
import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench_args import bench_parser, load_bench_model

from embedding_trainer.data.hard_negatives import HardNegativeSettings, mine_for_run
from embedding_trainer.data.sources import read_retrieval_split
from embedding_trainer.settings.resolvers import PROJECT_ROOT

SQUAD = PROJECT_ROOT / "data" / "squad_pairs"


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument(
        "--max-rows", type=int, default=None, help="first N training pairs only (quick check)"
    )
    parser.add_argument("--num-negatives", type=int, default=3)
    parser.add_argument(
        "--corpus-folder", action="store_true", help="mine from the retrieval folder's whole corpus"
    )
    parser.add_argument("--relative-margin", type=float, default=0.05)
    parser.add_argument("--rows-without-negatives", default="sampled")
    args = parser.parse_args()

    model = load_bench_model(args)
    rows = read_retrieval_split(SQUAD, "train").pairs()
    rows = rows.select(range(min(args.max_rows, len(rows)))) if args.max_rows else rows
    settings = HardNegativeSettings(
        num_negatives=args.num_negatives,
        corpus=str(SQUAD) if args.corpus_folder else "positives",
        relative_margin=args.relative_margin,
        rows_without_negatives=args.rows_without_negatives,
    )
    with tempfile.TemporaryDirectory() as cache:
        times = []
        for _ in range(2):
            started = time.perf_counter()
            mined = mine_for_run(rows, model, settings, "utf-8", cache, seed=42)
            times.append(time.perf_counter() - started)
    cold, warm = times
    print(mined.summary)
    print(mined.describe())
    print(f"cold (mined): {cold:.1f} s; warm (from the cache): {warm:.2f} s; cold / warm: {cold / warm:.0f}x")
    print(
        json.dumps(
            {
                "rows": len(rows),
                "kept": mined.mined,
                **mined.to_json(),
                "cold_s": round(cold, 2),
                "warm_s": round(warm, 3),
                "corpus": settings.corpus,
                "relative_margin": settings.relative_margin,
                "rows_without_negatives": settings.rows_without_negatives,
            }
        )
    )


if __name__ == "__main__":
    main()
