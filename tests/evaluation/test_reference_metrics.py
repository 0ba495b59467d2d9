"""Our one-encoding k-NN classification and triplet metrics against independent references, on real
encodings of the shipped data by the tiny offline model, at the full and at truncated dimensions:

- k-NN accuracy and macro-F1 (the single_class evaluator, built from eval data as that dataset type
  builds it) equal scikit-learn's: `KNeighborsClassifier` (cosine distance, brute force, on the raw
  truncated embeddings: scikit-learn normalizes them itself), `accuracy_score` and
  `f1_score(average="macro")`. Our documented vote is the majority of the k nearest training
  sentences, a tie going to the tied class with the nearest member; scikit-learn's uniform vote gives
  a tie to the lowest class index, so where the vote is tied the reference applies our rule to
  scikit-learn's neighbours (`nearest_of_tied`).
- Triplet accuracy equals sentence-transformers' `TripletEvaluator` (cosine, margin 0, `truncate_dim`),
  with and without query/document prompts; over several negatives it is the mean over negatives.

Both sides encode separately (their batches differ, so similarities differ by up to about 3e-7):
examples whose decision two similarities closer than GAP could flip are left out of the slices.
"""

import csv
import json

import numpy as np
import pytest
from datasets import Dataset
from sentence_transformers.sentence_transformer.evaluation import TripletEvaluator as StTripletEvaluator
from sklearn.metrics import accuracy_score, f1_score
from sklearn.neighbors import KNeighborsClassifier

from embedding_trainer.data.datamodule import EvalData
from embedding_trainer.evaluation import KnnClassificationEvaluator, TripletEvaluator
from embedding_trainer.evaluation.base import using_cache
from embedding_trainer.models import loading as models
from embedding_trainer.settings.resolvers import PROJECT_ROOT
from embedding_trainer.utils.embedding_cache import EmbeddingCache

DIMS = [32, 16, 8]  # the tiny model's full dimension and two truncations
GAP = 2e-6  # examples decided by two similarities (or distances) closer than this are left out
K = [1, 5, 15, 51]  # 5: the single_class default


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny offline model the tests train (model=tiny: hidden size 32, seed 0)."""
    return models.build_tiny_model(str(tmp_path_factory.mktemp("tiny")), hidden_size=32, seed=0)


def reference_encode(model, texts: list[str], prompt: str | None = None) -> np.ndarray:
    """Full-dimension embeddings through sentence-transformers' own `encode` (not the harness's helpers)."""
    return model.encode(texts, batch_size=64, convert_to_numpy=True, prompt=prompt, show_progress_bar=False)


# --- k-NN classification -------------------------------------------------------------------------


def read_trec(name: str) -> list[dict]:
    return [json.loads(line) for line in (PROJECT_ROOT / "data" / "derived" / name).open()]


@pytest.fixture(scope="module")
def trec():
    """500 distinct TREC training questions (the support set; a repeated text would tie with itself at
    every query) and 300 test questions, with class indices (sorted class names)."""
    train = read_trec("trec_train.jsonl")
    support = list({row["sentence"]: row for row in train}.values())[:500]
    classes = sorted({row["class"] for row in train})
    index = {name: i for i, name in enumerate(classes)}
    return {
        name: ([r["sentence"] for r in part], np.array([index[r["class"]] for r in part]))
        for name, part in (("support", support), ("queries", read_trec("trec_test.jsonl")[:300]))
    }


N_CLASSES = 6  # TREC's coarse classes


def vote_counts(neighbour_labels: np.ndarray) -> np.ndarray:
    """(queries, classes) number of each class among each query's neighbours."""
    return np.stack([np.bincount(row, minlength=N_CLASSES) for row in neighbour_labels])


def nearest_of_tied(neighbour_labels: np.ndarray) -> np.ndarray:
    """Our documented tie rule, stated directly: among the classes with the most votes, the one whose
    first member comes first in the neighbours (sorted nearest first)."""
    counts = vote_counts(neighbour_labels)
    top = np.take_along_axis(counts, neighbour_labels, 1) == counts.max(1, keepdims=True)
    return neighbour_labels[np.arange(len(top)), top.argmax(1)]


