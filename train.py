"""Train an embedding model: `python train.py [group=option ...] [key=value ...]` (`--help`: the groups and options)."""

from embedding_trainer.cli import train_main

if __name__ == "__main__":
    train_main()
