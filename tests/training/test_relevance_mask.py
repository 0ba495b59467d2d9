"""Known relevance is never a negative (embedding_trainer.training.relevance_mask): the mask of a constructed
batch is exact; masked MNRL (alone, in Matryoshka, cached, symmetric) and InfoNCE equal hand-computed
references with the masked logits removed; GIST and its cached form agree and equal a hand-computed
guided, masked cross-entropy; a batch where nothing is known relevant gives exactly the unmasked loss;
only a masking loss asks its batches for text ids; a real train(cfg) run logs train/masked_pairs."""

import json
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from sentence_transformers.sentence_transformer.losses import (
    CachedGISTEmbedLoss,
    CachedMultipleNegativesRankingLoss,
    CachedMultipleNegativesSymmetricRankingLoss,
    GISTEmbedLoss,
    MatryoshkaLoss,
    MultipleNegativesRankingLoss,
    MultipleNegativesSymmetricRankingLoss,
)
from sentence_transformers.util import cos_sim

from conftest import FAST, logged_rows
from embedding_trainer.data.collate import LossBatchCollator
from embedding_trainer.data.relevance import RelevanceSets
from embedding_trainer.models.loading import build_tiny_model
from embedding_trainer.train import train
from embedding_trainer.training.declared import BatchNeeds, needs_of
from embedding_trainer.training.loss_modules import InfoNCELoss
from embedding_trainer.training.relevance_mask import BatchMask, KnownRelevanceLoss, Side, ranking_plan
from embedding_trainer.utils.errors import ConfigError

# Training rows: q1 has d1, d2 and d3 relevant; q2 has d2; q3 has d3 and d4 (each row one pair).
ROWS = [
    ("q1 what is the capital of france", "d1 paris is the capital"),
    ("q1 what is the capital of france", "d2 the capital city is paris"),
    ("q1 what is the capital of france", "d3 france is governed from paris"),
    ("q2 which city is the french capital", "d2 the capital city is paris"),
    ("q3 where does the president of france live", "d3 france is governed from paris"),
    ("q3 where does the president of france live", "d4 the elysee palace is in paris"),
]
COLUMNS = ["anchor", "positive", "negative"]
# One batch, as a no-duplicates sampler could draw it: (anchor, positive, mined negative).
BATCH = [
    {"anchor": ROWS[0][0], "positive": ROWS[0][1], "negative": ROWS[5][1]},  # q1, d1, d4
    {"anchor": ROWS[3][0], "positive": ROWS[3][1], "negative": "a random sentence about cats"},  # q2, d2
    {"anchor": ROWS[4][0], "positive": ROWS[4][1], "negative": "the louvre is a museum"},  # q3, d3
]
# Known relevant pairs among them that are not a row's own target: q1-d2 and q1-d3 (other rows'
# positives) and q3-d4 (row 0's mined negative). Documents in the loss's order: positives d1 d2 d3,
# then negatives d4 cats louvre.
EXPECTED = torch.tensor(
    [
        [0, 1, 1, 0, 0, 0],  # q1: d2, d3 (d4 is a negative of its own row but not relevant to q1)
        [0, 0, 0, 0, 0, 0],  # q2: only d2, its own positive
        [0, 0, 0, 1, 0, 0],  # q3: d4 (another row's mined negative); d3 is its own positive
    ],
    dtype=torch.bool,
)

QUERY_TO_DOC = SimpleNamespace(directions=("query_to_doc",))  # MNRL's default directions


def relevance(columns=COLUMNS) -> RelevanceSets:
    return RelevanceSets.of_pairs(ROWS, columns)


def test_the_mask_of_a_constructed_batch_is_exact():
    sets = relevance()
    ids = sets(BATCH)
    assert ids[1, 2].item() == -1  # a text in no relevance pair has no id
    mask = BatchMask(sets, lambda columns: ranking_plan(QUERY_TO_DOC, columns))
    assert mask.start(ids, 0, len(BATCH)).item() == EXPECTED.sum().item() == 3
    documents = mask.positions(Side((1, 2), "all"), 0)
    assert torch.equal(mask.block(mask.positions(Side((0,), "local"), 0), documents), EXPECTED)
    # Symmetric: a positive scored against the anchors (doc_to_query) masks the same pairs.
    anchors, positives = mask.positions(Side((0,), "all"), 0), mask.positions(Side((1,), "all"), 0)
    assert torch.equal(mask.block(positives, anchors), EXPECTED[:, :3].T)


