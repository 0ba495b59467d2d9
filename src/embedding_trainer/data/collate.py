"""Turning a list of schema rows into model inputs for a sentence-transformers loss."""

from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass
class LossBatchCollator:
    """Collate rows into `(features, labels)`: one tokenized dict per text column (in schema order),
    and a label tensor (the label column's values, or zeros when the schema has no label).
    `max_length` truncates training inputs below the model's own maximum (None: the model's)."""

    preprocess: Callable[[list[str]], dict[str, torch.Tensor]]
    text_columns: list[str]
    label_column: str | None
    max_length: int | None = None

    def __call__(self, rows: list[dict]) -> tuple[list[dict[str, torch.Tensor]], torch.Tensor]:
        options = {} if self.max_length is None else {"max_length": self.max_length}
        features = [self.preprocess([row[column] for row in rows], **options) for column in self.text_columns]
        if self.label_column is None:
            labels = torch.zeros(len(rows))
        else:
            labels = torch.tensor([row[self.label_column] for row in rows])
        return features, labels
