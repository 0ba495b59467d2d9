"""A callback the DDP end-to-end tests add to a real `train.py` run (through `+callbacks.probe`):
it records what each rank's checkpointing saw of `val/score`; and the launcher of such a run."""

import json
import os
import subprocess
import sys
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


def run_ddp_sim(overrides: list[str], outputs: Path, probe: Path) -> subprocess.CompletedProcess:
    """`python train.py trainer=ddp_sim <overrides>` (two CPU processes) logging under `outputs`, with
    the probe writing to `probe`; raises AssertionError with its stderr when it fails."""
    from embedding_trainer.settings.resolvers import PROJECT_ROOT

    command = [
        sys.executable, "train.py", "trainer=ddp_sim", *overrides, f"paths.log_dir={outputs}",
        "+callbacks.probe._target_=ddp_probe.ValScoreProbe", f"+callbacks.probe.folder={probe}",
    ]  # fmt: skip
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        command, check=False, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Starting with 2 processes" in done.stdout + done.stderr
    return done
