"""Shared by the training-throughput benchmarks: one training run of ours (`train(cfg)`) or of
sentence-transformers' SentenceTransformerTrainer on the same config, rows, loss, batch size,
schedule and precision, each timed over its training steps, in a child process of its own.

A side's result: samples (rows trained after the first `skip_steps` steps), seconds (from the end
of step `skip_steps`, or from the start of fit / of the trainer's loop when 0, to the end of the
last step), steps (ours also: real, non-padding tokens per sample), and the trained model.
"""

import argparse
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytorch_lightning as pl
from transformers import TrainerCallback


class StepClock:
    """Start time (the end of step `skip_steps`, or the loop's start when 0) and end time."""

    def __init__(self, skip_steps: int) -> None:
        self.skip_steps, self.start, self.end = skip_steps, None, None

    def begin(self) -> None:
        if self.skip_steps == 0:
            self.start = time.perf_counter()

    def step_done(self, step: int, synchronize) -> None:
        synchronize()
        self.end = time.perf_counter()
        if step == self.skip_steps:
            self.start = self.end


def _synchronize() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


class FitTimer(pl.Callback):
    """Times our loop: from fit start (data loading and the tokenize-once pass included)."""

    def __init__(self, skip_steps: int = 0) -> None:
        self.clock = StepClock(skip_steps)

    def on_fit_start(self, trainer, module):
        self.clock.begin()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.clock.step_done(trainer.global_step, _synchronize)


class LoopTimer(TrainerCallback):
    """Times SentenceTransformerTrainer's loop (its dataloader is built before it starts)."""

    def __init__(self, skip_steps: int = 0) -> None:
        self.clock = StepClock(skip_steps)

    def on_train_begin(self, args, state, control, **kwargs):
        self.clock.begin()

    def on_step_end(self, args, state, control, **kwargs):
        self.clock.step_done(state.global_step, _synchronize)


def compose(overrides: list[str], output_dir: str):
    """The training config with `overrides`, writing nothing lasting: no registry, logger,
    checkpoints, baseline evaluation or saved model."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import open_dict

    from embedding_trainer.settings.resolvers import CONFIG_DIR, register_resolvers

    register_resolvers()
    quiet = [
        f"paths.output_dir={output_dir}",
        f"paths.log_dir={output_dir}",
        "registry.path=null",
        "logger=none",
        "callbacks=none",
        "evaluation.baseline=false",
        "evaluation.show_progress_bar=false",
        "save_model=false",
        "data.min_steps=null",  # the epochs the config says, on both sides
    ]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = hydra_compose(config_name="train", overrides=quiet + list(overrides))
    with open_dict(cfg):
        cfg.pop("hydra", None)
    return cfg


def tokens_per_sample(datamodule) -> float:
    """Mean real tokens per training row over its input columns (after truncation)."""
    return float(datamodule.row_token_counts().mean())


def _measured(clock: StepClock, steps: int, rows: int, epochs: int, batch_size: int) -> dict:
    return {
        "samples": rows * epochs - clock.skip_steps * batch_size,
        "seconds": clock.end - clock.start,
        "steps": steps,
    }


def run_ours(cfg, skip_steps: int = 0) -> tuple[dict, object, object]:
    """Train with `train(cfg)`; returns the timing, the trained model and the data module."""
    from omegaconf import open_dict

    from embedding_trainer.train import train

    with open_dict(cfg):
        cfg.callbacks.fit_timer = {"_target_": f"{__name__}.FitTimer", "skip_steps": skip_steps}
    _, objects = train(cfg)
    timer = next(callback for callback in objects["trainer"].callbacks if isinstance(callback, FitTimer))
    datamodule = objects["datamodule"]
    result = _measured(
        timer.clock,
        objects["trainer"].global_step,
        len(datamodule.train_dataset),
        cfg.trainer.max_epochs,
        cfg.data.batch_size,
    )
    return {**result, "tokens_per_sample": tokens_per_sample(datamodule)}, objects["model"], datamodule


def run_reference(cfg, output_dir: str, skip_steps: int = 0) -> tuple[dict, object, object]:
    """Train the same config with SentenceTransformerTrainer: same rows (our data module loads
    them), model, loss, batch size, sampler kind, epochs, lr schedule, weight decay, clipping and
    precision. Returns the timing, the trained model and the data module."""
    import torch
    from hydra.utils import instantiate
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    from embedding_trainer.data.build import build_datamodule
    from embedding_trainer.training.losses import build_loss

    torch.manual_seed(cfg.seed)
    datamodule = build_datamodule(cfg)
    datamodule.load()
    model = instantiate(cfg.model.encoder)
    if cfg.data.max_length:
        model.max_seq_length = cfg.data.max_length
    precision = str(cfg.trainer.precision)
    training_args = SentenceTransformerTrainingArguments(
        output_dir=output_dir,
        per_device_train_batch_size=cfg.data.batch_size,
        num_train_epochs=cfg.trainer.max_epochs,
        learning_rate=cfg.optimizer.lr,
        weight_decay=cfg.optimizer.weight_decay,
        optim="adamw_torch_fused" if cfg.optimizer.get("fused") else "adamw_torch",
        lr_scheduler_type=cfg.scheduler.name,
        warmup_ratio=cfg.scheduler.warmup_ratio,
        max_grad_norm=cfg.trainer.gradient_clip_val,
        bf16=precision.startswith("bf16"),
        fp16=precision.startswith("16"),
        seed=cfg.seed,
        batch_sampler="no_duplicates"
        if "NoDuplicates" in cfg.loss.batch_sampler._target_
        else "batch_sampler",
        dataloader_num_workers=cfg.data.num_workers,
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        logging_steps=10_000,
        disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(),
    )
    timer = LoopTimer(skip_steps)
    trainer = SentenceTransformerTrainer(
        model=model,
        args=training_args,
        train_dataset=datamodule.train_dataset,
        loss=build_loss(cfg.loss, cfg.modifier, model),
        callbacks=[timer],
    )
    trainer.train()
    result = _measured(
        timer.clock,
        trainer.state.global_step,
        len(datamodule.train_dataset),
        cfg.trainer.max_epochs,
        cfg.data.batch_size,
    )
    return result, model, datamodule


def run_child(script: str, side: str, case: str, argv: list[str]) -> dict:
    """Run `script --child side case argv...` and return the JSON of its last stdout line, with
    samples_per_second added."""
    command = [sys.executable, script, "--child", side, case, *argv]
    process = subprocess.run(command, capture_output=True, text=True, check=False)
    if process.returncode != 0:
        sys.exit(f"{side} {case} failed:\n{process.stderr[-4000:]}")
    result = json.loads(process.stdout.strip().splitlines()[-1])
    result["samples_per_second"] = round(result["samples"] / result["seconds"], 2)
    return result


def child_parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the hidden `--child SIDE CASE` option of the benchmark children."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--child", nargs=2, metavar=("SIDE", "CASE"), help=argparse.SUPPRESS)
    return parser
