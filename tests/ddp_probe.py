"""A callback the DDP end-to-end test adds to a real `train.py` run (through `+callbacks.probe`):
it records what each rank's checkpointing saw of `val/score`."""

import json
from pathlib import Path

import pytorch_lightning as pl


class ValScoreProbe(pl.Callback):
    """At the end of training writes `<folder>/val_score_rank<global rank>.json` with that rank's
    last `val/score` and its checkpoint callback's best score."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        seen = {
            "val/score": float(trainer.callback_metrics["val/score"]),
            "best_model_score": float(trainer.checkpoint_callback.best_model_score),
        }
        (self.folder / f"val_score_rank{trainer.global_rank}.json").write_text(
            json.dumps(seen), encoding="utf-8"
        )
