"""Hard-negative mining as a data stage (`data.hard_negatives`): (anchor, positive) rows become
(anchor, positive, negative_1..n) rows, n-tuples, mined and cached by `embedding_trainer.data.hard_negatives`."""

from pathlib import Path

import datasets
from omegaconf import DictConfig

from embedding_trainer.data.hard_negatives import (
    HardNegativeSettings,
    MinedRows,
    hard_negative_settings,
    mine_cached,
    miner_and_corpus,
    mining_key,
)
from embedding_trainer.data.stages import DataStage, StageContext
from embedding_trainer.reporting.plots import plot_mined_scores
from embedding_trainer.training.losses import class_name
from embedding_trainer.training.objectives import objective_names
from embedding_trainer.utils.errors import ConfigError


class HardNegativeMining(DataStage):
    """Mines `settings.num_negatives` negatives per (anchor, positive) row; `mined` holds the rows, their
    scores and the miner's summary once it ran. `encoding` and `document_title`: how a retrieval-folder
    corpus is read (as the training positives were)."""

    slot = "mining"
    data_keys = ("hard_negatives",)

    def __init__(
        self, settings: HardNegativeSettings, encoding: str, document_title: str = "prepend"
    ) -> None:
        self.settings, self.encoding, self.document_title = settings, encoding, document_title
        self.mined: MinedRows | None = None
        self._miner = None

    @classmethod
    def check(cls, cfg: DictConfig) -> None:
        """Mined negatives turn (anchor, positive) rows into n-tuples: the data must be pairs, the loss
        must take n-tuples, and no other source of negatives may be set (the settings themselves are
        checked by reading them, `hard_negative_settings`)."""
        settings = hard_negative_settings(cfg.data)
        if settings is None:
            return
        if cfg.dataset_type.name != "pair":
            raise ConfigError(
                f"data.hard_negatives mines negatives for (anchor, positive) rows, but dataset_type="
                f"{cfg.dataset_type.name}; use dataset_type=pair, or data.hard_negatives=null."
            )
        if "n_tuple" not in cfg.loss.accepts:
            from embedding_trainer.settings.checks import option_names  # the checks import the stages
            from embedding_trainer.settings.family import loss_family

            family = loss_family(cfg.loss)  # the run's model family: the losses a user could switch to
            fitting = option_names(
                "loss", lambda loss: "n_tuple" in loss.get("accepts", []) and loss_family(loss) == family
            )
            raise ConfigError(
                f"With data.hard_negatives the rows become (anchor, positive, negative_1..n), which loss "
                f"{class_name(cfg.loss._target_)} cannot train on; losses that can: {', '.join(fitting)}."
            )
        if cfg.data.negatives_per_anchor:
            raise ConfigError(
                "data.hard_negatives and data.negatives_per_anchor both add negatives: set one of them to null."
            )

    @classmethod
    def dataset_type(cls, cfg: DictConfig, dataset_type: str) -> str:
        if dataset_type == "pair" and hard_negative_settings(cfg.data) is not None:
            return "n_tuple"
        return dataset_type

    @classmethod
    def from_config(cls, cfg: DictConfig) -> "HardNegativeMining | None":
        """The mining of `cfg.data.hard_negatives` (one-objective runs only; None: no mining)."""
        if objective_names(cfg):
            return None
        settings = hard_negative_settings(cfg.data)
        if settings is None:
            return None
        return cls(settings, cfg.data.encoding, cfg.data.document_title)

    def _miner_and_corpus(self, context: StageContext):
        if self._miner is None:
            self._miner = miner_and_corpus(context.model(), self.settings, self.encoding, self.document_title)
        return self._miner

    def cache_key(self, rows: datasets.Dataset, context: StageContext) -> str:
        """The mined rows' folder name under `<cache_dir>/hard_negatives/` (`mining_key`)."""
        miner, corpus = self._miner_and_corpus(context)
        return mining_key(rows, miner, self.settings, corpus, context.seed)

    def run(self, rows: datasets.Dataset, context: StageContext) -> datasets.Dataset:
        miner, corpus = self._miner_and_corpus(context)
        self.mined = mine_cached(rows, miner, self.settings, corpus, context.cache_dir, context.seed)
        return self.mined.rows

    def notes(self, output_dir: Path) -> list[str]:
        """The mining's description, its score histogram (`plots/hard_negatives.png`) and the miner's summary."""
        if self.mined is None:
            return []
        plot_mined_scores(self.mined.scores, output_dir / "plots" / "hard_negatives.png")
        return [
            "",
            self.mined.describe(),
            "",
            "![Miner scores of positives and negatives](plots/hard_negatives.png)",
            "",
            "```",
            self.mined.summary,
            "```",
        ]
