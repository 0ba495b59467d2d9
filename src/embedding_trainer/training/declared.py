"""What a training loss declares to the harness around it: the extra terms the training step logs
(`LoggedTerms`) and what its batches must carry besides the tokenized input columns (`BatchNeeds`).

A loss that wraps another (a regularizer, the several objectives' loss) declares its own terms and needs
together with those of the loss it wraps (`terms_of`, `needs_of`); a loss that declares nothing logs no
extra terms and takes today's batches (the label column's values, or zeros)."""

from abc import ABC, abstractmethod
from dataclasses import dataclass

from torch import Tensor

from embedding_trainer.data.relevance import RelevanceSets


class LoggedTerms(ABC):
    """A loss with extra terms to log after each forward."""

    @abstractmethod
    def logged_terms(self) -> dict[str, Tensor]:
        """The terms of the batch it last computed, by metric name under `train/` (`reg/variance`,
        `loss/<objective>`, `masked_pairs`), detached."""


def terms_of(loss: object) -> dict[str, Tensor]:
    """`loss.logged_terms()` for a `LoggedTerms` loss, else no terms."""
    return loss.logged_terms() if isinstance(loss, LoggedTerms) else {}


@dataclass(frozen=True)
class BatchNeeds:
    """What a loss's batches carry besides the tokenized input columns. `text_ids`: the labels are each
    row's text ids, one per input column (`RelevanceSets`, for the known-relevance mask); None: the label
    column's values (or zeros), or a teacher's outputs when the data module holds them."""

    text_ids: RelevanceSets | None = None


class DeclaresBatchNeeds(ABC):
    """A loss whose batches must carry more than the tokenized input columns."""

    @abstractmethod
    def batch_needs(self) -> BatchNeeds:
        """What each of its batches must carry."""


def needs_of(loss: object) -> BatchNeeds:
    """`loss.batch_needs()` for a `DeclaresBatchNeeds` loss, else nothing extra."""
    return loss.batch_needs() if isinstance(loss, DeclaresBatchNeeds) else BatchNeeds()
