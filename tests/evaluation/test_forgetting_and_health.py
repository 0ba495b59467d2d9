"""Did anything else get worse, did the embeddings collapse? The general (STS) evaluation before and
after training, the embedding health metrics (checked against direct formulas), the effective
in-batch negatives, and their configuration."""

import json
import logging
import math
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import FAST, logged_rows
from embedding_trainer.evaluation import SimilarityEvaluator
from embedding_trainer.evaluation.forgetting import GeneralEvaluation, already_evaluated
from embedding_trainer.evaluation.health import EmbeddingHealthCallback, Probe, health_metrics
from embedding_trainer.evaluation.objectives import ObjectivesEvaluator
from embedding_trainer.train import train
from embedding_trainer.training.batch_negatives import InBatchNegativesCallback
from embedding_trainer.utils.errors import ConfigError

STS = ["a", "b", "c"], ["d", "e", "f"], [0.1, 0.5, 0.9]


def numpy_health(embeddings: np.ndarray, dim: int, pairs: np.ndarray) -> dict[str, float]:
    """The metrics by their textbook definitions, one pair at a time."""
    x = embeddings[:, :dim] / np.linalg.norm(embeddings[:, :dim], axis=1, keepdims=True)
    distances = [np.sum((x[i] - x[j]) ** 2) for i in range(len(x)) for j in range(i + 1, len(x))]
    cosines = [x[i] @ x[j] for i in range(len(x)) for j in range(i + 1, len(x))]
    singular = np.linalg.svd(x, compute_uv=False)
    p = singular / singular.sum()
    return {
        "alignment": float(np.mean([np.sum((x[a] - x[b]) ** 2) for a, b in pairs])),
        "uniformity": float(np.log(np.mean(np.exp(-2 * np.array(distances))))),
        "mean_cosine": float(np.mean(cosines)),
        "effective_rank": float(np.exp(-np.sum(p[p > 0] * np.log(p[p > 0])))),
    }


def test_health_metrics_match_the_formulas_at_every_dimension():
    embeddings = np.random.default_rng(0).normal(size=(40, 16))
    pairs = np.array([[0, 1], [2, 3], [4, 39]])
    measured = health_metrics(torch.tensor(embeddings, dtype=torch.float32), [16, 8, 4], torch.tensor(pairs))
    for dim in (16, 8, 4):
        expected = numpy_health(embeddings.astype(np.float32).astype(np.float64), dim, pairs)
        assert measured[dim] == pytest.approx(expected, rel=1e-5, abs=1e-6), dim


def test_identical_embeddings_have_rank_one_and_cosine_one():
    embeddings = torch.tensor([[0.3, -1.0, 2.0, 0.5]]).repeat(10, 1)
    (values,) = health_metrics(embeddings, [4]).values()
    assert values["effective_rank"] == pytest.approx(1.0, abs=1e-6)
    assert values["mean_cosine"] == pytest.approx(1.0, abs=1e-9)
    assert values["uniformity"] == pytest.approx(0.0, abs=1e-9)  # log mean exp(0): total collapse
    assert "alignment" not in values  # no pairs given


def test_orthonormal_embeddings_have_full_effective_rank():
    (values,) = health_metrics(torch.eye(8), [8]).values()
    assert values["effective_rank"] == pytest.approx(8.0, rel=1e-9)
    assert values["mean_cosine"] == pytest.approx(0.0, abs=1e-12)
    assert values["uniformity"] == pytest.approx(-4.0)  # every squared distance is 2: log exp(-4)
    # Truncated to 4 dimensions and re-normalised, rows 4..7 are zero vectors: rank 4 remains.
    assert health_metrics(torch.eye(8), [4])[4]["effective_rank"] == pytest.approx(4.0, rel=1e-9)


def test_collapsed_embeddings_are_less_uniform_than_spread_ones():
    generator = torch.Generator().manual_seed(0)
    spread = torch.randn(200, 32, generator=generator)
    collapsed = torch.ones(200, 32) + 0.05 * torch.randn(200, 32, generator=generator)
    spread_values, collapsed_values = health_metrics(spread, [32])[32], health_metrics(collapsed, [32])[32]
    assert collapsed_values["uniformity"] > -0.1 > -3 > spread_values["uniformity"]
    assert collapsed_values["effective_rank"] < 0.5 * spread_values["effective_rank"]


