"""Train an embedding model: `python train.py [group=option ...] [key=value ...]` (see README.md)."""

from embedding_trainer.train import main

if __name__ == "__main__":
    main()