def test_a_mined_negative_that_is_a_known_positive_of_its_own_anchor_is_masked():
    rows = [{"anchor": ROWS[0][0], "positive": ROWS[0][1], "negative": ROWS[1][1]}]  # q1, d1, d2
    sets = relevance()
    mask = BatchMask(sets, lambda columns: ranking_plan(QUERY_TO_DOC, columns))
    mask.start(sets(rows), 0, 1)
    assert mask.block(torch.tensor([0]), torch.tensor([1, 2])).tolist() == [[False, True]]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    model = build_tiny_model(str(tmp_path_factory.mktemp("tiny")), seed=3)
    model.eval()  # no dropout: every loss sees the same forward passes
    return model


def features(model, rows, columns=COLUMNS):
    return [model.preprocess([row[column] for row in rows]) for column in columns]


def embeddings(model, rows, columns=COLUMNS):
    with torch.no_grad():
        return [model(feature)["sentence_embedding"] for feature in features(model, rows, columns)]


def masked_mnrl_reference(columns, mask, scale=20.0):
    """MNRL's loss with the masked logits removed from each anchor's softmax."""
    anchors, documents = columns[0], torch.cat(columns[1:])
    logits = (cos_sim(anchors, documents) * scale).masked_fill(mask, -torch.inf)
    return F.cross_entropy(logits, torch.arange(len(anchors)))


def masked(loss, columns=COLUMNS):
    return KnownRelevanceLoss(loss, relevance(columns))


@pytest.mark.parametrize(
    "make_loss",
    [
        lambda model: MultipleNegativesRankingLoss(model),
        lambda model: CachedMultipleNegativesRankingLoss(model, mini_batch_size=2),
    ],
    ids=["mnrl", "cached_mnrl"],
)
def test_masked_mnrl_equals_the_reference_without_the_masked_logits(tiny, make_loss):
    value = masked(make_loss(tiny))(features(tiny, BATCH), relevance()(BATCH))
    reference = masked_mnrl_reference(embeddings(tiny, BATCH), EXPECTED)
    assert abs(value.item() - reference.item()) < 1e-6
    unmasked = masked_mnrl_reference(embeddings(tiny, BATCH), torch.zeros_like(EXPECTED))
    assert abs(value.item() - unmasked.item()) > 1e-3  # the mask changed something


@pytest.mark.parametrize("cached", [False, True], ids=["mnrl", "cached_mnrl"])
def test_masked_matryoshka_is_the_sum_of_masked_references_over_truncated_embeddings(tiny, cached):
    dims = [32, 16, 8]
    inner = (
        CachedMultipleNegativesRankingLoss(tiny, mini_batch_size=2)
        if cached
        else MultipleNegativesRankingLoss(tiny)
    )
    loss = masked(MatryoshkaLoss(tiny, inner, dims))
    value = loss(features(tiny, BATCH), relevance()(BATCH))
    full = embeddings(tiny, BATCH)
    reference = sum(
        masked_mnrl_reference([F.normalize(column[:, :dim], dim=-1) for column in full], EXPECTED)
        for dim in dims
    )
    assert abs(value.item() - reference.item()) < 1e-5
    assert loss.logged_terms()["masked_pairs"].item() == 3  # counted once per batch, not per dimension


