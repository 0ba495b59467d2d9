"""The losses sentence-transformers lacks (embedding_trainer.training.loss_modules): InfoNCE with label
smoothing equals MNRL with scale = 1/temperature when unsmoothed and a slow reference when smoothed;
ArcFace equals a slow per-sample reference, trains the model and its class centers, composes with
Matryoshka, and runs through the real train(cfg) on the TREC questions."""

import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss, MultipleNegativesRankingLoss

from conftest import FAST
from embedding_trainer.models.loading import build_tiny_model
from embedding_trainer.train import train
from embedding_trainer.training.loss_modules import ArcFaceLoss, InfoNCELoss, arcface_loss, info_nce_loss

ANCHORS = ["what is the capital of france", "who wrote hamlet", "how tall is everest", "when did rome fall"]
POSITIVES = ["paris is the capital", "shakespeare wrote it", "about 8849 metres", "in 476 ad"]
NEGATIVES = [
    ["berlin is in germany", "a play about denmark", "the alps are lower", "the empire grew"],
    ["lyon is a city", "marlowe wrote plays", "k2 is second", "byzantium lasted"],
]


@pytest.fixture
def tiny(model_cache):
    model = build_tiny_model(str(model_cache))
    model.eval()  # no dropout: both sides of each comparison compute the same function
    return model


def _features(model, columns):
    return [model.preprocess(column) for column in columns]


def _loss_and_gradients(loss, features, labels):
    loss.model.zero_grad()
    for parameter in loss.parameters():
        parameter.grad = None
    value = loss(features, labels)
    value.backward()
    grads = torch.cat([p.grad.flatten() for p in loss.model.parameters() if p.grad is not None])
    return value.detach(), grads


# ---------------------------------------------------------------- InfoNCE


@pytest.mark.parametrize("negatives", [0, 1, 2], ids=["pair", "triplet", "n_tuple"])
@pytest.mark.parametrize("matryoshka", [False, True], ids=["plain", "matryoshka"])
@pytest.mark.slow
def test_unsmoothed_infonce_is_mnrl_with_scale_one_over_temperature(tiny, negatives, matryoshka):
    temperature = 0.07
    features = _features(tiny, [ANCHORS, POSITIVES, *NEGATIVES[:negatives]])
    labels = torch.zeros(len(ANCHORS))
    ours = InfoNCELoss(tiny, temperature=temperature, label_smoothing=0.0)
    theirs = MultipleNegativesRankingLoss(tiny, scale=1 / temperature)
    if matryoshka:
        ours, theirs = (MatryoshkaLoss(tiny, loss, [32, 16, 8]) for loss in (ours, theirs))
    our_value, our_grads = _loss_and_gradients(ours, features, labels)
    their_value, their_grads = _loss_and_gradients(theirs, features, labels)
    assert abs(float(our_value) - float(their_value)) < 1e-6
    assert their_grads.norm() > 0
    assert (our_grads - their_grads).norm() / their_grads.norm() < 1e-5  # float32 rounding apart


def _smoothed_reference(anchors, documents, targets, temperature, smoothing) -> float:
    """Per anchor: -sum_j q_j log softmax_j, with q the smoothed one-hot target (plain Python)."""
    total = 0.0
    for i, anchor in enumerate(anchors.tolist()):
        logits = [
            sum(a * d for a, d in zip(anchor, doc))
            / (math.sqrt(sum(a * a for a in anchor)) * math.sqrt(sum(d * d for d in doc)))
            / temperature
            for doc in documents.tolist()
        ]
        top = max(logits)
        log_z = top + math.log(sum(math.exp(x - top) for x in logits))
        for j, logit in enumerate(logits):
            q = (1 - smoothing) * (j == int(targets[i])) + smoothing / len(logits)
            total -= q * (logit - log_z)
    return total / len(anchors)


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.5])
def test_info_nce_loss_against_a_slow_reference(smoothing):
    generator = torch.Generator().manual_seed(0)
    anchors = torch.randn(5, 12, generator=generator, dtype=torch.float64)
    documents = torch.randn(15, 12, generator=generator, dtype=torch.float64)
    targets = torch.tensor([0, 1, 2, 3, 4])
    ours = info_nce_loss(anchors, documents, targets, temperature=0.1, label_smoothing=smoothing)
    assert float(ours) == pytest.approx(
        _smoothed_reference(anchors, documents, targets, 0.1, smoothing), abs=1e-10
    )


def test_label_smoothing_changes_the_loss_and_is_checked(tiny):
    features = _features(tiny, [ANCHORS, POSITIVES])
    labels = torch.zeros(len(ANCHORS))
    with torch.no_grad():
        plain = InfoNCELoss(tiny, label_smoothing=0.0)(features, labels)
        smoothed = InfoNCELoss(tiny, label_smoothing=0.2)(features, labels)
    assert abs(float(plain) - float(smoothed)) > 1e-3
    with pytest.raises(ValueError, match="label_smoothing"):
        InfoNCELoss(tiny, label_smoothing=1.0)
    with pytest.raises(ValueError, match="temperature"):
        InfoNCELoss(tiny, temperature=0.0)
    assert InfoNCELoss(tiny, temperature=0.05, label_smoothing=0.1).get_config_dict() == {
        "temperature": 0.05,
        "label_smoothing": 0.1,
        "gather_across_devices": False,
    }


@pytest.mark.slow
def test_infonce_gathered_across_two_processes_matches_one_process(make_cfg, model_cache, tmp_path):
    """The DDP check of tests/runs/test_ddp.py (losses and gradients of 2 processes with batch b equal
    1 process with batch 2b) with loss=infonce, label smoothing on."""
    from test_ddp import WORLD_SIZE, _gradient_worker

    cfg = make_cfg("model=tiny", "loss=infonce", "loss.label_smoothing=0.2")
    build_tiny_model(str(model_cache))
    mp.start_processes(
        _gradient_worker,
        args=(str(tmp_path / "rendezvous"), cfg, str(model_cache)),
        nprocs=WORLD_SIZE,
        start_method="spawn",
    )
    assert not dist.is_initialized()


