"""Query adapter (experiment=squad_adapter) against evaluating the base model alone, in one invocation:
each a fresh `train.py` / `evaluate.py` process on the shipped model and data, timed from start to exit.

Run from the repository root:  .venv/bin/python scripts/bench/adapter_cost.py [extra overrides ...]
1. evaluate.py, cold cache: the base model on the SQuAD test (its baseline: the cost to beat);
2. train.py experiment=squad_adapter, cold cache (a fresh one): encodes the training questions, the eval
   corpus and queries once, trains the adapter on them, evaluates;
3. the same run again, warm (everything it encodes is cached: what is left is start-up, the adapter's
   training and evaluations that run only the adapter);
4. evaluate.py again, warm (start-up and cache reads): (3) - (4) bounds the adapter's own training.
Prints the four times, the run's extra cost over (1), NDCG@10 before and after at every dimension, and a
last line of JSON. About 8 minutes on 2 CPU cores. Extra arguments go to every command (e.g. trainer.max_epochs=3).
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from embedding_trainer.settings.resolvers import PROJECT_ROOT

ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}
QUIET = ["evaluation.show_progress_bar=false", "logger=none"]


def timed(script: str, folder: Path, cache: Path, extra: list[str]) -> float:
    """Seconds `script` (train.py or evaluate.py) takes to run into `folder` with cache `cache`."""
    command = [
        sys.executable,
        str(PROJECT_ROOT / script),
        f"hydra.run.dir={folder}",
        f"paths.cache_dir={cache}",
        *QUIET,
        *extra,
    ]
    start = time.perf_counter()
    subprocess.run(command, check=True, env=ENV, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    extra = sys.argv[1:]
    adapter = ["experiment=squad_adapter", *extra]
    with tempfile.TemporaryDirectory() as root:
        root = Path(root)
        seconds = {
            "evaluate_cold": timed("evaluate.py", root / "evaluate_cold", root / "cache_evaluate", extra),
            "adapter_cold": timed("train.py", root / "adapter_cold", root / "cache_adapter", adapter),
            "adapter_warm": timed("train.py", root / "adapter_warm", root / "cache_adapter", adapter),
            "evaluate_warm": timed("evaluate.py", root / "evaluate_warm", root / "cache_evaluate", extra),
        }
        results = json.loads((root / "adapter_cold" / "results.json").read_text())
    for name, value in seconds.items():
        print(f"{name}: {value:.1f} s")
    extra_cost = seconds["adapter_cold"] - seconds["evaluate_cold"]
    training_bound = seconds["adapter_warm"] - seconds["evaluate_warm"]
    print(f"the adapter run costs {extra_cost:.1f} s more than evaluating the base model alone")
    print(f"the adapter's training (warm run minus warm evaluation): at most {training_bound:.1f} s")
    metric = results["primary_metric"]
    print(f"| dim | {metric} base | adapter | change |\n|---|---|---|---|")
    table = {}
    for dim, before in results["baseline"].items():
        after = results["finetuned"][dim][metric]
        table[dim] = {"baseline": before[metric], "adapter": after}
        print(f"| {dim} | {before[metric]:.4f} | {after:.4f} | {after - before[metric]:+.4f} |")
    print(
        json.dumps(
            {
                "benchmark": "adapter_cost",
                **{name: round(value, 1) for name, value in seconds.items()},
                "extra_cost_s": round(extra_cost, 1),
                "training_at_most_s": round(training_bound, 1),
                metric: table,
            }
        )
    )


if __name__ == "__main__":
    main()
