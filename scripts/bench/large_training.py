"""Training on data larger than memory: peak memory and samples/s of `train(cfg)` (the tiny model,
the pair data type's defaults: tokenize-once, length-grouped batches without repeated texts) on
generated (anchor, positive) pairs, for a fixed number of optimizer steps, each size in a fresh
process; the rows are written to a parquet file first, in chunks, by this (parent) process.

Run from the repository root:
  .venv/bin/python scripts/bench/large_training.py [--sizes 100000 1000000 10000000] [--steps 50] [--per-batch]
(a size given twice is generated once and trained on twice: give 100000 10000000 100000 10000000 to
compare samples/s on a shared machine). --per-batch tokenizes in each batch instead of once up front.
Prints per size: peak RssAnon (anonymous memory, sampled every 20 ms: the memory the run needs),
peak RSS (ru_maxrss: also the memory-mapped pages it touched, which the OS can reclaim), the run's
seconds in all (reading, checking, tokenizing once, planning the epoch, the steps), samples/s over the
steps after the first 5, the load average, and RssAnon by phase of the run (`phase_memory.watch`:
each phase's peak and its RssAnon at its end; "before X" is the time since the previous phase ended);
then the ratios of each size to the smallest. The last line is JSON.

--plan-only measures the batching alone, without the model (10M rows in minutes, where tokenizing
them takes an hour on 2 cores): the rows read as memory-mapped Arrow from the parquet file, their
row values (`row_values`), and one epoch of length-grouped batches without repeated texts (lengths:
characters), planned and iterated.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from phase_memory import PeakSampler, PhaseMarks, rss_anon, ru_maxrss_mb, watch
from side_by_side import FitTimer, child_parser, compose

SKIP_STEPS = 5
# Rows per parquet row group: `datasets` reads a parquet file a row group at a time, so its size, not
# the file's, sets the memory of reading it (pyarrow's default, 1M rows, would be 10x the 100k file's).
ROW_GROUP = 100_000
WORDS = pa.array(
    str.split(
        "the a of to in and is was for on with as by at from that which river city team music history science "
        "game film school water power market law village energy people north island war"
    )
)


def generate(path: Path, rows: int, seed: int = 0, chunk: int = 1_000_000) -> None:
    """`rows` distinct (anchor, positive) pairs in `path` (parquet), made and written `chunk` rows at a
    time by pyarrow's string kernels: anchor `what is <6 words> number <i>`, positive `passage <i>: <16
    to 39 words>`, in row groups of `ROW_GROUP` rows (10M rows in about a minute)."""
    rng = np.random.default_rng(seed)
    schema = pa.schema([("anchor", pa.string()), ("positive", pa.string())])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, chunk):
            ids = np.arange(start, min(start + chunk, rows))
            words = [WORDS.take(pa.array(picks)) for picks in rng.integers(0, len(WORDS), (40, len(ids)))]
            number = pc.cast(pa.array(ids), pa.string())
            anchor = pc.binary_join_element_wise("what is", *words[:6], "number", number, " ")
            count = 16 + ids % 24
            kept = [pc.if_else(pa.array(place < count), word, None) for place, word in enumerate(words)]
            head = pc.binary_join_element_wise("passage ", number, ":", "")
            positive = pc.binary_join_element_wise(head, *kept, " ", null_handling="skip")
            table = pa.table({"anchor": anchor, "positive": positive}, schema=schema)
            writer.write_table(table, row_group_size=ROW_GROUP)


# --per-batch: tokens made per batch in the collate (no tokenize-once pass, which takes about an hour for
# 20M texts on 2 cores); length grouping needs every text's token count, so it goes too.
PER_BATCH = ["data.tokenize_once=false", "data.group_by_length=false"]
PER_BATCH_HELP = "tokenize in each batch, not once up front (" + " ".join(PER_BATCH) + ")"
# The phases of a run whose RssAnon the breakdown shows: each name, the function that ends it.
PHASES = [
    ("read", "embedding_trainer.data.reading:read_table"),
    ("schema", "embedding_trainer.data.reading:fit_rows"),
    ("leakage", "embedding_trainer.data.stages.leakage:find_leakage"),
    ("token cache", "embedding_trainer.data.datamodule:build_token_cache"),
    ("token counts", "embedding_trainer.data.datamodule:row_token_counts"),
    ("row values", "embedding_trainer.data.batching:row_values"),
    ("row values", "embedding_trainer.data.samplers:row_values"),
    ("plan", "embedding_trainer.data.length_grouping:LengthGroupedBatchSampler.plan_epoch"),
    ("plan", "embedding_trainer.data.samplers:ShuffledBatchSampler.plan_epoch"),
]


def run_size(data: Path, steps: int, batch_size: int, folder: Path, overrides: list[str]) -> dict:
    """Train `steps` steps on the pairs in `data` (in this process, with the config `overrides`), measure."""
    from omegaconf import open_dict

    from embedding_trainer.train import train

    started = time.perf_counter()
    sampler = PeakSampler()
    sampler.start()
    sampler.mark("imports")
    watch(sampler, PHASES)
    PhaseMarks.sampler = sampler
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
            *overrides,
        ],
        str(folder / "run"),
    )
    with open_dict(cfg):
        cfg.callbacks.fit_timer = {"_target_": "side_by_side.FitTimer", "skip_steps": SKIP_STEPS}
        cfg.callbacks.phase_marks = {"_target_": "phase_memory.PhaseMarks"}
    _, objects = train(cfg)
    sampler.mark("after fit")
    sampler.stop()
    trainer = objects["trainer"]
    timer = next(callback for callback in trainer.callbacks if isinstance(callback, FitTimer))
    trained = (trainer.global_step - SKIP_STEPS) * batch_size
    return {
        "train_rows": len(objects["datamodule"].train_dataset),
        "steps": trainer.global_step,
        "peak_rss_anon_mb": round(sampler.peak / 2**20, 1),
        "ru_maxrss_mb": ru_maxrss_mb(),
        "samples_per_second": round(trained / (timer.clock.end - timer.clock.start), 2),
        "total_s": round(time.perf_counter() - started, 1),
        "load_average": os.getloadavg()[0],
        "phases": sampler.phases,
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
    sampler.stop()
    return {
        "placed": placed,
        "anon_before_mb": round(before / 2**20, 1),
        "peak_rss_anon_mb": round(sampler.peak / 2**20, 1),
        "ru_maxrss_mb": ru_maxrss_mb(),
        "plan_s": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = child_parser(__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000])
    parser.add_argument("--steps", type=int, default=50, help="optimizer steps per size")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--plan-only", action="store_true", help="the batching alone, without the model")
    parser.add_argument("--per-batch", action="store_true", help=PER_BATCH_HELP)
    args = parser.parse_args()
    overrides = PER_BATCH if args.per_batch else []
    if args.child:
        measure = (
            plan_size if args.child[0] == "plan" else partial(run_size, steps=args.steps, overrides=overrides)
        )
        with tempfile.TemporaryDirectory(prefix="large-training-") as folder:
            print(json.dumps(measure(Path(args.child[1]), batch_size=args.batch_size, folder=Path(folder))))
        return

    results = []
    with tempfile.TemporaryDirectory(prefix="large-training-pairs-") as folder:
        for rows in args.sizes:  # a size given twice reuses its file: run sizes interleaved for throughput
            data = Path(folder) / f"pairs-{rows}.parquet"
            if not data.exists():
                generate(data, rows)
            command = [sys.executable, __file__, "--child", "plan" if args.plan_only else "ours", str(data)]
            command += ["--steps", str(args.steps), "--batch-size", str(args.batch_size)]
            command += ["--per-batch"] * args.per_batch
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
