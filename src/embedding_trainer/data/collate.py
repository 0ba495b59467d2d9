"""Turning a list of schema rows into model inputs for a sentence-transformers loss."""

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from embedding_trainer.data.relevance import RelevanceSets
from embedding_trainer.data.token_cache import TokenCache


@dataclass
class LossBatchCollator:
    """Collate rows into `(features, labels)`: one tokenized dict per input column (in order; a
    column may appear twice), and a label tensor (the label column's values, or zeros when there
    is no label). `transform`, when given, first turns the rows into the rows the loss takes.
    `max_length` truncates training inputs below the model's own maximum (None: the model's).
    `prompts` gives the prompt prepended to each input column's texts (a column not in it, or None:
    no prompt; see `embedding_trainer.models.prompts`), tokenized with them as `preprocess(texts, prompt=...)`
    does. `token_cache`, when given (and there is no transform), supplies the tokenized texts instead
    of `preprocess`: the same features, without tokenizing again each epoch; it must hold every
    column's texts under that column's prompt. `targets`, when given, makes the label tensor of the
    rows instead (a teacher's outputs: `embedding_trainer.training.teacher.TeacherTargets`); `text_ids`,
    when given (the loss's `BatchNeeds` asks for them), makes it the rows' text ids, one per input column
    (`RelevanceSets`)."""

    preprocess: Callable[..., dict[str, torch.Tensor]]
    inputs: list[str]
    label_column: str | None
    max_length: int | None = None
    transform: Callable[[list[dict]], list[dict]] | None = None
    token_cache: TokenCache | None = None
    prompts: dict[str, str | None] = field(default_factory=dict)
    targets: Callable[[list[dict]], torch.Tensor] | None = None
    text_ids: RelevanceSets | None = None

    def __call__(self, rows: list[dict]) -> tuple[list[dict[str, torch.Tensor]], torch.Tensor]:
        if self.transform is not None:
            rows = self.transform(rows)
        features = [
            self._features([row[column] for row in rows], self.prompts.get(column)) for column in self.inputs
        ]
        if self.text_ids is not None:
            labels = self.text_ids(rows)
        elif self.targets is not None:
            labels = self.targets(rows)
        elif self.label_column is None:
            labels = torch.zeros(len(rows))
        else:
            labels = torch.tensor([row[self.label_column] for row in rows])
        return features, labels

    def _features(self, texts: list[str], prompt: str | None) -> dict[str, torch.Tensor]:
        if self.token_cache is not None and self.transform is None:
            return self.token_cache.batch(texts, prompt)
        options = {} if self.max_length is None else {"max_length": self.max_length}
        return self.preprocess(texts, prompt=prompt, **options)
