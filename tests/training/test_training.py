"""Training really trains: weights move, the loss falls, dropout is on, the model saves and reloads,
and a resumed run continues from its checkpoint."""

import json

import pytest
import torch
from sentence_transformers import SentenceTransformer

from conftest import logged_rows
from embedding_trainer.models import loading as models
from embedding_trainer.train import train

TINY = ["model=tiny", "evaluation.show_progress_bar=false", "data.max_eval_samples=16"]


def _encoder_weights(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


@pytest.mark.slow
def test_one_optimizer_step_changes_the_encoder_weights(make_cfg):
    cfg = make_cfg(
        *TINY,
        "trainer.max_steps=1",
        "scheduler.warmup_ratio=0",
        "data.max_samples=32",
        "logger=none",
        "callbacks=none",
        "evaluation.baseline=false",
    )
    from embedding_trainer.models import loading as models

    before = _encoder_weights(models.build_tiny_model(cfg.paths.cache_dir, **_tiny_args(cfg)))
    _, objects = train(cfg)
    after = _encoder_weights(objects["model"])
    assert objects["trainer"].global_step == 1
    changed = [name for name in before if not torch.equal(before[name], after[name])]
    assert any("encoder.layer" in name for name in changed)
    assert any("word_embeddings" in name for name in changed)


def _tiny_args(cfg) -> dict:
    return {k: v for k, v in cfg.model.encoder.items() if k not in ("_target_", "cache_dir")}


@pytest.mark.slow
def test_loss_falls_over_a_few_dozen_steps(make_cfg, tmp_path):
    run = tmp_path / "loss_run"
    cfg = make_cfg(
        *TINY,
        "modifier=none",
        "data.max_samples=128",
        "data.batch_size=16",
        "trainer.max_epochs=6",
        "trainer.log_every_n_steps=1",
        "callbacks=none",
        "evaluation.baseline=false",
        output_dir=run,
    )
    train(cfg)
    losses = [float(row["train/loss"]) for row in logged_rows(run) if row.get("train/loss")]
    assert len(losses) == 48
    first, last = sum(losses[:8]) / 8, sum(losses[-8:]) / 8
    assert last < first * 0.9, (first, last)


@pytest.mark.slow
def test_dropout_is_active_during_training_steps(make_cfg):
    cfg = make_cfg(*TINY, "trainer.max_steps=3", "data.max_samples=96", "logger=none", "callbacks=none")
    modes: list[bool] = []
    from embedding_trainer.training.module import EmbeddingModule

    original = EmbeddingModule.training_step

    def recording_step(self, batch, batch_idx):
        dropouts = [m for m in self.model.modules() if isinstance(m, torch.nn.Dropout)]
        assert dropouts and all(m.p > 0 for m in dropouts)
        modes.extend(m.training for m in dropouts)
        return original(self, batch, batch_idx)

    EmbeddingModule.training_step = recording_step
    try:
        train(cfg)
    finally:
        EmbeddingModule.training_step = original
    assert modes and all(modes)


def test_saved_model_reloads_and_encodes_to_the_configured_dimension(make_cfg, tmp_path):
    run = tmp_path / "save_run"
    cfg = make_cfg(*TINY, "debug=fdr", "logger=none", output_dir=run)
    train(cfg)
    reloaded = SentenceTransformer(str(run / "model"))
    embeddings = reloaded.encode(["a question", "a paragraph"])
    assert embeddings.shape == (2, cfg.model.dimension)
    results = json.loads((run / "results.json").read_text())
    assert set(results["finetuned"]) == {str(d) for d in cfg.matryoshka_dims}
    assert "| dimension | baseline | fine-tuned | change |" in (run / "results.md").read_text()


@pytest.mark.slow
def test_resume_continues_from_the_saved_step(make_cfg, tmp_path):
    first_run, second_run = tmp_path / "first", tmp_path / "second"
    common = [*TINY, "data.max_samples=32", "data.batch_size=8", "logger=none"]
    train(make_cfg(*common, "trainer.max_epochs=1", "checkpoints.keep=last", output_dir=first_run))
    checkpoint = first_run / "checkpoints" / "last.ckpt"
    assert torch.load(checkpoint, weights_only=False)["global_step"] == 4

    steps_run: list[int] = []
    from embedding_trainer.training.module import EmbeddingModule

    original = EmbeddingModule.training_step

    def recording_step(self, batch, batch_idx):
        steps_run.append(self.trainer.global_step)
        return original(self, batch, batch_idx)

    EmbeddingModule.training_step = recording_step
    try:
        _, objects = train(
            make_cfg(*common, "trainer.max_epochs=2", f"ckpt_path={checkpoint}", output_dir=second_run)
        )
    finally:
        EmbeddingModule.training_step = original
    assert steps_run == [4, 5, 6, 7]
    assert objects["trainer"].global_step == 8
    evaluation = objects["evaluation"]
    assert sorted(evaluation.history) == [4, 8]
    assert evaluation.baseline is not None
    assert json.loads((second_run / "results.json").read_text())["step"] == 8


def test_building_the_tiny_model_leaves_the_seeded_random_stream_alone(tmp_path):
    """A run that builds the tiny model (empty cache) draws the same random numbers afterwards as a
    run that loads it, so the first run in a fresh cache trains exactly like the later ones."""
    draws = []
    for _ in range(2):  # the first call builds the model into tmp_path, the second loads it
        torch.manual_seed(11)
        models.build_tiny_model(str(tmp_path))
        draws.append(torch.rand(4))
    assert torch.equal(draws[0], draws[1])
