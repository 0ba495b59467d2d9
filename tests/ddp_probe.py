"""Callbacks the DDP end-to-end tests add to a real `train.py` run (through `+callbacks.probe`):
what each rank's checkpointing saw of `val/score`, each rank's per-step losses and last gradients;
and the launcher of such a run."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytorch_lightning as pl
import torch


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


class StepProbe(pl.Callback):
    """For comparing a distributed run with one process on the global batch: turns dropout off (so
    both draw no random masks), sleeps `pause_s` after each step (a window to signal a running job
    in), and writes to `<folder>/`:
    - `steps_rank<global rank>.jsonl`, appended: `{"start": step, "node": ...}` when training (re)starts,
      then `{"step": step, "loss": loss}` per optimizer step (this rank's loss on its rows);
    - `grads_rank<global rank>.pt` at the end of training: the last step's gradients before the
      optimizer step (after DDP's all-reduce), flattened into one tensor."""

    def __init__(self, folder: str, pause_s: float = 0.0) -> None:
        self.folder = Path(folder)
        self.pause_s = pause_s
        self.gradients = None

    def _write(self, trainer: pl.Trainer, record: dict) -> None:
        with (self.folder / f"steps_rank{trainer.global_rank}.jsonl").open("a", encoding="utf-8") as file:
            file.write(json.dumps(record) + "\n")

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        for module in pl_module.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        self._write(trainer, {"start": trainer.global_step, "node": os.environ.get("SLURMD_NODENAME")})

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer) -> None:
        grads = [p.grad.flatten() for p in pl_module.parameters() if p.grad is not None]
        self.gradients = torch.cat(grads).detach().clone()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self._write(trainer, {"step": trainer.global_step, "loss": float(loss)})
        time.sleep(self.pause_s)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        torch.save(self.gradients, self.folder / f"grads_rank{trainer.global_rank}.pt")
