"""Training throughput on one GPU: our Lightning loop against SentenceTransformerTrainer, side by
side (see side_by_side.py for what is timed), with model FLOP utilization.

Run from the repository root on a CUDA machine:  .venv/bin/python scripts/bench/gpu_throughput.py
Defaults reproduce the target: a BERT-base-sized encoder (768 hidden, 12 layers, 12 heads) with
random weights built from config (nothing downloads), MNRL in MatryoshkaLoss [768,512,256,128,64],
batch 128, max sequence length 256, bf16-mixed, fused AdamW, batches without duplicates, one epoch
over the 5,078 SQuAD (question, paragraph) pairs; the first --skip-steps steps (CUDA warm-up) are
not timed. Ours adds its levers: tokenize once, length-grouped batches, --workers loader workers
with pinned memory. Both sides use PyTorch's SDPA attention (transformers' default for BERT).

MFU = 6 x parameters x real (non-padding) tokens per second / peak dense bf16 FLOP/s (--peak-tflops;
default 989 for H100/H200 SXM). For a quick check of the script on CPU:
  .venv/bin/python scripts/bench/gpu_throughput.py --hidden 64 --layers 2 --heads 2 --batch 32 \
      --max-samples 256 --precision 32 --skip-steps 2 --workers 0 --peak-tflops 1
The last line is JSON with both figures and "ratio" (ours samples/s over the reference's).
"""

import json
import tempfile

from side_by_side import child_parser, compose, run_child, run_ours, run_reference


def case_overrides(args, ours: bool, output_dir: str) -> list[str]:
    import torch

    dims = [d for d in (512, 256, 128, 64) if d < args.hidden] or [args.hidden // 2]
    return [
        "model=tiny",
        f"paths.cache_dir={output_dir}/models",
        f"model.encoder.hidden_size={args.hidden}",
        f"model.encoder.num_layers={args.layers}",
        f"model.encoder.num_heads={args.heads}",
        f"model.encoder.max_seq_length={args.max_length}",
        f"model.dimension={args.hidden}",
        f"model.matryoshka_dims=[{','.join(map(str, [args.hidden, *dims]))}]",
        f"model.lr={args.lr}",
        "trainer.devices=1",
        f"trainer.precision={args.precision}",
        f"data.max_samples={args.max_samples or 'null'}",
        f"data.batch_size={args.batch}",
        f"data.max_length={args.max_length}",
        f"data.num_workers={args.workers if ours else args.reference_workers}",
        f"+optimizer.fused={str(torch.cuda.is_available()).lower()}",
        f"data.group_by_length={str(ours).lower()}",
        f"data.tokenize_once={str(ours).lower()}",
    ]


def run_side(side: str, args) -> dict:
    import torch

    with tempfile.TemporaryDirectory() as output_dir:
        cfg = compose(case_overrides(args, side == "ours", output_dir), output_dir)
        if side == "ours":
            result, model, _ = run_ours(cfg, args.skip_steps)
        else:
            result, model, _ = run_reference(cfg, output_dir, args.skip_steps)
    result["parameters"] = sum(parameter.numel() for parameter in model.parameters())
    result["device"] = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    return result


def main() -> None:
    parser = child_parser(__doc__)
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--max-samples", type=int, default=None, help="training pairs (default: all 5,078)")
    parser.add_argument(
        "--precision", default="bf16-mixed", help="Lightning precision: bf16-mixed, 16-mixed or 32"
    )
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--workers", type=int, default=4, help="our loader workers (pinned memory on CUDA)")
    parser.add_argument(
        "--reference-workers", type=int, default=0, help="the reference's loader workers (its default: 0)"
    )
    parser.add_argument("--skip-steps", type=int, default=5, help="first steps left out of the timing")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="peak dense bf16 TFLOP/s of the GPU")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_side(args.child[0], args)))
        return

    argv = [
        f"--{key.replace('_', '-')}={value}"
        for key, value in vars(args).items()
        if key != "child" and value is not None
    ]
    ours = run_child(__file__, "ours", "gpu", argv)
    reference = run_child(__file__, "reference", "gpu", argv)
    tokens = ours["tokens_per_sample"]
    for result in (ours, reference):
        flops = 6 * result["parameters"] * result["samples_per_second"] * tokens
        result["mfu"] = round(flops / (args.peak_tflops * 1e12), 4)
    ratio = ours["samples_per_second"] / reference["samples_per_second"]
    print(
        f"{ours['device']}: ours {ours['samples_per_second']} samples/s (MFU {ours['mfu']:.1%}), "
        f"SentenceTransformerTrainer {reference['samples_per_second']} samples/s (MFU {reference['mfu']:.1%}), "
        f"ratio {ratio:.2f}; {ours['parameters'] / 1e6:.0f}M parameters, {tokens:.0f} real tokens per pair"
    )
    print(
        json.dumps(
            {"benchmark": "gpu_throughput", "ours": ours, "reference": reference, "ratio": round(ratio, 3)}
        )
    )


if __name__ == "__main__":
    main()
