"""CSV (default) and W&B (offline) loggers record the metrics and the resolved config."""

import pytest
import yaml

from embedding_trainer.train import train

pytestmark = pytest.mark.slow  # both tests train the tiny model

FAST = [
    "model=tiny",
    "debug=fdr",
    "evaluation.show_progress_bar=false",
    "trainer.fast_dev_run=false",
    "trainer.max_steps=2",
    "trainer.log_every_n_steps=1",
    "data.max_samples=32",
    "callbacks=none",
]


def test_csv_logger_writes_metrics_and_config(make_cfg, tmp_path):
    run = tmp_path / "csv_run"
    train(make_cfg(*FAST, "logger=csv", output_dir=run))
    metrics = (run / "csv" / "metrics.csv").read_text()
    assert "val/score" in metrics and "train/loss" in metrics
    hparams = yaml.safe_load((run / "csv" / "hparams.yaml").read_text())
    assert hparams["model"]["dimension"] == 32
    assert hparams["loss"]["_target_"].endswith("MultipleNegativesRankingLoss")


def test_wandb_logger_runs_offline_and_writes_its_files(make_cfg, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    run = tmp_path / "wandb_run"
    cfg = make_cfg(*FAST, "logger=wandb", output_dir=run)
    assert cfg.logger.wandb.offline is True
    train(cfg)
    import wandb

    wandb.finish()
    runs = list((run / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    run_files = list(runs[0].glob("run-*.wandb"))
    assert len(run_files) == 1, "no W&B run file written"
    # The offline run file holds the logged config and history records (protobuf with JSON values).
    record = run_files[0].read_bytes()
    assert b"MultipleNegativesRankingLoss" in record and b"matryoshka_dims" in record
    assert b"val/score" in record and b"train/loss" in record
