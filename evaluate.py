"""Evaluate a model without training: `python evaluate.py [group=option ...] [key=value ...]` (`--help`: the groups and options)."""

from embedding_trainer.cli import evaluate_main

if __name__ == "__main__":
    evaluate_main()
