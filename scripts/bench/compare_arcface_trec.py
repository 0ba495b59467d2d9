"""ArcFace against the batch-hard triplet loss on the shipped TREC questions (dataset_type=single_class):
the same model, rows, seed, batch size, learning rate, modifier (Matryoshka, the default) and number of
optimizer steps, each trained with the real `train(cfg)`; k-NN (k=5) accuracy and macro-F1 of the 500
TREC test questions among the training questions, at every Matryoshka dimension, before training and
after each loss, side by side.

Run from the repository root:  .venv/bin/python scripts/bench/compare_arcface_trec.py [--steps N]
    [--max-samples N] [--model NAME] [extra Hydra overrides for both runs, e.g. model.lr=1e-4]
Defaults: the default model (all-MiniLM-L6-v2, model=minilm), all 5,452 training questions, batch 32,
170 steps (about one epoch), seed 42. Extra overrides apply to both runs. Prints the
table; the last line is one JSON object with every number.
The table in docs/losses.md: `--max-samples 2000 --steps 60` (14 minutes for both runs on 2 CPU cores shared
with other jobs; the defaults take several times longer there).
"""

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from side_by_side import compose  # after the environment settings above

LOSSES = ("arcface", "batch_hard_triplet")
# Both sides start from the same baseline, evaluated once per run; the forgetting guard and the health
# probe are not what is compared here.
COMPARED = ["evaluation.baseline=true", "evaluation.forgetting_guard=null", "evaluation.health=null"]


def run(loss: str, args: argparse.Namespace, output_dir: str) -> dict:
    """Train with `loss`; returns its baseline and fine-tuned metrics per dimension and its time."""
    from embedding_trainer.train import train

    overrides = [
        f"model={args.model}",
        "dataset_type=single_class",
        f"loss={loss}",
        f"seed={args.seed}",
        f"data.batch_size={args.batch_size}",
        f"data.max_samples={'null' if args.max_samples is None else args.max_samples}",
        f"trainer.max_steps={args.steps}",
        "trainer.max_epochs=-1",  # the steps decide: both losses train the same number of steps
        *args.overrides,
    ]
    start = time.perf_counter()
    _, objects = train(compose([*COMPARED, *overrides], output_dir))
    seconds = time.perf_counter() - start
    evaluation = objects["evaluation"]
    return {
        "steps": objects["trainer"].global_step,
        "seconds": round(seconds, 1),
        "baseline": {int(dim): values for dim, values in evaluation.baseline.items()},
        "fine_tuned": {
            int(dim): values for dim, values in evaluation.history[max(evaluation.history)].items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", default="minilm", help="a model/ option (default: minilm, the default model)"
    )
    parser.add_argument("--steps", type=int, default=170, help="optimizer steps of each run")
    parser.add_argument(
        "--max-samples", type=int, default=None, help="training questions (default: all 5,452)"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides applied to both runs")
    args = parser.parse_args()

    results = {}
    with tempfile.TemporaryDirectory(prefix="compare_arcface_trec_") as folder:
        for loss in LOSSES:
            results[loss] = run(loss, args, os.path.join(folder, loss))
            print(f"{loss}: {results[loss]['steps']} steps in {results[loss]['seconds']} s", flush=True)

    baseline = results[LOSSES[0]]["baseline"]
    header = [
        "dim",
        "base acc",
        *(f"{loss} acc" for loss in LOSSES),
        "base F1",
        *(f"{loss} F1" for loss in LOSSES),
    ]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for dim in sorted(baseline, reverse=True):
        accuracy = [results[loss]["fine_tuned"][dim]["accuracy"] for loss in LOSSES]
        f1 = [results[loss]["fine_tuned"][dim]["macro_f1"] for loss in LOSSES]
        cells = [baseline[dim]["accuracy"], *accuracy, baseline[dim]["macro_f1"], *f1]
        print(f"| {dim} | " + " | ".join(f"{value:.4f}" for value in cells) + " |")
    print(json.dumps({"benchmark": "compare_arcface_trec", "settings": vars(args), "results": results}))


if __name__ == "__main__":
    main()