@pytest.mark.parametrize("cached", [False, True], ids=["mnsrl", "cached_mnsrl"])
def test_masked_symmetric_loss_masks_both_directions(tiny, cached):
    rows = [{key: row[key] for key in ("anchor", "positive")} for row in BATCH]
    columns = ["anchor", "positive"]
    loss_class = (
        CachedMultipleNegativesSymmetricRankingLoss if cached else MultipleNegativesSymmetricRankingLoss
    )
    loss = loss_class(tiny, mini_batch_size=2) if cached else loss_class(tiny)
    value = masked(loss, columns)(features(tiny, rows, columns), relevance(columns)(rows))
    anchors, positives = embeddings(tiny, rows, columns)
    mask = EXPECTED[:, :3]
    targets = torch.arange(3)
    forward = F.cross_entropy((cos_sim(anchors, positives) * 20).masked_fill(mask, -torch.inf), targets)
    backward = F.cross_entropy((cos_sim(positives, anchors) * 20).masked_fill(mask.T, -torch.inf), targets)
    assert abs(value.item() - (forward + backward).item() / 2) < 1e-6


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_masked_infonce_leaves_the_masked_documents_out_of_softmax_and_smoothing(tiny, smoothing):
    loss = masked(InfoNCELoss(tiny, temperature=0.05, label_smoothing=smoothing))
    value = loss(features(tiny, BATCH), relevance()(BATCH))
    anchors, *documents = embeddings(tiny, BATCH)
    log_probs = torch.log_softmax(
        (cos_sim(anchors, torch.cat(documents)) / 0.05).masked_fill(EXPECTED, -torch.inf), 1
    )
    expected = 0.0
    for row in range(3):
        kept = [column for column in range(6) if not EXPECTED[row, column]]
        smooth = -sum(log_probs[row, column] for column in kept) / len(kept)
        expected += (1 - smoothing) * -log_probs[row, row] + smoothing * smooth
    assert abs(value.item() - expected.item() / 3) < 1e-5


def test_masked_gist_and_cached_gist_agree_and_differ_from_unmasked(tiny, tmp_path):
    guide = build_tiny_model(str(tmp_path), seed=11)
    guide.eval()
    batch_features, ids = features(tiny, BATCH), relevance()(BATCH)
    plain = GISTEmbedLoss(tiny, guide)(batch_features, torch.zeros(3))
    value = masked(GISTEmbedLoss(tiny, guide))(batch_features, ids)
    cached = masked(CachedGISTEmbedLoss(tiny, guide, mini_batch_size=2))(batch_features, ids)
    assert torch.isfinite(value) and abs(value.item() - cached.item()) < 1e-5
    assert value.item() != pytest.approx(plain.item(), abs=1e-4)


def masked_gist_reference(columns, guide_columns, known, temperature=0.01):
    """GISTEmbedLoss (absolute margin 0, anchors and positives contrasted) by hand: each score the guide
    rates above the row's own positive is dropped, as are the `known` relevant (anchor, document) pairs."""
    anchors, positives, negatives = columns
    guide_anchors, guide_positives, guide_negatives = guide_columns
    guided = F.cosine_similarity(guide_anchors, guide_positives).unsqueeze(1)
    own = torch.eye(len(anchors), dtype=torch.bool)

    def block(x, y, guide_x, guide_y, known_block, keep=None):
        dropped = cos_sim(guide_x, guide_y) > guided
        dropped = dropped if keep is None else dropped & ~keep
        return cos_sim(x, y).masked_fill(dropped | known_block, -torch.inf)

    nothing = torch.zeros_like(own)  # no anchor is known relevant to another anchor, nor positive to positive
    scores = torch.cat(
        [
            block(anchors, positives, guide_anchors, guide_positives, known[:, :3], keep=own),
            block(anchors, anchors, guide_anchors, guide_anchors, nothing),
            block(positives, positives, guide_positives, guide_positives, nothing),
            block(anchors, negatives, guide_anchors, guide_negatives, known[:, 3:]),
        ],
        dim=1,
    )
    return F.cross_entropy(scores / temperature, torch.arange(len(anchors)))


@pytest.mark.parametrize("cached", [False, True], ids=["gist", "cached_gist"])
def test_masked_gist_equals_the_hand_computed_guided_and_masked_cross_entropy(tiny, tmp_path, cached):
    guide = build_tiny_model(str(tmp_path), seed=11)
    guide.eval()
    loss = CachedGISTEmbedLoss(tiny, guide, mini_batch_size=2) if cached else GISTEmbedLoss(tiny, guide)
    value = masked(loss)(features(tiny, BATCH), relevance()(BATCH))
    reference = masked_gist_reference(embeddings(tiny, BATCH), embeddings(guide, BATCH), EXPECTED)
    assert value.item() == pytest.approx(reference.item(), rel=1e-4)
    unmasked = masked_gist_reference(embeddings(tiny, BATCH), embeddings(guide, BATCH), EXPECTED & False)
    assert value.item() != pytest.approx(unmasked.item(), rel=1e-3)  # the mask changed something