def test_probe_is_seeded_limited_and_pairs_point_at_its_texts():
    import datasets

    rows = datasets.Dataset.from_dict(
        {"anchor": [f"q{i}" for i in range(50)], "positive": [f"p{i % 10}" for i in range(50)]}
    )
    probe = Probe.of_rows(rows, ["anchor", "positive"], 31, seed=3, source="eval data")
    again = Probe.of_rows(rows, ["anchor", "positive"], 31, seed=3, source="eval data")
    assert again.texts == probe.texts and torch.equal(again.pairs, probe.pairs)
    assert probe.texts != Probe.of_rows(rows, ["anchor", "positive"], 31, seed=4, source="eval data").texts
    assert len(probe.texts) == 31 == len(set(probe.texts))
    pairs = {(probe.texts[a], probe.texts[b]) for a, b in probe.pairs.tolist()}
    assert pairs and all(int(q[1:]) % 10 == int(p[1:]) for q, p in pairs)
    assert Probe.of_rows(rows, ["anchor"], 5, seed=3, source="eval data").pairs is None


class _Module(torch.nn.Module):
    model = SimpleNamespace(prompts={"query": "query: "})


def test_health_warns_when_spread_or_rank_collapses(caplog):
    generator = torch.Generator().manual_seed(0)
    outputs = iter(
        [
            torch.randn(64, 16, generator=generator),
            torch.ones(64, 16) + 0.01 * torch.randn(64, 16, generator=generator),
        ]
    )
    evaluation = SimpleNamespace(
        history={}, evaluator=SimpleNamespace(encode=lambda model, texts, prompt: next(outputs))
    )
    probe = Probe([f"t{i}" for i in range(64)], None, "eval data")
    health = EmbeddingHealthCallback(probe, [16, 8], evaluation, min_fraction=0.5)
    trainer = _one_process_trainer(0)
    health.on_fit_start(trainer, _Module())
    trainer.global_step = 5
    health.on_train_epoch_end(trainer, _Module())
    assert not health.history  # the evaluation did not evaluate at step 5: neither does the health check
    evaluation.history[5] = {}
    with caplog.at_level(logging.WARNING):
        health.on_train_epoch_end(trainer, _Module())
    assert set(health.history) == {5} and len(health.warnings) == 4  # spread and rank, at both dims
    assert "Possible embedding collapse at step 5, dimension 16: spread (-uniformity)" in caplog.text
    assert (
        health.to_json(5)["warnings"] == health.warnings
        and health.to_json(5)["final"]["8"]["effective_rank"] < 2
    )


def _one_process_trainer(global_step: int) -> SimpleNamespace:
    """What the callbacks read of a one-process Lightning trainer at `global_step`."""
    return SimpleNamespace(
        global_step=global_step,
        is_global_zero=True,
        loggers=[],
        strategy=SimpleNamespace(root_device=torch.device("cpu")),
    )


class _Encoder(torch.nn.Module):
    device = torch.device("cpu")


class _ScoreSequence:
    """An evaluator returning the given spearman_cosine values at dimension 8, one per call."""

    name, primary_metric = "similarity", "spearman_cosine"
    last_per_example = None

    def __init__(self, *scores: float) -> None:
        self.scores = iter(scores)

    def __call__(self, model, dims, loss=None):
        assert not model.training
        return {8: {"spearman_cosine": next(self.scores)}}


@pytest.mark.parametrize(
    ("after", "max_drop", "warns"),
    [(0.49, 0.02, False), (0.45, 0.02, True), (0.6, -0.2, True), (0.6, -0.05, False)],
)
def test_general_evaluation_warns_on_drops_beyond_the_limit(after, max_drop, warns):
    general = GeneralEvaluation(_ScoreSequence(0.5, after), [8], max_drop, "sts")
    general.on_fit_start(_one_process_trainer(0), SimpleNamespace(model=_Encoder(), loss=None))
    general.finish(_Encoder(), torch.device("cpu"))
    assert (general.warning is not None) is warns
    assert general.to_json()["finetuned"] == {"8": {"spearman_cosine": after}}


