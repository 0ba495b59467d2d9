"""W&B (offline): one group per multi-run, the overrides as tags, the per-dimension results table, and
the W&B run closed after every run, failed or not."""

import json
import os
import subprocess
import sys

import pytest
import wandb

from embedding_trainer.settings.resolvers import PROJECT_ROOT
from embedding_trainer.train import train

# One training step on the tiny model (not fast_dev_run: Lightning turns loggers off there).
JOB = [
    "model=tiny",
    "debug=fdr",
    "trainer.fast_dev_run=false",
    "trainer.max_steps=1",
    "dataset_type=score",
    "loss=cosent",
    "callbacks=none",
    "logger=wandb",
    "evaluation.show_progress_bar=false",
]


def run_records(run_dir) -> bytes:
    """The offline run's record file (protobuf holding the run's settings, config, history and summary)."""
    [record] = run_dir.glob("run-*.wandb")
    return record.read_bytes()


@pytest.mark.slow
def test_multirun_is_one_group_with_override_tags_and_a_failed_run_does_not_break_the_next(
    tmp_path, model_cache
):
    """Job 0 crashes after its W&B run started (AdamW refuses its negative epsilon); job 1 must
    still get its own W&B run, in the same group, tagged with its overrides, with the results table."""
    command = [
        sys.executable,
        str(PROJECT_ROOT / "train.py"),
        "-m",
        *JOB,
        "+optimizer.eps=-1.0,1e-8",
        f"paths.log_dir={tmp_path / 'outputs'}",
        f"paths.cache_dir={model_cache}",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    env.pop("WANDB_API_KEY", None)
    result = subprocess.run(
        command, check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert (
        result.returncode != 0 and "Invalid epsilon value" in result.stderr
    )  # Hydra reports job 0's error last

    [sweep_dir] = (tmp_path / "outputs" / "default" / "multiruns").iterdir()
    [failed_run] = sweep_dir.glob("0_*/wandb/offline-run-*")
    [run] = sweep_dir.glob("1_*/wandb/offline-run-*")
    assert (run.parents[1] / "results.json").exists()
    group = f"default-{sweep_dir.name}".encode()
    assert group in run_records(failed_run) and group in run_records(run)
    records = run_records(run)
    assert b"+optimizer.eps=1e-08" in records and b"loss=cosent" in records and b"logger=wandb" in records
    assert b"+optimizer.eps=1e-08" not in run_records(failed_run)  # its own run, not job 0's continued
    [table] = run.glob("files/media/table/results/spearman_cosine_*.table.json")
    logged = json.loads(table.read_text())
    results = json.loads((run.parents[1] / "results.json").read_text())
    metric = results["primary_metric"]
    assert logged["columns"] == [
        "dimension",
        "baseline",
        "fine-tuned",
        "change",
        "ci_low",
        "ci_high",
        "p_value",
        "excludes_zero",
    ]
    assert logged["data"] == [  # no interval: the similarity evaluator has no per-example scores
        [
            int(dim),
            results["baseline"][dim][metric],
            values[metric],
            values[metric] - results["baseline"][dim][metric],
            None,
            None,
            None,
            None,
        ]
        for dim, values in results["finetuned"].items()
    ]


@pytest.mark.slow
def test_train_leaves_no_wandb_run_open(make_cfg, tmp_path, monkeypatch):
    """After train() raises, and after it returns, no W&B run is active."""
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    with pytest.raises(ValueError, match="Invalid epsilon value"):  # AdamW's, once training started
        train(make_cfg(*JOB, "+optimizer.eps=-1.0", output_dir=tmp_path / "failed"))
    assert wandb.run is None
    train(make_cfg(*JOB, output_dir=tmp_path / "run"))
    assert wandb.run is None
