"""Phase 4 of a run, its second half: the training loss around the model (an adapter's, or the loss
configs' with LoRA), in the LightningModule that trains, with the checkpoint it resumes from."""

from dataclasses import dataclass

import torch
from hydra.utils import instantiate
from sentence_transformers import SentenceTransformer

from embedding_trainer.adapters.training import adapter_training
from embedding_trainer.data import EmbeddingDataModule
from embedding_trainer.data.objectives import ObjectivesDataModule
from embedding_trainer.models.cross_encoder import CROSS_ENCODER, text_collator
from embedding_trainer.models.lora import (
    LoraSettings,
    ParameterCount,
    build_loss_with_lora,
    trained_parameters,
)
from embedding_trainer.phases.evaluation import Evaluations
from embedding_trainer.runs.resume import resume_checkpoint
from embedding_trainer.settings.checks import check_checkpoint_fits
from embedding_trainer.settings.training import TrainingSettings
from embedding_trainer.training.declared import needs_of
from embedding_trainer.training.losses import build_loss
from embedding_trainer.training.module import EmbeddingModule
from embedding_trainer.training.objectives import ObjectivePart, WeightedObjectiveLoss
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
    settings: TrainingSettings,
    lora: LoraSettings | None,
    model: SentenceTransformer,
    datamodule: EmbeddingDataModule | ObjectivesDataModule,
    parts: list[ObjectivePart],
    evaluations: Evaluations,
    world_size: int,
) -> TrainingModule:
    """`model` and its training loss (`training_loss`, with the adapters of `lora`: None, none) with
    `settings.optimizer` and `settings.scheduler`; the checkpoint to resume from (`resume_checkpoint`) is
    checked to fit it."""
    loss = training_loss(settings, lora, model, datamodule, parts, evaluations, world_size)
    module = EmbeddingModule(model, loss, instantiate(settings.optimizer), instantiate(settings.scheduler))
    parameters = ParameterCount.of(module)  # the optimizer takes the trainable ones
    log.info(f"Trainable parameters (model and loss): {trained_parameters(parameters, lora)}")
    ckpt_path = resume_checkpoint(settings.output_dir, settings.ckpt_path)
    if ckpt_path is not None:
        check_checkpoint_fits(ckpt_path, module)
    return TrainingModule(module, parameters, ckpt_path)


def training_loss(
    settings: TrainingSettings,
    lora: LoraSettings | None,
    model: SentenceTransformer,
    datamodule: EmbeddingDataModule | ObjectivesDataModule,
    parts: list[ObjectivePart],
    evaluations: Evaluations,
    world_size: int,
) -> torch.nn.Module:
    """The loss that trains `model`: with an adapter (`settings.adapter`), the adapter's, on the frozen
    embeddings of the training texts (computed once here); else the objectives' (`run_loss`), with
    the adapters of `lora` added to `model` (None: none)."""
    adapter = settings.adapter
    if adapter is not None:
        return adapter_training(
            model,
            datamodule,
            evaluations.cache,
            [callback.evaluator for callback in evaluations.before_and_after()],
            adapter.scale,
            list(adapter.dims) if adapter.dims else None,
            adapter.settings.negatives,
            adapter.batch_size,
            adapter.show_progress_bar,
        )
    return build_loss_with_lora(
        model,
        lora,
        any(part.settings.tie_encoder_decoder for part in parts),
        settings.seed,
        lambda: run_loss(parts, model, world_size),
    )


def run_loss(parts: list[ObjectivePart], model: SentenceTransformer, world_size: int) -> torch.nn.Module:
    """The loss of each objective (`parts`, from `objective_parts`) around `model`, with its modifier,
    known-relevance mask and regularizer (regularizer=variance: a penalty added; none: the loss itself),
    its data module batching what it declares its batches need; with several objectives, a
    `WeightedObjectiveLoss` of them."""
    losses = [objective_loss(part, model, world_size) for part in parts]
    if parts[0].settings.name is None:
        return losses[0]
    return WeightedObjectiveLoss(
        {part.settings.name: loss for part, loss in zip(parts, losses)},
        {part.settings.name: part.settings.weight for part in parts},
    )


def objective_loss(part: ObjectivePart, model: SentenceTransformer, world_size: int) -> torch.nn.Module:
    """One objective's loss (its settings' loss, modifier and regularizer) on `part`'s final training rows;
    `part.data` is given the loss's `BatchNeeds` (the rows' text ids, for the known-relevance mask), and a
    cross-encoder loss's collator (`text_collator`: the rows' texts, not tokens)."""
    objective, data = part.settings, part.data
    loss = build_loss(objective.loss, objective.modifier, model, world_size, len(data.class_names or []))
    loss = with_relevance_mask(  # known relevance is never an in-batch negative
        loss, objective.mask_known_relevance, data.train_dataset, data.inputs or data.text_columns
    )
    loss = regularized(loss, objective.regularizer, list(objective.penalized_dims), model)
    data.use_batch_needs(needs_of(loss))
    if objective.model_family == CROSS_ENCODER:  # its batches carry texts: the loss makes the pairs
        settings = data.settings
        columns = data.inputs or data.text_columns
        data.use_collator(
            text_collator(settings.batching.transform, settings.schema.label_type, columns, data.label)
        )
    return loss