def test_a_resumed_run_keeps_the_general_baseline_and_never_takes_a_trained_model_for_it():
    first = GeneralEvaluation(_ScoreSequence(0.5), [8], 0.02, "sts")
    first.on_fit_start(_one_process_trainer(0), SimpleNamespace(model=_Encoder(), loss=None))
    resumed_at = _one_process_trainer(3)
    resumed = GeneralEvaluation(_ScoreSequence(0.4), [8], 0.02, "sts")  # 0.4: the trained model's score
    resumed.load_state_dict(first.state_dict())
    resumed.on_fit_start(resumed_at, SimpleNamespace(model=_Encoder(), loss=None))
    resumed.finish(_Encoder(), torch.device("cpu"))
    assert (
        resumed.to_json()["baseline"] == {"8": {"spearman_cosine": 0.5}}
        and "0.5000 -> 0.4000" in resumed.warning
    )
    without_state = GeneralEvaluation(_ScoreSequence(0.4), [8], 0.02, "sts")
    without_state.on_fit_start(resumed_at, SimpleNamespace(model=_Encoder(), loss=None))
    without_state.finish(_Encoder(), torch.device("cpu"))
    assert without_state.baseline is None and without_state.warning is None


def test_a_run_evaluated_on_the_general_set_or_a_sample_of_it_needs_no_general_evaluation():
    general = SimilarityEvaluator(*STS)
    assert already_evaluated(SimilarityEvaluator(*STS), general)
    assert already_evaluated(SimilarityEvaluator(["b"], ["e"], [0.5]), general)
    assert not already_evaluated(SimilarityEvaluator(["b"], ["e"], [0.4]), general)
    not_similarity = SimpleNamespace(sentences_a=STS[0], sentences_b=STS[1], scores=STS[2])
    not_similarity.parts = lambda: [not_similarity]
    assert not already_evaluated(not_similarity, general)
    # several objectives: one of them evaluates on the general set, or none does
    other = SimilarityEvaluator(["b"], ["e"], [0.4])
    weights = {"other": 1.0, "sts": 1.0}
    assert already_evaluated(
        ObjectivesEvaluator({"other": other, "sts": SimilarityEvaluator(*STS)}, weights), general
    )
    assert not already_evaluated(ObjectivesEvaluator({"other": other}, weights), general)


def test_in_batch_negatives_count_distinct_documents_as_tokenized():
    def column(rows):
        ids = torch.tensor([row + [0] * (3 - len(row)) for row in rows])
        return {"input_ids": ids, "attention_mask": (ids > 0).long()}

    logged = {}
    module = SimpleNamespace(
        device=torch.device("cpu"),
        loss=torch.nn.Linear(1, 1),
        log=lambda name, value, **kwargs: logged.update({name: (value, kwargs["batch_size"])}),
    )
    queries, positives, negatives = (
        column([[1], [2], [3]]),
        column([[5, 6], [7], [5, 6]]),
        column([[8, 9, 4], [7], [1]]),
    )
    InBatchNegativesCallback().on_train_batch_start(
        SimpleNamespace(world_size=1), module, ([queries, positives, negatives], None), 0
    )
    assert logged == {"train/in_batch_negatives": (3.0, 3)}  # {56, 7, 894, 1} minus the own positive


RUN = [
    "model=tiny",
    "evaluation.show_progress_bar=false",
    "data.max_samples=64",
    "data.max_eval_samples=16",
    "data.batch_size=8",
    "trainer.max_steps=6",
    "callbacks=none",
    "trainer.log_every_n_steps=1",
]


