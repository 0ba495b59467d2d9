"""Phase 4 of a run, its second half: the training loss around the model (an adapter's, or the loss
configs' with LoRA), in the LightningModule that trains, with the checkpoint it resumes from."""

from dataclasses import dataclass
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from sentence_transformers import SentenceTransformer

from embedding_trainer.adapters.training import adapter_kind, adapter_training
from embedding_trainer.data import EmbeddingDataModule
from embedding_trainer.data.objectives import ObjectivesDataModule
from embedding_trainer.models.lora import (
    ParameterCount,
    build_loss_with_lora,
    lora_settings,
    trained_parameters,
)
from embedding_trainer.phases.evaluation import Evaluations
from embedding_trainer.runs.resume import resume_checkpoint
from embedding_trainer.settings.checks import check_checkpoint_fits
from embedding_trainer.training.declared import needs_of
from embedding_trainer.training.losses import build_loss
from embedding_trainer.training.module import EmbeddingModule
from embedding_trainer.training.objectives import WeightedObjectiveLoss, objective_names, objective_weights
from embedding_trainer.training.regularizers import regularized
from embedding_trainer.training.relevance_mask import with_relevance_mask
from embedding_trainer.utils.log import get_logger

log = get_logger(__name__)


@dataclass
class TrainingModule:
    """The LightningModule that trains (`module`: the model and its loss), its `parameters` (trainable
    and total) and `ckpt_path`, the checkpoint the fit resumes from (None: a fresh start)."""

    module: EmbeddingModule
    parameters: ParameterCount
    ckpt_path: str | None


def build_module(
    cfg: DictConfig,
    model: SentenceTransformer,
    datamodule: EmbeddingDataModule | ObjectivesDataModule,
    parts: list[tuple[DictConfig, EmbeddingDataModule]],
    evaluations: Evaluations,
    world_size: int,
) -> TrainingModule:
    """`model` and its training loss (`training_loss`) with `cfg.optimizer` and `cfg.scheduler`; the
    checkpoint to resume from (`resume_checkpoint`) is checked to fit it, and the evaluators that score
    with the loss (a classifier's) are given it."""
    loss = training_loss(cfg, model, datamodule, parts, evaluations, world_size)
    module = EmbeddingModule(model, loss, instantiate(cfg.optimizer), instantiate(cfg.scheduler))
    parameters = ParameterCount.of(module)  # the optimizer takes the trainable ones
    log.info(
        f"Trainable parameters (model and loss): {trained_parameters(parameters, lora_settings(cfg.model))}"
    )
    ckpt_path = resume_checkpoint(Path(cfg.paths.output_dir), cfg.ckpt_path)
    if ckpt_path is not None:
        check_checkpoint_fits(ckpt_path, module)
    test = evaluations.test
    for scorer in (evaluations.evaluator, test.evaluator if test else None):
        if scorer is not None:
            scorer.loss = module.loss
    return TrainingModule(module, parameters, ckpt_path)


def training_loss(
    cfg: DictConfig,
    model: SentenceTransformer,
    datamodule: EmbeddingDataModule | ObjectivesDataModule,
    parts: list[tuple[DictConfig, EmbeddingDataModule]],
    evaluations: Evaluations,
    world_size: int,
) -> torch.nn.Module:
    """The loss that trains `model`: with an adapter (`cfg.adapter`), the adapter's, on the frozen
    embeddings of the training texts (computed once here); else the objectives' (`run_loss`), with
    the adapters of `cfg.model.lora` added to `model` (null: none)."""
    if adapter_kind(cfg):
        return adapter_training(
            model,
            datamodule,
            evaluations.cache,
            [callback.evaluator for callback in evaluations.before_and_after()],
            cfg.loss.scale,
            list(cfg.matryoshka_dims) if cfg.modifier.get("_target_") else None,
            cfg.adapter.negatives,
            cfg.evaluation.batch_size,
            cfg.evaluation.show_progress_bar,
        )
    return build_loss_with_lora(
        model,
        lora_settings(cfg.model),
        any(part_cfg.loss.get("tie_encoder_decoder") for part_cfg, _ in parts),
        cfg.seed,
        lambda: run_loss(cfg, parts, model, world_size),
    )


def run_loss(
    cfg: DictConfig,
    parts: list[tuple[DictConfig, EmbeddingDataModule]],
    model: SentenceTransformer,
    world_size: int,
) -> torch.nn.Module:
    """The loss of each objective's config (`parts`, from `objective_parts`) around `model`, with its
    modifier, known-relevance mask and regularizer (regularizer=variance: a penalty added; none: the loss
    itself), its data module batching what it declares its batches need; with several objectives, a
    `WeightedObjectiveLoss` of them."""
    losses = [objective_loss(part_cfg, part, model, world_size) for part_cfg, part in parts]
    names = objective_names(cfg)
    if not names:
        return losses[0]
    return WeightedObjectiveLoss(dict(zip(names, losses)), objective_weights(cfg, "weight"))


def objective_loss(
    part_cfg: DictConfig, part: EmbeddingDataModule, model: SentenceTransformer, world_size: int
) -> torch.nn.Module:
    """One objective's loss (`part_cfg`'s loss, modifier and regularizer) on `part`'s final training rows;
    `part` is given the loss's `BatchNeeds` (the rows' text ids, for the known-relevance mask)."""
    loss = build_loss(part_cfg.loss, part_cfg.modifier, model, world_size, len(part.class_names or []))
    loss = with_relevance_mask(  # known relevance is never an in-batch negative
        loss,
        bool(part_cfg.loss.get("mask_known_relevance")),
        part.train_dataset,
        part.inputs or part.text_columns,
    )
    loss = regularized(loss, part_cfg, model)
    part.use_batch_needs(needs_of(loss))
    return loss
