"""Per-step communication of `trainer=ddp` with cross-device negatives, counted on real training steps.

N processes (gloo on CPU, as `trainer=ddp_sim`) train the default loss (MNRL in MatryoshkaLoss, built by
`build_loss` for N processes, so it gathers embeddings across them) under DistributedDataParallel with the
settings of conf/trainer/ddp.yaml, on real SQuAD (question, paragraph) pairs. Counted in every process:
  - the gradient all-reduce: a DDP communication hook around the default all-reduce records each
    bucket's size and when its all-reduce is handed to the process group;
  - every collective issued from Python (the embedding all-gather and its backward), by wrapping
    torch.distributed's functions: calls and bytes per step.
Timed: the whole step (forward, backward, optimizer) and its forward. The byte counts do not depend on
the hardware; the times are this machine's (CPU compute, gloo over shared memory) and only say how the
step's time splits here. docs/ddp_communication.md turns the bytes into predictions for GPU nodes.

Run from the repository root:  .venv/bin/python scripts/bench/ddp_communication.py [--model M] [--steps S]
Defaults: all-MiniLM-L6-v2, 2 processes, batch 32 per process, max length 256, 4 steps after 1 warm-up
step, 1 thread per process: about 2 minutes on 2 CPU cores. The last line is one JSON object.
"""

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from bench_args import bench_parser, load_bench_model
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.nn.parallel import DistributedDataParallel

from embedding_trainer.data.sources import read_retrieval_split
from embedding_trainer.models.loading import build_tiny_model
from embedding_trainer.settings.resolvers import CONFIG_DIR, PROJECT_ROOT
from embedding_trainer.training.losses import build_loss

# The collectives the embedding gather issues (torch.distributed.nn's all-gather, and its backward: a
# reduce-scatter on NCCL, an all-to-all or, on gloo, one scatter per process), and the block of one
# process in each (an all-gather of block B brings (N - 1) x B into every process). DDP's gradient
# all-reduce is counted by its hook instead.
BLOCK_OF = {
    "all_gather": lambda tensor_list, tensor, *rest, **kw: tensor,
    "reduce_scatter": lambda output, input_list, *rest, **kw: output,
    "all_to_all": lambda output_list, input_list, *rest, **kw: input_list[0],
    "scatter": lambda tensor, *rest, **kw: tensor,
}


class Counter:
    """Bytes and calls of the collectives of the current step."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.gradient_buckets: list[int] = []
        self.python_collectives: dict[str, list[int]] = {}

    def gradient_hook(self, state, bucket):
        """DDP's default all-reduce of one gradient bucket, its size recorded."""
        self.gradient_buckets.append(bucket.buffer().numel() * bucket.buffer().element_size())
        return default_hooks.allreduce_hook(state, bucket)

    def count_python_collectives(self) -> None:
        """Wraps each collective of `BLOCK_OF` in torch.distributed to record its block's bytes."""
        for name, block_of in BLOCK_OF.items():
            original = getattr(dist, name)

            def counted(*args, _name=name, _block_of=block_of, _original=original, **kwargs):
                block = _block_of(*args, **kwargs)
                self.python_collectives.setdefault(_name, []).append(block.numel() * block.element_size())
                return _original(*args, **kwargs)

            setattr(dist, name, counted)


class LossOnly(torch.nn.Module):
    """The loss (which holds the model) as the module DDP wraps: forward returns the loss value."""

    def __init__(self, loss: torch.nn.Module) -> None:
        super().__init__()
        self.loss = loss

    def forward(self, features, labels):
        return self.loss(features, labels)


def ddp_settings() -> dict:
    """The DistributedDataParallel keyword arguments conf/trainer/ddp.yaml passes to DDPStrategy."""
    strategy = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "trainer" / "ddp.yaml")["strategy"])
    strategy.pop("_target_")
    return strategy


def load_model(args: argparse.Namespace, folder: str):
    """The measured model: `--random-encoder`'s BERT of that shape (built under `folder`), else `--model`."""
    if args.random_encoder:
        hidden, layers, heads = args.random_encoder
        return build_tiny_model(f"{folder}/models", hidden, layers, heads, args.max_length)
    model = load_bench_model(args)
    model.max_seq_length = args.max_length
    return model


