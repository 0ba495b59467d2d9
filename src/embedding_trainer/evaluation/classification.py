"""Evaluators for labelled pairs and labelled sentences."""

import numpy as np
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.evaluation import BinaryClassificationEvaluator
from sentence_transformers.sentence_transformer.losses import SoftmaxLoss
from sklearn.metrics import average_precision_score

from embedding_trainer.evaluation.base import DimensionEvaluator, DimensionMetrics, encode_unique, truncate


class PairBinaryEvaluator(DimensionEvaluator):
    """Duplicate/not-duplicate pairs classified by a threshold on cosine similarity: accuracy and
    F1 at their best thresholds, and average precision (threshold-free). Per example: whether the
    pair is classified right at the best-accuracy threshold (`accuracy_cosine`)."""

    name = "binary"
    primary_metric = "ap_cosine"
    example_unit = "pairs"

    def __init__(self, sentences_a: list[str], sentences_b: list[str], labels: list[int], **kwargs) -> None:
        super().__init__(**kwargs)
        self.sentences_a, self.sentences_b, self.labels = (
            list(sentences_a),
            list(sentences_b),
            np.asarray(labels),
        )

    @classmethod
    def from_eval_data(cls, eval_data, **kwargs) -> "PairBinaryEvaluator":
        """From eval rows with columns sentence_A, sentence_B, label (0/1)."""
        rows = eval_data.rows
        return cls(rows["sentence_A"], rows["sentence_B"], rows["label"], **kwargs)

    def __call__(
        self, model: SentenceTransformer, dims: list[int], loss: torch.nn.Module | None = None
    ) -> DimensionMetrics:
        emb_a, emb_b = encode_unique(self, model, [self.sentences_a, self.sentences_b])
        metrics, self.last_per_example = {}, {}
        for dim in dims:
            scores = (truncate(emb_a, dim) * truncate(emb_b, dim)).sum(-1).double().numpy()
            accuracy, threshold = BinaryClassificationEvaluator.find_best_acc_and_threshold(
                scores, self.labels, True
            )
            # That search predicts "duplicate" for scores at or above its threshold.
            correct = ((scores >= threshold) == (self.labels == 1)).astype(np.float64)
            self.last_per_example[dim] = {"accuracy_cosine": correct}
            f1, precision, recall, _ = BinaryClassificationEvaluator.find_best_f1_and_threshold(
                scores, self.labels, True
            )
            metrics[dim] = {
                "accuracy_cosine": float(accuracy),
                "f1_cosine": float(f1),
                "precision_cosine": float(precision),
                "recall_cosine": float(recall),
                "ap_cosine": float(average_precision_score(self.labels, scores)),
            }
        return metrics


class KnnClassificationEvaluator(DimensionEvaluator):
    """Each held-out sentence gets the majority class of its `k` most cosine-similar training
    sentences (ties: the tied class with the nearest member); accuracy and macro-F1. Per example:
    whether the sentence is classified right (`accuracy`)."""

    name = "knn"
    primary_metric = "accuracy"
    example_unit = "sentences"

    def __init__(self, train_sentences, train_labels, sentences, labels, k: int = 5, **kwargs) -> None:
        super().__init__(**kwargs)
        self.train_sentences, self.sentences = list(train_sentences), list(sentences)
        self.train_labels, self.labels = torch.tensor(list(train_labels)), torch.tensor(list(labels))
        self.k = k

    @classmethod
    def from_eval_data(cls, eval_data, k: int = 5, **kwargs) -> "KnnClassificationEvaluator":
        """Support set: the training rows; queries: the eval rows (columns sentence, class)."""
        train, rows = eval_data.train_rows, eval_data.rows
        return cls(train["sentence"], train["class"], rows["sentence"], rows["class"], k=k, **kwargs)

    def __call__(
        self, model: SentenceTransformer, dims: list[int], loss: torch.nn.Module | None = None
    ) -> DimensionMetrics:
        support, queries = encode_unique(self, model, [self.train_sentences, self.sentences])
        n_classes = int(max(self.train_labels.max(), self.labels.max())) + 1
        metrics, self.last_per_example = {}, {}
        for dim in dims:
            similarity = truncate(queries, dim) @ truncate(support, dim).T
            nearest = similarity.topk(min(self.k, similarity.shape[1]), dim=1).indices  # nearest first
            predicted = _majority_nearest_breaks_ties(self.train_labels[nearest], n_classes)
            correct = (predicted == self.labels).double()
            self.last_per_example[dim] = {"accuracy": correct.numpy()}
            metrics[dim] = {
                "accuracy": float(correct.mean()),
                "macro_f1": _macro_f1(predicted, self.labels, n_classes),
            }
        return metrics


