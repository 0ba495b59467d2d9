"""`train/in_batch_negatives`: how many in-batch negatives each query of an in-batch-negative loss
really gets (duplicates and the global batch across ranks accounted for)."""

import pytorch_lightning as pl
import torch


class InBatchNegativesCallback(pl.Callback):
    """Logs `train/in_batch_negatives`: per training batch, the number of distinct document texts
    (the inputs after the first, which holds the queries: positives and any negatives; compared as
    tokenized) in the batch the loss scores, minus one (the query's own positive), averaged over the
    epoch's queries. The batch the loss scores is the global batch across ranks when the loss gathers
    embeddings across devices (`gather_across_devices`), else each rank's own; each rank logs its
    own value without syncing (`sync_dist=False`), so rank zero's is what loggers record. Syncing
    would add a collective at epoch end that only rank zero's progress bar triggers early, which
    deadlocks against the evaluation's broadcast. Batches without `input_ids` features (a query
    adapter's batches of embeddings) are not counted."""

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int
    ) -> None:
        features, _ = batch
        if any(not isinstance(column, dict) or "input_ids" not in column for column in features):
            return
        documents = [hash(row) for column in features[1:] for row in _token_rows(column)]
        hashes = torch.tensor(documents, dtype=torch.long, device=pl_module.device)
        if trainer.world_size > 1 and _gathers(pl_module.loss):
            hashes = pl_module.all_gather(hashes).flatten()
        pl_module.log(
            "train/in_batch_negatives",
            float(len(hashes.unique()) - 1),
            on_step=False,
            on_epoch=True,
            batch_size=len(features[0]["input_ids"]),
            sync_dist=False,
        )


def _token_rows(features: dict[str, torch.Tensor]) -> list[tuple[int, ...]]:
    """Each row's token ids without padding."""
    ids = features["input_ids"].tolist()
    if "attention_mask" not in features:
        return [tuple(row) for row in ids]
    masks = features["attention_mask"].tolist()
    return [tuple(token for token, kept in zip(row, mask) if kept) for row, mask in zip(ids, masks)]


def _gathers(loss: torch.nn.Module) -> bool:
    """Whether the loss, or a loss a modifier wraps, gathers embeddings across devices."""
    return any(getattr(module, "gather_across_devices", False) for module in loss.modules())
