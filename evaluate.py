"""Evaluate a model without training: `python evaluate.py [group=option ...] [key=value ...]` (see README.md)."""

from embedding_trainer.evaluate import main

if __name__ == "__main__":
    main()