def decided(distances: np.ndarray, neighbour_labels: np.ndarray, k: int) -> np.ndarray:
    """Queries whose prediction float rounding cannot change: the k-th and (k+1)-th neighbours lie
    further apart than GAP and, where the vote is tied, so do the nearest members of the tied classes."""
    counts = vote_counts(neighbour_labels[:, :k])
    tied_classes = counts == counts.max(1, keepdims=True)
    keep = distances[:, k] - distances[:, k - 1] > GAP
    for query in np.flatnonzero(tied_classes.sum(1) > 1):
        firsts = sorted(
            distances[query, :k][neighbour_labels[query, :k] == c].min()
            for c in np.flatnonzero(tied_classes[query])
        )
        keep[query] &= firsts[1] - firsts[0] > GAP
    return keep


@pytest.fixture(scope="module")
def trec_encoded(tiny, trec):
    return {name: (reference_encode(tiny, texts), labels) for name, (texts, labels) in trec.items()}


def reference_knn(trec_encoded, k: int, dim: int) -> dict[str, np.ndarray]:
    """scikit-learn's predictions at `dim` (embeddings truncated, not normalized: its cosine distance
    normalizes them), its plain uniform vote where the majority is clear and our tie rule where not;
    which queries are decided beyond rounding; which votes were tied; where scikit-learn's own tie rule
    (the lowest class index) would predict otherwise."""
    (support, y_support), (queries, _) = trec_encoded["support"], trec_encoded["queries"]
    knn = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute")
    knn.fit(support[:, :dim].astype(np.float64), y_support)
    distances, neighbours = knn.kneighbors(queries[:, :dim].astype(np.float64), n_neighbors=k + 1)
    neighbour_labels = y_support[neighbours]
    counts = vote_counts(neighbour_labels[:, :k])
    tied = (counts == counts.max(1, keepdims=True)).sum(1) > 1
    uniform = knn.predict(queries[:, :dim].astype(np.float64))
    predicted = np.where(tied, nearest_of_tied(neighbour_labels[:, :k]), uniform)
    return {
        "predicted": predicted,
        "decided": decided(distances, neighbour_labels, k),
        "tied": tied,
        "rule_matters": predicted != uniform,
    }


@pytest.fixture(scope="module")
def knn_queries(trec, trec_encoded):
    """The test questions whose prediction every k and dimension decides beyond float rounding, and
    the eval data of the single_class dataset type over them (the training rows are the support set)."""
    kept = np.flatnonzero(
        np.logical_and.reduce([reference_knn(trec_encoded, k, dim)["decided"] for k in K for dim in DIMS])
    )
    texts, labels = trec["queries"]
    support_texts, support_labels = trec["support"]
    eval_data = EvalData(
        rows=Dataset.from_dict({"sentence": [texts[i] for i in kept], "class": labels[kept].tolist()}),
        train_rows=Dataset.from_dict({"sentence": support_texts, "class": support_labels.tolist()}),
    )
    return kept, eval_data


@pytest.fixture(scope="module")
def knn_cache(tmp_path_factory):
    """The harness's embedding cache, so each k's evaluator encodes the same texts once in all."""
    return EmbeddingCache(tmp_path_factory.mktemp("embeddings"))


@pytest.mark.parametrize("k", K)
@pytest.mark.slow
def test_knn_equals_scikit_learn(tiny, trec_encoded, knn_queries, knn_cache, k):
    kept, eval_data = knn_queries
    assert len(kept) >= 250
    evaluator = KnnClassificationEvaluator.from_eval_data(eval_data, k=k, show_progress_bar=False)
    with using_cache(evaluator, knn_cache):
        ours = evaluator(tiny, DIMS)
    y_true = trec_encoded["queries"][1][kept]
    tied = rule_matters = 0
    for dim in DIMS:
        reference = reference_knn(trec_encoded, k, dim)
        predicted = reference["predicted"][kept]
        np.testing.assert_array_equal(
            evaluator.last_per_example[dim]["accuracy"],
            (predicted == y_true).astype(float),
            err_msg=f"dim {dim}",
        )
        assert ours[dim]["accuracy"] == pytest.approx(accuracy_score(y_true, predicted), abs=1e-12)
        assert ours[dim]["macro_f1"] == pytest.approx(f1_score(y_true, predicted, average="macro"), abs=1e-12)
        assert 0 < ours[dim]["accuracy"] < 1
        tied += int(reference["tied"][kept].sum())
        rule_matters += int(reference["rule_matters"][kept].sum())
    # With several neighbours the tie rule is exercised: some tied votes, where the nearest member
    # and scikit-learn's lowest class index disagree, are compared.
    assert k == 1 or (tied > 0 and rule_matters > 0)


