"""Training on data larger than memory: peak memory and samples/s of `train(cfg)` (the tiny model,
the pair data type's defaults: tokenize-once, length-grouped batches without repeated texts) on
generated (anchor, positive) pairs, for a fixed number of optimizer steps, each size in a fresh
process; the rows are written to a parquet file first, in chunks, by this (parent) process.

Run from the repository root:
  .venv/bin/python scripts/bench/large_training.py [--sizes 100000 1000000 10000000] [--steps 50]
Prints per size: peak RssAnon (anonymous memory, sampled every 20 ms: the memory the run needs),
peak RSS (ru_maxrss: also the memory-mapped pages it touched, which the OS can reclaim), the seconds
to the first step (reading, splitting, tokenizing once, planning the epoch) and samples/s over the
steps after the first 5; then the ratios of each size to the smallest. The last line is JSON.

--plan-only measures the batching alone, without the model (10M rows in minutes, where tokenizing
them takes an hour on 2 cores): the rows read as memory-mapped Arrow from the parquet file, their
row values (`row_values`), and one epoch of length-grouped batches without repeated texts (lengths:
characters), planned and iterated.
"""

import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from side_by_side import FitTimer, child_parser, compose

SKIP_STEPS = 5
WORDS = np.array(
    [
        "the",
        "a",
        "of",
        "to",
        "in",
        "and",
        "is",
        "was",
        "for",
        "on",
        "with",
        "as",
        "by",
        "at",
        "from",
        "that",
        "which",
        "river",
        "city",
        "team",
        "music",
        "history",
        "science",
        "game",
        "film",
        "school",
        "water",
        "power",
        "market",
        "law",
        "village",
        "energy",
        "people",
        "north",
        "island",
        "war",
    ]
)


def generate(path: Path, rows: int, seed: int = 0, chunk: int = 100_000) -> None:
    """`rows` distinct (anchor, positive) pairs in `path` (parquet), written `chunk` rows at a time."""
    rng = np.random.default_rng(seed)
    schema = pa.schema([("anchor", pa.string()), ("positive", pa.string())])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, chunk):
            ids = range(start, min(start + chunk, rows))
            words = WORDS[rng.integers(0, len(WORDS), size=(len(ids), 40))]
            anchors = [f"what is {' '.join(w[:6])} number {i}" for i, w in zip(ids, words)]
            positives = [f"passage {i}: {' '.join(w[: 16 + i % 24])}" for i, w in zip(ids, words)]
            writer.write_table(pa.table({"anchor": anchors, "positive": positives}, schema=schema))


def rss_anon() -> int:
    """This process's anonymous resident memory, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no RssAnon in /proc/self/status")


class PeakSampler(threading.Thread):
    """The highest `rss_anon()` seen, sampled every `interval` seconds while it runs."""

    def __init__(self, interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.interval, self.peak, self.running = interval, 0, True

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, rss_anon())
            time.sleep(self.interval)


def run_size(data: Path, steps: int, batch_size: int, folder: Path) -> dict:
    """Train `steps` steps on the pairs in `data` (in this process), measure."""
    from omegaconf import open_dict

    from embedding_trainer.train import train

    started = time.perf_counter()
    sampler = PeakSampler()
    sampler.start()
    cfg = compose(
        [
            "model=tiny",
            f"paths.cache_dir={folder / 'models'}",
            f"data.train_path={data}",
            "data.eval_path=${paths.data_dir}/squad_pairs",  # a small fixed eval set, not a tenth of the rows
            "data.validation_size=null",
            "data.max_samples=null",
            "data.max_eval_samples=16",
            f"data.batch_size={batch_size}",
            f"trainer.max_steps={steps}",
            "evaluation.forgetting_guard=null",
            "evaluation.health=null",
        ],
        str(folder / "run"),
    )
    with open_dict(cfg):
        cfg.callbacks.fit_timer = {"_target_": "side_by_side.FitTimer", "skip_steps": SKIP_STEPS}
    _, objects = train(cfg)
    sampler.running = False
    sampler.join()
    trainer = objects["trainer"]
    timer = next(callback for callback in trainer.callbacks if isinstance(callback, FitTimer))
    trained = (trainer.global_step - SKIP_STEPS) * batch_size
    return {
        "train_rows": len(objects["datamodule"].train_dataset),
        "steps": trainer.global_step,
        "peak_rss_anon_mb": round(sampler.peak / 2**20, 1),
        "ru_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "samples_per_second": round(trained / (timer.clock.end - timer.clock.start), 2),
        "total_s": round(time.perf_counter() - started, 1),
    }


def plan_size(data: Path, batch_size: int, folder: Path) -> dict:
    """Plan and iterate one epoch of the default sampler over the pairs in `data` (no model)."""
    import datasets

    from embedding_trainer.data.chunked import column_texts
    from embedding_trainer.data.length_grouping import LengthGroupedBatchSampler
    from embedding_trainer.data.row_values import row_values

    data = datasets.Dataset.from_parquet(str(data), cache_dir=str(folder / "arrow"))
    rows = len(data)
    sampler = PeakSampler()
    sampler.start()
    started, before = time.perf_counter(), rss_anon()
    lengths = np.zeros(rows, dtype=np.int64)
    for column in ("anchor", "positive"):
        lengths += np.fromiter(map(len, column_texts(data, column)), dtype=np.int64, count=rows)
    values = row_values(data, ["anchor", "positive"])
    batches = LengthGroupedBatchSampler(lengths, batch_size, False, values, seed=0)
    placed = sum(len(batch) for batch in batches)
    sampler.running = False
    sampler.join()
    return {
        "placed": placed,
        "anon_before_mb": round(before / 2**20, 1),
        "peak_rss_anon_mb": round(sampler.peak / 2**20, 1),
        "ru_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "plan_s": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = child_parser(__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000])
    parser.add_argument("--steps", type=int, default=50, help="optimizer steps per size")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--plan-only", action="store_true", help="the batching alone, without the model")
    args = parser.parse_args()
    if args.child:
        measure = plan_size if args.child[0] == "plan" else partial(run_size, steps=args.steps)
        with tempfile.TemporaryDirectory(prefix="large-training-") as folder:
            print(json.dumps(measure(Path(args.child[1]), batch_size=args.batch_size, folder=Path(folder))))
        return

    results = []
    for rows in args.sizes:
        with tempfile.TemporaryDirectory(prefix="large-training-pairs-") as folder:
            data = Path(folder) / "pairs.parquet"
            generate(data, rows)
            command = [sys.executable, __file__, "--child", "plan" if args.plan_only else "ours", str(data)]
            command += ["--steps", str(args.steps), "--batch-size", str(args.batch_size)]
            process = subprocess.run(command, capture_output=True, text=True, check=False)
        if process.returncode != 0:
            sys.exit(f"{rows} rows failed:\n{process.stderr[-4000:]}")
        results.append({"rows": rows, **json.loads(process.stdout.strip().splitlines()[-1])})
        print(json.dumps(results[-1]), flush=True)
    base = results[0]
    for result in results[1:]:
        keys = ("peak_rss_anon_mb", "ru_maxrss_mb", *(() if args.plan_only else ("samples_per_second",)))
        ratios = {key: round(result[key] / base[key], 3) for key in keys}
        print(f"{result['rows']} / {base['rows']} rows: {ratios}")
    print(json.dumps({"results": results}))


if __name__ == "__main__":
    main()
