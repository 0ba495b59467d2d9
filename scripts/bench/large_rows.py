"""Peak memory of reading generated pairs into finished training rows (issue 29, "data larger than memory").

For each size, a fresh process writes that many (anchor, positive) pairs as JSON lines (kept in the folder
for the next run), loads them through the real data path (`build_datamodule(cfg).load()`: read, schema
checks, test split, validation hold-out, leakage check; data.max_samples=null) and prints its peak RSS
(ru_maxrss: anonymous and file-backed pages touched), its anonymous RSS after loading (what the page
cache cannot take back), the load time and the ratio of each to the smallest size's.

    .venv/bin/python scripts/bench/large_rows.py --sizes 100000 1000000 --folder /tmp/large_rows
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from phase_memory import rss_anon


def write_pairs(path: Path, count: int) -> None:
    """`count` distinct pairs, queries of ~40 and passages of ~70 characters, unless `path` exists."""
    if path.exists():
        return
    with open(path, "w") as file:
        for i in range(count):
            pair = {
                "anchor": f"query number {i} about topic {i % 977}",
                "positive": f"passage {i} says something about topic {i % 977} and more words here",
            }
            file.write(json.dumps(pair) + "\n")


def measure(count: int, folder: Path) -> dict:
    """Load `count` generated pairs in this process; its figures."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_CACHE"] = str(folder / "hf_cache")
    from hydra import compose, initialize_config_dir

    from embedding_trainer.data.build import build_datamodule
    from embedding_trainer.settings.resolvers import CONFIG_DIR, register_resolvers

    path = folder / f"pairs_{count}.jsonl"
    write_pairs(path, count)
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                "model=tiny",
                f"data.train_path={path}",
                "data.max_samples=null",
                *(f"paths.{name}={folder / name}" for name in ("output_dir", "log_dir", "cache_dir")),
            ],
        )
    data = build_datamodule(cfg)
    imported = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    data.load()
    return {
        "pairs": count,
        "training_rows": len(data.train_dataset),
        "load_s": round(time.perf_counter() - start, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "peak_rss_before_load_mb": round(imported),
        "rss_anon_after_load_mb": round(rss_anon() / 2**20),
        "memory_mapped": bool(data.train_dataset.cache_files),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--folder", type=Path, default=Path("/tmp/large_rows"))
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # the child process's size
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    if args.one:
        print(json.dumps(measure(args.one, args.folder)))
        return
    results = []
    for count in args.sizes:
        child = [sys.executable, __file__, "--one", str(count), "--folder", str(args.folder)]
        output = subprocess.run(child, capture_output=True, text=True, check=True).stdout
        results.append(json.loads(output.strip().splitlines()[-1]))
        reference = results[0]
        ratios = {
            key: round(results[-1][key] / reference[key], 2)
            for key in ("peak_rss_mb", "rss_anon_after_load_mb", "load_s")
        }
        print(json.dumps({**results[-1], f"ratio_vs_{reference['pairs']}": ratios}), flush=True)


if __name__ == "__main__":
    main()