# ---------------------------------------------------------------- ArcFace


def _arcface_reference(embeddings, weights, labels, margin, scale) -> float:
    """Per sample, per class: the angle by acos, the margin added to the true class's angle (or,
    past pi - margin, cos(theta) - margin * sin(margin)), then the cross-entropy (plain Python)."""
    total = 0.0
    for embedding, label in zip(embeddings.tolist(), labels.tolist()):
        norm = math.sqrt(sum(x * x for x in embedding))
        logits = []
        for c, center in enumerate(weights.tolist()):
            cosine = sum(x * w for x, w in zip(embedding, center)) / (
                norm * math.sqrt(sum(w * w for w in center))
            )
            cosine = min(max(cosine, -1 + 1e-6), 1 - 1e-6)  # the angle is defined at rounding's edge
            if c == label:
                theta = math.acos(cosine)
                cosine = (
                    math.cos(theta + margin)
                    if theta < math.pi - margin
                    else cosine - margin * math.sin(margin)
                )
            logits.append(scale * cosine)
        top = max(logits)
        total += top + math.log(sum(math.exp(x - top) for x in logits)) - logits[label]
    return total / len(labels)


@pytest.mark.parametrize(("margin", "scale"), [(0.5, 30.0), (0.2, 10.0), (0.0, 16.0)])
def test_arcface_loss_against_a_slow_reference(margin, scale):
    generator = torch.Generator().manual_seed(1)
    weights = torch.randn(4, 10, generator=generator, dtype=torch.float64)
    embeddings = torch.randn(12, 10, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 4, (12,), generator=generator)
    embeddings[0] = -weights[labels[0]]  # angle pi to its own center: the branch past pi - margin
    embeddings[1] = 3 * weights[labels[1]]  # angle 0: the clamped cosine
    ours = arcface_loss(embeddings, weights, labels, margin, scale)
    reference = _arcface_reference(embeddings, weights, labels, margin, scale)
    assert float(ours) == pytest.approx(reference, rel=1e-9)


def test_arcface_gradients_reach_the_model_and_the_centers(tiny):
    loss = MatryoshkaLoss(tiny, ArcFaceLoss(tiny, num_labels=3), [32, 16, 8])
    features = _features(tiny, [ANCHORS + POSITIVES])
    labels = torch.tensor([0, 1, 2, 0, 0, 1, 2, 1])
    value, model_grads = _loss_and_gradients(loss, features, labels)
    centers = loss.loss.weight
    assert math.isfinite(float(value)) and float(value) > 0
    assert torch.isfinite(model_grads).all() and model_grads.norm() > 0
    assert torch.isfinite(centers.grad).all() and centers.grad.norm() > 0
    assert [name for name, _ in loss.named_parameters() if not name.startswith("model.")] == ["loss.weight"]


def test_arcface_in_matryoshka_is_the_sum_over_truncated_embeddings_and_centers(tiny):
    arcface = ArcFaceLoss(tiny, num_labels=3, margin=0.3, scale=20.0)
    features = _features(tiny, [ANCHORS])
    labels = torch.tensor([2, 0, 1, 0])
    with torch.no_grad():
        wrapped = MatryoshkaLoss(tiny, arcface, [32, 16, 8])(features, labels)
        full = tiny(features[0])["sentence_embedding"]
        expected = sum(
            arcface_loss(F.normalize(full[:, :d], dim=-1), arcface.weight[:, :d], labels, 0.3, 20.0)
            for d in (32, 16, 8)
        )
    assert float(wrapped) == pytest.approx(float(expected), abs=1e-5)


def test_arcface_arguments_are_checked(tiny):
    with pytest.raises(ValueError, match="num_labels"):
        ArcFaceLoss(tiny, num_labels=1)
    with pytest.raises(ValueError, match="margin"):
        ArcFaceLoss(tiny, num_labels=3, margin=-0.1)
    with pytest.raises(ValueError, match="scale"):
        ArcFaceLoss(tiny, num_labels=3, scale=0)
    loss = ArcFaceLoss(tiny, num_labels=3, embedding_dimension=16)
    with pytest.raises(ValueError, match="embedding_dimension"):
        loss(_features(tiny, [ANCHORS]), torch.tensor([0, 1, 2, 0]))
    assert loss.get_config_dict() == {
        "num_labels": 3,
        "margin": 0.5,
        "scale": 30.0,
        "embedding_dimension": 16,
    }
    assert "ArcFace" in loss.citation


@pytest.mark.slow
def test_arcface_trains_on_the_trec_questions(make_cfg):
    ten_steps = [*(o for o in FAST if not o.startswith("debug=")), "debug=limit", "callbacks=none"]
    cfg = make_cfg(*ten_steps, "dataset_type=single_class", "loss=arcface")
    assert cfg.data.class_names is None  # sized by the classes the data module finds in the rows
    assert cfg.modifier._target_.endswith("MatryoshkaLoss")  # the default modifier
    metrics, objects = train(cfg)
    trainer, module = objects["trainer"], objects["trainer"].lightning_module
    assert trainer.global_step > 1
    arcface = module.loss.loss
    assert isinstance(arcface, ArcFaceLoss) and arcface.num_labels == 6
    assert objects["datamodule"].class_names == ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]
    optimized = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    assert id(arcface.weight) in optimized
    for dim in cfg.matryoshka_dims:
        assert math.isfinite(metrics[f"val/knn_accuracy_dim{dim}"])