def _majority_nearest_breaks_ties(neighbour_labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Per row of `neighbour_labels` (queries x k class indices, nearest neighbour first): the class
    with the most votes, a tie going to the tied class whose nearest member comes first. Exact
    integer counts, so the majority holds for any k and no float rounding decides a tie."""
    votes = torch.zeros(len(neighbour_labels), n_classes, dtype=torch.long)
    votes.scatter_add_(1, neighbour_labels, torch.ones_like(neighbour_labels))
    in_top_class = votes.gather(1, neighbour_labels) == votes.max(dim=1, keepdim=True).values
    first = in_top_class.to(torch.uint8).argmax(dim=1, keepdim=True)  # argmax: the first maximal index
    return neighbour_labels.gather(1, first).squeeze(1)


def _macro_f1(predicted: torch.Tensor, labels: torch.Tensor, n_classes: int) -> float:
    scores = []
    for label in range(n_classes):
        if not ((labels == label).any() or (predicted == label).any()):
            continue
        true_positive = ((predicted == label) & (labels == label)).sum().item()
        denominator = (predicted == label).sum().item() + (labels == label).sum().item()
        scores.append(2 * true_positive / denominator)
    return float(sum(scores) / len(scores))


class SoftmaxAccuracyEvaluator(DimensionEvaluator):
    """Accuracy of the SoftmaxLoss classifier trained with the model, on the eval pairs. The
    classifier reads full-dimension embeddings, so only the model's full dimension is scored.
    Per example: whether the pair is classified right (`accuracy`)."""

    name = "softmax"
    primary_metric = "accuracy"
    example_unit = "pairs"
    scores_with_loss = True

    def __init__(self, sentences_a: list[str], sentences_b: list[str], labels: list[int], **kwargs) -> None:
        super().__init__(**kwargs)
        self.sentences_a, self.sentences_b = list(sentences_a), list(sentences_b)
        self.labels = torch.tensor(list(labels))

    @classmethod
    def from_eval_data(cls, eval_data, **kwargs) -> "SoftmaxAccuracyEvaluator":
        """From eval rows with columns sentence_A, sentence_B, class (an index)."""
        rows = eval_data.rows
        return cls(rows["sentence_A"], rows["sentence_B"], rows["class"], **kwargs)

    def __call__(
        self, model: SentenceTransformer, dims: list[int], loss: torch.nn.Module | None = None
    ) -> DimensionMetrics:
        softmax = _find_softmax_loss(loss)
        emb_a, emb_b = encode_unique(self, model, [self.sentences_a, self.sentences_b])
        parameter = next(softmax.classifier.parameters())
        with torch.no_grad():
            features = _softmax_features(softmax, emb_a.to(parameter), emb_b.to(parameter))
            predicted = softmax.classifier(features).argmax(dim=1).cpu()
        full_dim = model.get_embedding_dimension()
        correct = (predicted == self.labels).double()
        self.last_per_example = {full_dim: {"accuracy": correct.numpy()}}
        return {full_dim: {"accuracy": float(correct.mean())}}


def _find_softmax_loss(loss: torch.nn.Module | None) -> SoftmaxLoss:
    """The SoftmaxLoss in `loss` (itself, or a loss it wraps: a modifier's, a regularizer's)."""
    found = [m for m in (loss.modules() if loss is not None else []) if isinstance(m, SoftmaxLoss)]
    if not found:
        raise ValueError("pair_class evaluation needs the SoftmaxLoss classifier: train with loss=softmax.")
    return found[0]


def _softmax_features(loss: SoftmaxLoss, emb_a: torch.Tensor, emb_b: torch.Tensor) -> torch.Tensor:
    """The classifier input SoftmaxLoss builds: [u, v], |u - v|, u * v as configured."""
    parts = []
    if loss.concatenation_sent_rep:
        parts += [emb_a, emb_b]
    if loss.concatenation_sent_difference:
        parts.append(torch.abs(emb_a - emb_b))
    if loss.concatenation_sent_multiplication:
        parts.append(emb_a * emb_b)
    return torch.cat(parts, dim=1)