@pytest.mark.slow
def test_pair_run_reports_general_evaluation_health_and_negatives(make_cfg, tmp_path, caplog):
    run = tmp_path / "run"
    cfg = make_cfg(
        *RUN,
        "logger=csv",
        "evaluation.every_n_steps=3",
        "evaluation.forgetting_max_drop=-3",
        "evaluation.health.probe_size=20",
        output_dir=run,
    )
    with caplog.at_level(logging.WARNING):
        metrics, _ = train(cfg)
    assert "val/score" in metrics and not any(key.startswith("health") for key in metrics)
    results = json.loads((run / "results.json").read_text())
    general, health = results["general"], results["health"]
    assert general["data"].endswith("stsb_test.jsonl") and general["primary_metric"] == "spearman_cosine"
    for key in ("baseline", "finetuned"):
        assert set(general[key]) == {"32", "16", "8"} and all(
            -1 <= v["spearman_cosine"] <= 1 for v in general[key].values()
        )
    # max_drop -3: any change of a correlation (at most 2) "drops more": the warning is forced.
    assert "dropped by more than evaluation.forgetting_max_drop=-3.0" in general["warning"]
    assert general["warning"] in caplog.text
    report = (run / "report.md").read_text()
    assert f"> **Warning:** {general['warning']}" in report
    section = report.split("## General evaluation (forgetting guard)")[1].split("## Embedding health")[0]
    for dim in ("32", "16", "8"):
        before, after = (
            general["baseline"][dim]["spearman_cosine"],
            general["finetuned"][dim]["spearman_cosine"],
        )
        assert f"| {dim} | {before:.4f} | {after:.4f} | {after - before:+.4f} |" in section
    assert health["probe"] == {"texts": 20, "pairs": 10, "source": "eval data"}
    assert set(health["history"]) == {"3", "6"} and health["final"] == health["history"]["6"]
    assert "| 8 | effective_rank |" in report.split("## Embedding health")[1]

    rows = logged_rows(run)
    measured = {int(row["step"]): row for row in rows if row.get("health/uniformity_dim8")}
    assert sorted(measured) == [0, 3, 6]  # before training and wherever val/ was evaluated
    evaluated = sorted(int(row["step"]) for row in rows if row.get("val/score"))
    assert evaluated == [0, 3, 6]
    for step, row in measured.items():
        values = health["baseline"] if step == 0 else health["history"][str(step)]
        for dim in (32, 16, 8):
            for name in ("alignment", "uniformity", "mean_cosine", "effective_rank"):
                assert float(row[f"health/{name}_dim{dim}"]) == pytest.approx(values[str(dim)][name])
    # The general evaluation goes to the loggers too: before training (step 0) and on the final model.
    key = "general/similarity_spearman_cosine_dim16"
    general_logged = {int(row["step"]): float(row[key]) for row in rows if row.get(key)}
    assert general_logged == {
        0: pytest.approx(general["baseline"]["16"]["spearman_cosine"]),
        6: pytest.approx(general["finetuned"]["16"]["spearman_cosine"]),
    }
    assert metrics[key] == pytest.approx(general["finetuned"]["16"]["spearman_cosine"])
    negatives = [
        float(row["train/in_batch_negatives"]) for row in rows if row.get("train/in_batch_negatives")
    ]
    assert negatives == [
        7.0
    ]  # no-duplicates batches of 8 pairs: 8 distinct positives, one of them the query's own


@pytest.mark.slow
def test_general_evaluation_is_skipped_when_the_run_is_already_evaluated_on_sts(make_cfg, tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        _, objects = train(
            make_cfg(
                *FAST,
                "dataset_type=score",
                "loss=cosent",
                "evaluation.forgetting_guard=${sts_benchmark_evaluator}",
                output_dir=tmp_path / "score",
            )
        )
    assert objects["results"]["general"] is None and "already on" in caplog.text
    assert "Not run: evaluation.forgetting_guard is null" in (tmp_path / "score" / "report.md").read_text()


@pytest.mark.slow
def test_general_and_health_can_be_turned_off(make_cfg, tmp_path):
    _, objects = train(
        make_cfg(
            *FAST, "evaluation.forgetting_guard=null", "evaluation.health=null", output_dir=tmp_path / "off"
        )
    )
    assert objects["results"]["general"] is None and objects["results"]["health"] is None
    assert not any(
        type(c).__name__ in ("GeneralEvaluation", "EmbeddingHealthCallback")
        for c in objects["trainer"].callbacks
    )


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("evaluation.forgetting_max_drop=abc", "evaluation.forgetting_max_drop must be a number"),
        ("evaluation.forgetting_max_drop=true", "evaluation.forgetting_max_drop must be a number"),
        ("evaluation.forgetting_guard=5", "evaluation.forgetting_guard must be an evaluator config"),
        (
            "evaluation.health.probe_size=1",
            "evaluation.health.probe_size must be a whole number of at least 2",
        ),
        (
            "evaluation.health.probe_size=2.5",
            "evaluation.health.probe_size must be a whole number of at least 2",
        ),
        ("evaluation.health.min_fraction=1.5", "evaluation.health.min_fraction must be a number in [0, 1]"),
    ],
)
def test_bad_guard_settings_fail_before_loading(make_cfg, no_model_loading, override, fragment):
    # Without debug=fdr, which turns the guards off (null): a key under null cannot be set.
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        train(make_cfg(*(o for o in FAST if o != "debug=fdr"), override))


def test_health_metrics_need_no_more_than_two_texts():
    values = health_metrics(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), [2], torch.tensor([[0, 1]]))[2]
    assert values["alignment"] == pytest.approx(2.0) and values["uniformity"] == pytest.approx(-4.0)
    assert math.isclose(values["effective_rank"], 2.0)
