"""Two objectives in one run against each objective trained alone, at the same steps per objective.

Runs three training jobs with `python train.py` (offline, on the shipped model and data) and compares
their fine-tuned scores at every dimension:
  1. experiment=retrieval_and_sts: SQuAD pairs (MNRL in Matryoshka) and STS benchmark (CoSENT in
     Matryoshka) in one run, 64 batches of each;
  2. retrieval alone: the default job (the same 2,048 SQuAD pairs, 64 batches of 32, ungrouped: the
     objective's own settings in experiment=retrieval_and_sts);
  3. STS alone: dataset_type=score loss=cosent on the same 1,024 STS rows (64 batches of 16).
Same seed, so each objective draws the same batches alone and together.

Run from the repository root:  .venv/bin/python scripts/compare_objectives.py [--out DIR] [override ...]
Overrides (e.g. objective_sampling=proportional, trainer.max_epochs=2) go to every job. Prints a
table per objective (alone, together, difference) and a last line of JSON. About 15 minutes on 2 CPU cores.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from embedding_trainer.settings.resolvers import PROJECT_ROOT

JOBS = {
    "together": ["experiment=retrieval_and_sts"],
    "retrieval_alone": ["data.min_steps=null", "data.group_by_length=false"],  # 64 batches, as together
    "sts_alone": ["dataset_type=score", "loss=cosent", "data.max_samples=1024"],
}
# (objective, job trained alone, metric): where each objective's score is read.
COMPARED = [("retrieval", "retrieval_alone", "ndcg@10"), ("sts", "sts_alone", "spearman_cosine")]


def run_job(name: str, overrides: list[str], out: Path) -> tuple[dict, float]:
    """Train one job into `out/<name>`; its results.json and wall-clock seconds."""
    folder = out / name
    command = [sys.executable, "train.py", f"hydra.run.dir={folder}", "overwrite=true", *overrides]
    started = time.time()
    subprocess.run(command, cwd=PROJECT_ROOT, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return json.loads((folder / "results.json").read_text(encoding="utf-8")), time.time() - started


def objective_scores(results: dict, objective: str, metric: str) -> dict[str, float]:
    """Fine-tuned `metric` by dimension: of `objective` in a run of several, else of the run itself."""
    scores = results["objectives"][objective] if results.get("objectives") else results
    return {dim: values[metric] for dim, values in scores["finetuned"].items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "outputs" / "compare_objectives")
    args, overrides = parser.parse_known_args()
    results, seconds = {}, {}
    for name, job in JOBS.items():
        results[name], seconds[name] = run_job(name, [*job, *overrides], args.out)
    summary = {"seconds": seconds, "objectives": {}}
    for objective, alone, metric in COMPARED:
        together = objective_scores(results["together"], objective, metric)
        single = objective_scores(results[alone], objective, metric)
        print(
            f"\n{objective}: {metric} (alone: {alone})\n| dim | alone | together | difference |\n|---|---|---|---|"
        )
        for dim in single:
            print(f"| {dim} | {single[dim]:.4f} | {together[dim]:.4f} | {together[dim] - single[dim]:+.4f} |")
        summary["objectives"][objective] = {"metric": metric, "alone": single, "together": together}
    print("\nWall clock (s): " + ", ".join(f"{name} {value:.0f}" for name, value in seconds.items()))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
