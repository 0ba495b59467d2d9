"""Did the embeddings collapse? Geometry of a fixed probe set of texts, measured at every evaluation.

Per Matryoshka dimension (the first d components, re-normalised to unit length):
- `alignment`: mean ||f(x) - f(y)||^2 over positive pairs (Wang and Isola 2020; only when the probe has pairs);
- `uniformity`: log mean exp(-2 ||f(x) - f(y)||^2) over all pairs of distinct probe texts (Wang and
  Isola 2020; in [-4, 0], lower is more uniform, 0 is total collapse);
- `mean_cosine`: mean cosine similarity over the same pairs;
- `effective_rank`: exp of the entropy of the normalised singular values of the embedding matrix
  (Roy and Vetterli 2007; 1 for identical embeddings, d for orthonormal ones).
"""

import math
from dataclasses import dataclass

import datasets
import numpy as np
import pytorch_lightning as pl
import torch

from embedding_trainer.data.datamodule import EmbeddingDataModule
from embedding_trainer.evaluation.base import DimensionMetrics, metrics_json, truncate
from embedding_trainer.evaluation.callback import EvaluationCallback
from embedding_trainer.models.prompts import QUERY
from embedding_trainer.settings.evaluation import HealthSettings
from embedding_trainer.utils.log import get_logger

log = get_logger(__name__)

# Columns whose rows are positive pairs: alignment is measured over them.
PAIR_COLUMNS = ("anchor", "positive")


def health_metrics(
    embeddings: torch.Tensor, dims: list[int], pairs: torch.Tensor | None = None
) -> DimensionMetrics:
    """Health metrics (see the module docstring) of `embeddings` (n >= 2 rows, full dimension) at each
    of `dims`; `pairs` is a (k, 2) index tensor of positive pairs (None or empty: no `alignment`)."""
    metrics = {}
    for dim in dims:
        unit = truncate(embeddings.double(), dim)
        upper = torch.triu_indices(len(unit), len(unit), offset=1)
        gram = unit @ unit.T
        cosine = gram[upper[0], upper[1]]
        norms = gram.diagonal()  # 1, or 0 for a row whose first `dim` components are all zero
        squared_distance = (norms[upper[0]] + norms[upper[1]] - 2 * cosine).clamp_min(0)
        singular = torch.linalg.svdvals(unit)
        weights = singular[singular > 0] / singular.sum()
        values = {
            "uniformity": float(torch.logsumexp(-2 * squared_distance, 0) - math.log(len(squared_distance))),
            "mean_cosine": float(cosine.mean()),
            "effective_rank": float(torch.exp(-(weights * weights.log()).sum())),
        }
        if pairs is not None and len(pairs):
            values["alignment"] = float((unit[pairs[:, 0]] - unit[pairs[:, 1]]).pow(2).sum(-1).mean())
        metrics[dim] = values
    return metrics


@dataclass
class Probe:
    """Distinct `texts` encoded at every health measurement, and `pairs` (k, 2) of indices into
    them that are positive pairs (None: the rows have no positive pairs)."""

    texts: list[str]
    pairs: torch.Tensor | None
    source: str

    @classmethod
    def of_rows(
        cls, rows: datasets.Dataset, text_columns: list[str], size: int, seed: int, source: str
    ) -> "Probe":
        """The first `size` distinct texts of `rows` (text columns in order, rows in an order seeded
        by `seed`), and the rows' (anchor, positive) pairs whose texts are both among them."""
        columns = {column: rows[column] for column in text_columns}
        has_pairs = all(column in columns for column in PAIR_COLUMNS)
        index: dict[str, int] = {}
        pairs = []
        for row in np.random.default_rng(seed).permutation(len(rows)).tolist():
            for column in text_columns:
                text = columns[column][row]
                if text not in index and len(index) < size:
                    index[text] = len(index)
            if has_pairs:
                anchor, positive = (columns[column][row] for column in PAIR_COLUMNS)
                if anchor in index and positive in index and anchor != positive:
                    pairs.append((index[anchor], index[positive]))
            if len(index) >= size:
                break
        tensor = torch.tensor(pairs, dtype=torch.long).reshape(-1, 2) if has_pairs else None
        return cls(list(index), tensor, source)


