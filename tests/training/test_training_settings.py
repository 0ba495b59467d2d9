"""The typed settings the training phases take, read once from the composed config: each objective's
(`ObjectiveSettings`: its loss, modifier and regularizer nodes, penalised dimensions, batch size, weight and
the loss's harness keys) and the run's (`TrainingSettings`: the Hydra nodes of the trainer, callbacks,
loggers, optimizer and scheduler, the fit's length, the adapter run)."""

from embedding_trainer.adapters.training import adapter_settings
from embedding_trainer.settings.training import AdapterRun, TrainingSettings
from embedding_trainer.training.objectives import ObjectiveSettings


def test_one_objective_is_the_runs_own_loss_modifier_and_data(make_cfg):
    cfg = make_cfg("model=tiny", "loss=mnrl", "data.batch_size=8", "regularizer=variance")
    objective = ObjectiveSettings.from_config(cfg)
    assert (objective.name, objective.weight, objective.batch_size) == (None, 1.0, 8)
    assert objective.loss_name == "MultipleNegativesRankingLoss"
    assert objective.loss == cfg.loss and objective.modifier == cfg.modifier
    assert objective.regularizer._target_ == cfg.regularizer._target_
    assert objective.penalized_dims == tuple(cfg.matryoshka_dims)  # Matryoshka truncates: its dims
    assert objective.mask_known_relevance and objective.in_batch_negatives
    assert not objective.tie_encoder_decoder


def test_without_a_truncating_modifier_the_full_dimension_is_penalised(make_cfg):
    for modifier in ("none", "adaptive_layer"):
        cfg = make_cfg("model=tiny", f"modifier={modifier}", "regularizer=variance")
        assert ObjectiveSettings.from_config(cfg).penalized_dims == (32,)


def test_each_of_several_objectives_has_its_own_settings_and_weight(make_cfg):
    cfg = make_cfg(
        "model=tiny",
        "objectives=[retrieval,sts]",
        "objectives.retrieval.data.batch_size=16",
        "objectives.sts.weight=0.5",
    )
    retrieval = ObjectiveSettings.from_config(cfg, "retrieval")
    sts = ObjectiveSettings.from_config(cfg, "sts")
    assert (retrieval.name, retrieval.weight, retrieval.batch_size) == ("retrieval", 1.0, 16)
    assert (sts.name, sts.weight, sts.loss_name) == ("sts", 0.5, "CoSENTLoss")
    assert retrieval.in_batch_negatives and not sts.in_batch_negatives


def test_the_runs_training_settings_keep_the_nodes_hydra_instantiates(make_cfg, tmp_path):
    cfg = make_cfg("model=tiny", "data.min_steps=7", "trainer.max_epochs=3", output_dir=tmp_path / "run")
    settings = TrainingSettings.from_config(cfg)
    assert settings.trainer == cfg.trainer and settings.optimizer == cfg.optimizer
    assert settings.callbacks == tuple(cfg.callbacks.values())
    assert settings.loggers == tuple(cfg.logger.values())
    assert (settings.max_epochs, settings.min_steps) == (3, 7)
    assert settings.output_dir == tmp_path / "run" and settings.ckpt_path is None
    assert settings.sweep_trial is None and settings.adapter is None


def test_an_adapter_run_reads_its_loss_scale_and_dims(make_cfg):
    cfg = make_cfg("model=tiny", "adapter=linear", "loss.scale=25", "evaluation.batch_size=16")
    adapter = TrainingSettings.from_config(cfg).adapter
    assert adapter == AdapterRun(
        settings=adapter_settings(cfg),
        scale=25.0,
        dims=tuple(cfg.matryoshka_dims),
        batch_size=16,
        show_progress_bar=cfg.evaluation.show_progress_bar,
    )
