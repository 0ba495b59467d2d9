"""Training on data larger than memory: peak memory and samples/s of `train(cfg)` (the tiny model,
the pair data type's defaults: tokenize-once, length-grouped batches without repeated texts) on
generated (anchor, positive) pairs, for a fixed number of optimizer steps, each size in a fresh
process; the rows are written to a parquet file first, in chunks (the generator holds none of them).

Run from the repository root:
  .venv/bin/python scripts/bench/large_training.py [--sizes 100000 1000000 10000000] [--steps 50]
Prints per size: peak RssAnon (anonymous memory, sampled every 20 ms: the memory the run needs),
peak RSS (ru_maxrss: also the memory-mapped pages it touched, which the OS can reclaim), the seconds
to the first step (reading, splitting, tokenizing once, planning the epoch) and samples/s over the
steps after the first 5; then the ratios of each size to the smallest. The last line is JSON.
"""

import json
import resource
import sys
import tempfile
import threading
import time
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


def run_size(rows: int, steps: int, batch_size: int, folder: Path) -> dict:
    """Generate `rows` pairs, train `steps` steps on them (in this process), measure."""
    from omegaconf import open_dict

    from embedding_trainer.train import train

    data = folder / "pairs.parquet"
    started = time.perf_counter()
    generate(data, rows)
    generated = time.perf_counter()
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
        "rows": rows,
        "train_rows": len(objects["datamodule"].train_dataset),
        "steps": trainer.global_step,
        "generate_s": round(generated - started, 1),
        "peak_rss_anon_mb": round(sampler.peak / 2**20, 1),
        "ru_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "samples_per_second": round(trained / (timer.clock.end - timer.clock.start), 2),
        "total_s": round(time.perf_counter() - generated, 1),
    }


def main() -> None:
    parser = child_parser(__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000])
    parser.add_argument("--steps", type=int, default=50, help="optimizer steps per size")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    if args.child:
        with tempfile.TemporaryDirectory(prefix="large-training-") as folder:
            print(json.dumps(run_size(int(args.child[1]), args.steps, args.batch_size, Path(folder))))
        return
    import subprocess

    results = []
    for rows in args.sizes:
        command = [sys.executable, __file__, "--child", "ours", str(rows)]
        command += ["--steps", str(args.steps), "--batch-size", str(args.batch_size)]
        process = subprocess.run(command, capture_output=True, text=True, check=False)
        if process.returncode != 0:
            sys.exit(f"{rows} rows failed:\n{process.stderr[-4000:]}")
        results.append(json.loads(process.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)
    base = results[0]
    for result in results[1:]:
        ratios = {
            key: round(result[key] / base[key], 3)
            for key in ("peak_rss_anon_mb", "ru_maxrss_mb", "samples_per_second")
        }
        print(f"{result['rows']} / {base['rows']} rows: {ratios}")
    print(json.dumps({"results": results}))


if __name__ == "__main__":
    main()