@pytest.mark.parametrize(
    "make_loss",
    [
        lambda model, guide: MatryoshkaLoss(model, MultipleNegativesRankingLoss(model), [32, 16]),
        lambda model, guide: CachedMultipleNegativesSymmetricRankingLoss(model, mini_batch_size=2),
        lambda model, guide: GISTEmbedLoss(model, guide),
        lambda model, guide: InfoNCELoss(model, label_smoothing=0.1),
    ],
    ids=["matryoshka_mnrl", "cached_mnsrl", "gist", "infonce"],
)
@pytest.mark.slow
def test_when_nothing_repeats_the_masked_loss_is_exactly_the_unmasked_one(tiny, tmp_path, make_loss):
    guide = build_tiny_model(str(tmp_path), seed=11)
    rows = [{"anchor": f"question {i}", "positive": f"answer {i}"} for i in range(4)]
    columns = ["anchor", "positive"]
    sets = RelevanceSets.of_pairs([(row["anchor"], row["positive"]) for row in rows], columns)
    batch_features = features(tiny, rows, columns)
    loss = KnownRelevanceLoss(make_loss(tiny, guide), sets)
    value = loss(batch_features, sets(rows))
    plain = make_loss(tiny, guide)(batch_features, torch.zeros(4))
    assert value.item() == plain.item()
    assert loss.logged_terms()["masked_pairs"].item() == 0


def test_labels_that_are_not_text_ids_are_refused(tiny):
    with pytest.raises(ValueError, match="text ids as labels"):
        masked(MultipleNegativesRankingLoss(tiny))(features(tiny, BATCH), torch.zeros(3))


def test_masking_a_loss_that_cannot_is_refused_before_the_model_loads(make_cfg, no_model_loading):
    cfg = make_cfg(*FAST, "dataset_type=pair", "loss=megabatch_margin", "loss.mask_known_relevance=true")
    with pytest.raises(ConfigError, match="MegaBatchMarginLoss cannot mask known relevance"):
        train(cfg)


@pytest.mark.slow
def test_a_run_on_clusters_of_duplicate_questions_logs_masked_pairs(make_cfg, tmp_path):
    # 6 clusters of 4 paraphrases, every ordered pair within a cluster a training row: each question is
    # the anchor of 3 rows, so a batch can hold (a, b) and (c, d) of one cluster, d relevant to a.
    path = tmp_path / "clusters.jsonl"
    with path.open("w") as handle:
        for cluster in range(6):
            texts = [f"question {cluster} phrased in way {way}" for way in range(4)]
            for anchor in texts:
                for positive in texts:
                    if anchor != positive:
                        handle.write(json.dumps({"anchor": anchor, "positive": positive}) + "\n")
    run = tmp_path / "run"
    cfg = make_cfg(
        "model=tiny",
        "dataset_type=pair",
        f"data.train_path={path}",
        "data.eval_path=null",
        "data.test_size=0.2",
        "data.max_samples=null",
        "data.batch_size=16",
        "data.leakage=off",
        "modifier=matryoshka",
        "logger=csv",
        "callbacks=none",
        "evaluation.show_progress_bar=false",
        "evaluation.baseline=false",
        "trainer.max_steps=2",
        "trainer.log_every_n_steps=1",
        output_dir=run,
    )
    train(cfg)
    rows = [row for row in logged_rows(run) if row.get("train/masked_pairs")]
    assert len(rows) == 2 and all(float(row["train/masked_pairs"]) > 0 for row in rows), rows


def test_only_a_masking_loss_asks_its_batches_for_text_ids_and_the_collator_gives_exactly_that(tiny):
    plain = MultipleNegativesRankingLoss(tiny)
    assert needs_of(plain) == BatchNeeds()
    sets = relevance()
    loss = masked(plain)
    assert needs_of(loss).text_ids is loss.relevance
    collate = LossBatchCollator(tiny.preprocess, COLUMNS, None, text_ids=needs_of(loss).text_ids)
    _, labels = collate(BATCH)
    assert torch.equal(labels, sets(BATCH))
    _, labels = LossBatchCollator(tiny.preprocess, COLUMNS, None, text_ids=needs_of(plain).text_ids)(BATCH)
    assert torch.equal(labels, torch.zeros(len(BATCH)))  # batches as before: zeros
