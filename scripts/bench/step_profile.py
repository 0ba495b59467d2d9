"""Where one CPU training step's time goes: the default loss (MNRL in MatryoshkaLoss, built by
`build_loss`) on real SQuAD pairs, forward, backward and AdamW, under torch.profiler, in fp32 and
with bf16 autocast, side by side in one process.

Run from the repository root:  .venv/bin/python scripts/bench/step_profile.py [--batch-size B]
Defaults: all-MiniLM-L6-v2, 32 pairs per step, max length 256, 2 warm-up and 3 profiled steps per
precision, torch's default threads. Prints each precision's mean step time and its top operators by
self CPU time (matrix products, attention, the optimizer, the rest), and the bf16 / fp32 speed-up;
the last line is one JSON object. bf16 pays only on a CPU with bf16 instructions (AVX512-BF16, AMX).
"""

import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from bench_args import bench_parser, load_bench_model
from hydra import compose, initialize_config_dir
from torch.profiler import ProfilerActivity, profile

from embedding_trainer.data.sources import read_retrieval_split
from embedding_trainer.settings.resolvers import CONFIG_DIR, PROJECT_ROOT
from embedding_trainer.training.losses import build_loss


def profiled_steps(loss, optimizer, features, bf16: bool, warmup: int, steps: int) -> tuple[float, list]:
    """Mean seconds per step over `steps` steps (after `warmup`), and the profiler's operator table."""

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            value = loss(features, torch.zeros(len(features[0]["input_ids"])))
        value.backward()
        optimizer.step()
        optimizer.zero_grad()

    for _ in range(warmup):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        seconds = (time.perf_counter() - start) / steps
    events = sorted(profiler.key_averages(), key=lambda event: event.self_cpu_time_total, reverse=True)
    total = sum(event.self_cpu_time_total for event in events)
    return seconds, [(event.key, event.self_cpu_time_total / total) for event in events]


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--top", type=int, default=8, help="operators shown per precision")
    args = parser.parse_args()

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train")
    pairs = read_retrieval_split(PROJECT_ROOT / "data" / "squad_pairs", "train").pairs()
    rows = pairs.select(range(args.batch_size))
    result = {"benchmark": "step_profile", "batch_size": args.batch_size, "max_length": args.max_length}
    for name, bf16 in (("fp32", False), ("bf16", True)):
        torch.manual_seed(0)
        model = load_bench_model(args, max_seq_length=args.max_length)
        model.train()
        loss = build_loss(cfg.loss, cfg.modifier, model)
        optimizer = torch.optim.AdamW(loss.parameters(), lr=2e-5)
        features = [model.preprocess(rows["anchor"]), model.preprocess(rows["positive"])]
        seconds, table = profiled_steps(loss, optimizer, features, bf16, args.warmup, args.steps)
        print(f"{name}: {seconds:.2f} s per step; top operators by self CPU time:")
        for key, share in table[: args.top]:
            print(f"  {share:6.1%}  {key}")
        result[name] = {
            "step_s": round(seconds, 3),
            "top": [[key, round(share, 4)] for key, share in table[: args.top]],
        }
    result["ratio"] = round(result["fp32"]["step_s"] / result["bf16"]["step_s"], 3)
    print(f"bf16 autocast is {result['ratio']:.2f}x faster per step")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