# --- triplet accuracy ----------------------------------------------------------------------------

# The model's prompts in each case: none, and different query (anchor) and document prompts.
# sentence-transformers encodes every column again per dimension: compared at the full and the smallest.
ST_DIMS = [32, 8]
PROMPTS = {"no_prompts": {}, "prompts": {"query": "query: ", "document": "passage: "}}


@pytest.fixture(scope="module")
def triplets():
    """The first 200 (anchor, positive, negative) rows of the shipped SNLI test triplets, as columns."""
    with (PROJECT_ROOT / "data" / "nli_triplets" / "triplets_test.tsv").open(newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))[:200]
    return [[row[column] for row in rows] for column in ("anchor", "positive", "negative")]


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def decided_rows(model, columns: list[list[str]], prompts: dict) -> list[int]:
    """Rows whose every comparison (positive against each negative, at every dimension) is decided
    beyond float rounding: the two cosine similarities differ by more than GAP."""
    anchor, *others = (
        reference_encode(model, column, prompts.get("query" if i == 0 else "document")).astype(np.float64)
        for i, column in enumerate(columns)
    )
    keep = np.ones(len(anchor), dtype=bool)
    for dim in DIMS:
        a, positive, *negatives = (unit(x[:, :dim]) for x in (anchor, *others))
        for negative in negatives:
            keep &= np.abs((a * positive).sum(1) - (a * negative).sum(1)) > GAP
    return np.flatnonzero(keep).tolist()


def st_triplet_accuracy(model, anchors, positives, negatives, dim: int) -> float:
    return StTripletEvaluator(
        anchors,
        positives,
        negatives,
        main_similarity_function="cosine",
        margin=0,
        truncate_dim=dim,
        name="ref",
        batch_size=64,
        write_csv=False,
    )(model)["ref_cosine_accuracy"]


@pytest.mark.parametrize("case", PROMPTS)
@pytest.mark.slow
def test_triplet_accuracy_equals_sentence_transformers(tiny, triplets, case):
    prompts = PROMPTS[case]
    tiny.prompts = dict(prompts)
    try:
        kept = decided_rows(tiny, triplets, prompts)
        assert len(kept) >= 180
        anchors, positives, negatives = ([column[i] for i in kept] for column in triplets)
        ours = TripletEvaluator(anchors, positives, [negatives], show_progress_bar=False)(tiny, DIMS)
        for dim in ST_DIMS:
            reference = st_triplet_accuracy(tiny, anchors, positives, negatives, dim)
            assert round(ours[dim]["accuracy_cosine"] * len(kept)) == round(reference * len(kept)), (
                f"dim {dim}"
            )
            assert ours[dim]["accuracy_cosine"] == pytest.approx(reference, abs=1e-6)
            assert 0 < reference < 1
    finally:
        tiny.prompts = {}


@pytest.mark.slow
def test_n_tuple_accuracy_is_the_mean_over_negatives(tiny, triplets):
    """Two negatives per row (the row's own and the next row's): TripletEvaluator on the rows taken
    once with each negative, which is the mean over the two (both have as many rows)."""
    anchors, positives, negatives = triplets
    columns = [anchors, positives, negatives, negatives[1:] + negatives[:1]]
    kept = decided_rows(tiny, columns, {})
    assert len(kept) >= 170
    anchors, positives, *negatives = ([column[i] for i in kept] for column in columns)
    ours = TripletEvaluator(anchors, positives, negatives, show_progress_bar=False)(tiny, DIMS)
    for dim in ST_DIMS[1:]:  # the full dimension: test_triplet_accuracy_equals_sentence_transformers
        reference = st_triplet_accuracy(tiny, anchors * 2, positives * 2, negatives[0] + negatives[1], dim)
        assert ours[dim]["accuracy_cosine"] == pytest.approx(reference, abs=1e-6), f"dim {dim}"
