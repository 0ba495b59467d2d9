"""Training throughput on CPU: our Lightning loop (`train(cfg)`) against sentence-transformers'
SentenceTransformerTrainer, side by side, on the same model, rows, loss, batch size, schedule and
precision (see side_by_side.py for what is timed).

Run from the repository root:  .venv/bin/python scripts/bench/train_throughput.py [--case sts|squad|both]
Defaults reproduce the targets: all-MiniLM-L6-v2, fp32, one epoch, lr/warmup/weight decay from the config:
  sts:   CoSENT (no modifier) on the STS benchmark train split (5,749 pairs), batch 16; then the STS
         test Spearman (cosine, 384 dims) of both trained models, by the same evaluator.
  squad: MNRL in MatryoshkaLoss [384,256,128,64] on --squad-samples shuffled SQuAD (question,
         paragraph) pairs, batch 32, max length 256, batches without duplicates.
Ours runs as configured plus `data.group_by_length=true` (off with --no-grouping); tokenize-once is
on by default. Each side's precision: fp32 unless --ours-precision / --reference-precision bf16-mixed. Each side runs in its own child process; about 25 minutes on 2 CPU cores.
Prints samples/s of each side and the ratio ours / reference per case; the last line is JSON whose
"ratio" is the smallest ratio over the cases run.
"""

import json
import tempfile

from side_by_side import child_parser, compose, run_child, run_ours, run_reference

CASES = ("sts", "squad")


def case_overrides(case: str, args, ours: bool) -> list[str]:
    overrides = [f"data.group_by_length={str(ours and not args.no_grouping).lower()}"]
    overrides += [f"trainer.precision={args.ours_precision if ours else args.reference_precision}"]
    overrides += [f"model.encoder.name_or_path={args.model}"] if args.model else []
    if case == "sts":
        overrides += ["experiment=stsb_cosent", "modifier=none", "data.batch_size=16"]
        return overrides + ([f"data.max_samples={args.sts_samples}"] if args.sts_samples else [])
    return overrides + [
        f"data.max_samples={args.squad_samples}",
        "data.batch_size=32",
        f"data.max_length={args.max_length}",
    ]


def run_side(side: str, case: str, args) -> dict:
    """One side of one case (in a child process): its timing, and for sts the test Spearman."""
    from hydra.utils import instantiate

    with tempfile.TemporaryDirectory() as output_dir:
        cfg = compose(case_overrides(case, args, ours=side == "ours"), output_dir)
        result, model, datamodule = run_ours(cfg) if side == "ours" else run_reference(cfg, output_dir)
        if case == "sts":
            evaluator = instantiate(cfg.dataset_type.evaluator)(
                datamodule.eval_data, batch_size=64, show_progress_bar=False
            )
            result["spearman"] = evaluator(model, [cfg.model.dimension])[cfg.model.dimension][
                "spearman_cosine"
            ]
    return result


def main() -> None:
    parser = child_parser(__doc__)
    parser.add_argument("--case", choices=[*CASES, "both"], default="both")
    parser.add_argument("--model", default=None, help="model folder (default: the shipped all-MiniLM-L6-v2)")
    parser.add_argument(
        "--sts-samples", type=int, default=None, help="STS training pairs (default: all 5,749)"
    )
    parser.add_argument("--squad-samples", type=int, default=1024, help="SQuAD training pairs (of 5,078)")
    parser.add_argument("--max-length", type=int, default=256, help="SQuAD truncation in tokens, both sides")
    parser.add_argument("--no-grouping", action="store_true", help="ours without length-grouped batches")
    for side in ("ours", "reference"):
        parser.add_argument(
            f"--{side}-precision",
            default="32",
            choices=["32", "bf16-mixed"],
            help=f"{side}: fp32, or bf16 autocast (on a CPU with bf16 instructions: AVX512-BF16 or AMX)",
        )
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_side(*args.child, args)))
        return

    argv = ["--squad-samples", str(args.squad_samples), "--max-length", str(args.max_length)]
    argv += (["--sts-samples", str(args.sts_samples)] if args.sts_samples else []) + (
        ["--model", args.model] if args.model else []
    )
    argv += ["--no-grouping"] if args.no_grouping else []
    argv += ["--ours-precision", args.ours_precision, "--reference-precision", args.reference_precision]
    results = {}
    for case in CASES if args.case == "both" else (args.case,):
        ours, reference = (
            run_child(__file__, "ours", case, argv),
            run_child(__file__, "reference", case, argv),
        )
        ratio = ours["samples_per_second"] / reference["samples_per_second"]
        results[case] = {"ours": ours, "reference": reference, "ratio": round(ratio, 3)}
        line = (
            f"{case}: ours {ours['samples_per_second']} samples/s ({ours['seconds']:.0f} s, {ours['steps']} steps), "
            f"SentenceTransformerTrainer {reference['samples_per_second']} samples/s ({reference['seconds']:.0f} s, "
            f"{reference['steps']} steps), ratio {ratio:.2f}"
        )
        if case == "sts":
            line += f"; STS test Spearman ours {ours['spearman']:.4f}, reference {reference['spearman']:.4f}"
        print(line, flush=True)
    print(
        json.dumps(
            {"benchmark": "train_throughput", **results, "ratio": min(r["ratio"] for r in results.values())}
        )
    )


if __name__ == "__main__":
    main()