class EmbeddingHealthCallback(pl.Callback):
    """Measures `health_metrics` of `probe` at `dims` on global rank zero: before training (the
    reference) and wherever `evaluation` evaluates (it must come after `evaluation` in the callbacks
    list). Each measurement is logged as `health/<metric>_dim<d>` and kept in `history` by step
    (checkpointed). A warning is logged, and kept in `warnings`, whenever at some dimension the
    spread (-uniformity) or the effective rank falls below `min_fraction` of the reference's."""

    def __init__(
        self, probe: Probe, dims: list[int], evaluation: EvaluationCallback, min_fraction: float = 0.5
    ) -> None:
        self.probe = probe
        self.dims = list(dims)
        self.evaluation = evaluation
        self.min_fraction = min_fraction
        self.baseline: DimensionMetrics | None = None
        self.history: dict[int, DimensionMetrics] = {}
        self.warnings: list[str] = []

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.baseline is None and trainer.global_step == 0 and trainer.is_global_zero:
            self.baseline = self._measure(trainer, pl_module)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args) -> None:
        self._follow_evaluation(trainer, pl_module)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._follow_evaluation(trainer, pl_module)

    def _follow_evaluation(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        step = trainer.global_step
        if trainer.is_global_zero and step in self.evaluation.history and step not in self.history:
            self.history[step] = self._measure(trainer, pl_module)
            self._check(step, self.history[step])

    def _measure(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> DimensionMetrics:
        was_training = pl_module.training
        pl_module.eval()
        try:
            model = (
                pl_module.model
            )  # every probe text as a query (symmetric use: embedding_trainer.models.prompts)
            embeddings = self.evaluation.evaluator.encode(model, self.probe.texts, QUERY)
        finally:
            pl_module.train(was_training)
        metrics = health_metrics(embeddings, self.dims, self.probe.pairs)
        flat = {
            f"health/{name}_dim{dim}": value
            for dim, values in metrics.items()
            for name, value in values.items()
        }
        for logger in trainer.loggers:
            logger.log_metrics(flat, step=trainer.global_step)
        return metrics

    def _check(self, step: int, metrics: DimensionMetrics) -> None:
        if self.baseline is None:
            return
        for dim, values in metrics.items():
            before = self.baseline[dim]
            for label, now, then in (
                ("spread (-uniformity)", -values["uniformity"], -before["uniformity"]),
                ("effective rank", values["effective_rank"], before["effective_rank"]),
            ):
                if now < self.min_fraction * then:
                    warning = (
                        f"Possible embedding collapse at step {step}, dimension {dim}: {label} {now:.4f} is below "
                        f"{self.min_fraction} x its value before training ({then:.4f})."
                    )
                    log.warning(warning)
                    self.warnings.append(warning)

    def to_json(self, step: int) -> dict:
        """The report's form: the probe, the measurements before training and at `step` (the final
        model's; None if not measured), every measurement by step, and the collapse warnings."""
        pairs = None if self.probe.pairs is None else len(self.probe.pairs)
        return {
            "probe": {"texts": len(self.probe.texts), "pairs": pairs, "source": self.probe.source},
            "min_fraction": self.min_fraction,
            "baseline": metrics_json(self.baseline),
            "final": metrics_json(self.history.get(step)),
            "history": {str(at): metrics_json(metrics) for at, metrics in self.history.items()},
            "warnings": list(self.warnings),
        }

    def state_dict(self) -> dict:
        return {"baseline": self.baseline, "history": self.history, "warnings": self.warnings}

    def load_state_dict(self, state_dict: dict) -> None:
        self.baseline = state_dict["baseline"]
        self.history = dict(state_dict["history"])
        self.warnings = list(state_dict["warnings"])


def embedding_health(
    settings: HealthSettings | None,
    dims: list[int],
    seed: int,
    datamodule: EmbeddingDataModule,
    evaluation: EvaluationCallback,
) -> EmbeddingHealthCallback | None:
    """The health callback of `settings` (None: off, None) at `dims`, probing the eval rows (in an order
    seeded by `seed`), or the training rows when there are no eval rows of the run's own; None when
    the probe would hold fewer than two texts."""
    if settings is None:
        return None
    rows, source = datamodule.eval_data.rows, "eval data"
    if rows is None:
        rows, source = datamodule.train_dataset, "training data"
    columns = [column for column in rows.column_names if column != datamodule.label]
    probe = Probe.of_rows(rows, columns, settings.probe_size, seed, source)
    if len(probe.texts) < 2:
        log.warning(
            f"No embedding health metrics: the {source} has {len(probe.texts)} distinct text(s), fewer than 2."
        )
        return None
    return EmbeddingHealthCallback(probe, list(dims), evaluation, settings.min_fraction)