def worker(rank: int, args: argparse.Namespace, folder: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=args.processes
    )
    try:
        torch.set_num_threads(args.threads)
        torch.manual_seed(0)
        dims = [f"model.matryoshka_dims=[{','.join(map(str, args.dims))}]"] if args.dims else []
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose("train", overrides=dims)
        model = load_model(args, folder)
        loss = build_loss(cfg.loss, cfg.modifier, model, world_size=args.processes)
        settings = ddp_settings()
        ddp = DistributedDataParallel(LossOnly(loss), **settings)
        counter = Counter()
        ddp.register_comm_hook(None, counter.gradient_hook)
        counter.count_python_collectives()
        optimizer = torch.optim.AdamW(ddp.parameters(), lr=2e-5)
        pairs = read_retrieval_split(PROJECT_ROOT / "data" / "squad_pairs", "train").pairs()
        per_step = args.batch_size * args.processes
        steps, forwards = [], []
        for step in range(args.warmup + args.steps):
            rows = pairs.select(
                range(
                    step * per_step + rank * args.batch_size, step * per_step + (rank + 1) * args.batch_size
                )
            )
            features = [model.preprocess(rows["anchor"]), model.preprocess(rows["positive"])]
            counter.reset()
            dist.barrier()
            start = time.perf_counter()
            value = ddp(features, torch.zeros(args.batch_size))
            forward = time.perf_counter() - start
            value.backward()
            optimizer.step()
            optimizer.zero_grad()
            dist.barrier()
            if step >= args.warmup:
                steps.append(time.perf_counter() - start)
                forwards.append(forward)
        if rank == 0:
            parameters = sum(p.numel() for p in model.parameters())
            result = {
                "benchmark": "ddp_communication",
                "model": model_name(args),
                "matryoshka_dims": list(cfg.matryoshka_dims),
                "parameters": parameters,
                "processes": args.processes,
                "batch_per_process": args.batch_size,
                "max_length": args.max_length,
                "ddp_settings": settings,
                "gradient_buckets_per_step": len(counter.gradient_buckets),
                "gradient_allreduce_bytes_per_step": sum(counter.gradient_buckets),
                "python_collectives_per_step": {
                    name: {"calls": len(sizes), "block_bytes": sum(sizes)}
                    for name, sizes in counter.python_collectives.items()
                },
                "step_s": sum(steps) / len(steps),
                "forward_s": sum(forwards) / len(forwards),
            }
            Path(folder, "result.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


def model_name(args: argparse.Namespace) -> str:
    if args.random_encoder:
        return "random BERT, hidden {}, {} layers, {} heads".format(*args.random_encoder)
    return args.model or "all-MiniLM-L6-v2"


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument(
        "--random-encoder",
        type=int,
        nargs=3,
        metavar=("HIDDEN", "LAYERS", "HEADS"),
        help="a BERT of this shape with random weights instead (768 12 12: BERT-base-sized, as gpu_throughput.py)",
    )
    parser.add_argument("--dims", type=int, nargs="+", help="Matryoshka dims (default: the config's)")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32, help="rows per process per step")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads of every process")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        load_model(args, folder)  # built once here, so the processes only load it
        mp.start_processes(worker, args=(args, folder), nprocs=args.processes, start_method="spawn")
        result = json.loads(Path(folder, "result.json").read_text())
    megabytes = result["gradient_allreduce_bytes_per_step"] / 1e6
    print(
        f"{result['model']}: {result['parameters']:,} parameters; Matryoshka dims {result['matryoshka_dims']}"
    )
    print(f"DDP settings {result['ddp_settings']}; {args.processes} processes of {args.batch_size} rows")
    print(
        f"gradient all-reduce per step: {megabytes:.1f} MB in {result['gradient_buckets_per_step']} buckets"
    )
    for name, counted in result["python_collectives_per_step"].items():
        print(
            f"{name} per step: {counted['calls']} calls, blocks of {counted['block_bytes'] / 1e3:.1f} kB in all"
        )
    print(f"step {result['step_s']:.2f} s (forward {result['forward_s']:.2f} s) on this machine")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
