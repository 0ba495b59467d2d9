"""Is the gain real? The vectorised paired bootstrap equals a plain loop over the same resamples and
agrees with scipy's bootstrap; per-example scores average to the reported metrics; a real run saves
them and its results carry intervals recomputable from the saved files."""

import json
import math
import random
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.stats
import torch

from embedding_trainer.evaluation import (
    KnnClassificationEvaluator,
    PairBinaryEvaluator,
    RetrievalEvaluator,
    SoftmaxAccuracyEvaluator,
    TripletEvaluator,
)
from embedding_trainer.evaluation import significance as sig
from embedding_trainer.evaluation.callback import EvaluationCallback
from embedding_trainer.models import loading as models
from embedding_trainer.reporting.results import primary_table
from embedding_trainer.settings.checks import validate_config
from embedding_trainer.train import train
from embedding_trainer.utils.errors import ConfigError

FAST = ["model=tiny", "debug=fdr", "logger=none", "evaluation.show_progress_bar=false"]


def loop_interval(
    differences: list[float], index_rows: list[list[int]], confidence: float
) -> tuple[float, float]:
    """Reference: each resample's mean by a plain loop, then the linear-interpolation percentile."""
    means = sorted(sum(differences[i] for i in row) / len(row) for row in index_rows)

    def quantile(q: float) -> float:
        position = q * (len(means) - 1)
        below = math.floor(position)
        above = min(below + 1, len(means) - 1)
        return means[below] + (position - below) * (means[above] - means[below])

    tail = (1 - confidence) / 2
    return quantile(tail), quantile(1 - tail)


def test_vectorised_bootstrap_equals_a_loop_over_the_same_resamples(monkeypatch):
    monkeypatch.setattr(sig, "CHUNK_ELEMENTS", 200)  # several chunks, and a last one that is short
    rng = np.random.default_rng(7)
    differences = np.column_stack(
        [rng.normal(0.1, 1.0, 37), rng.exponential(1.0, 37) - 1.0, rng.integers(-1, 2, 37)]
    )
    index_rows = np.concatenate(list(sig.resample_indices(37, 1001, seed=3))).tolist()
    assert len(index_rows) == 1001 and all(
        len(row) == 37 and 0 <= min(row) and max(row) < 37 for row in index_rows
    )

    means = sig.bootstrap_means(differences, 1001, seed=3)
    low, high = sig.paired_bootstrap(differences, 1001, 0.9, seed=3)
    for column in range(3):
        values = differences[:, column].tolist()
        expected = [sum(values[i] for i in row) / 37 for row in index_rows]
        np.testing.assert_allclose(means[:, column], expected, rtol=0, atol=1e-12)
        ref_low, ref_high = loop_interval(values, index_rows, 0.9)
        assert low[column] == pytest.approx(ref_low, abs=1e-12) and high[column] == pytest.approx(
            ref_high, abs=1e-12
        )
        assert ref_low < np.mean(values) < ref_high
    # A column's interval does not depend on the other columns: the same resamples serve them all.
    alone_low, alone_high = sig.paired_bootstrap(differences[:, 1], 1001, 0.9, seed=3)
    assert alone_low[0] == pytest.approx(low[1], abs=1e-12) and alone_high[0] == pytest.approx(
        high[1], abs=1e-12
    )
    assert not np.allclose(sig.paired_bootstrap(differences, 1001, 0.9, seed=4)[0], low)  # the seed matters


def test_bootstrap_agrees_with_scipy_and_python_random():
    """Independent random streams, many resamples: the intervals agree to a small fraction of the
    standard error (the Monte Carlo error of a 2.5% quantile over 20,000 resamples is ~0.02 of it)."""
    rng = np.random.default_rng(0)
    differences = rng.exponential(1.0, 300) - 0.8  # skewed, so a wrong tail would show
    standard_error = differences.std() / math.sqrt(len(differences))
    low, high = sig.paired_bootstrap(differences, 20_000, 0.95, seed=11)
    reference = scipy.stats.bootstrap(
        (differences,),
        np.mean,
        n_resamples=20_000,
        confidence_level=0.95,
        method="percentile",
        random_state=np.random.default_rng(5),
    ).confidence_interval
    assert low[0] == pytest.approx(reference.low, abs=0.1 * standard_error)
    assert high[0] == pytest.approx(reference.high, abs=0.1 * standard_error)
    draw = random.Random(1)
    values = differences.tolist()
    rows = [[draw.randrange(300) for _ in range(300)] for _ in range(4000)]
    loop_low, loop_high = loop_interval(values, rows, 0.95)
    assert low[0] == pytest.approx(loop_low, abs=0.15 * standard_error)
    assert high[0] == pytest.approx(loop_high, abs=0.15 * standard_error)


def test_p_values_are_the_paired_t_test():
    rng = np.random.default_rng(1)
    before, after = rng.random((50, 3)), rng.random((50, 3)) + [0.0, 0.05, 0.3]
    expected = scipy.stats.ttest_rel(after, before, axis=0).pvalue
    np.testing.assert_allclose(sig.paired_p_values(after - before), expected, rtol=1e-12)
    assert sig.paired_p_values(np.zeros((5, 1)))[0] == 1.0
    assert sig.paired_p_values(np.full((5, 1), 0.25))[0] == 0.0
    assert np.isnan(sig.paired_p_values(np.ones((1, 1)))[0])


def test_compare_marks_intervals_and_says_why_it_skips():
    rng = np.random.default_rng(2)
    baseline = {
        8: {"accuracy": rng.integers(0, 2, 400).astype(float)},
        4: {"accuracy": rng.integers(0, 2, 400).astype(float)},
    }
    finetuned = {
        8: {"accuracy": np.maximum(baseline[8]["accuracy"], rng.integers(0, 2, 400))},
        4: {"accuracy": baseline[4]["accuracy"].copy()},
    }
    result = sig.compare(baseline, finetuned, 2000, 0.95, seed=0, unit="sentences")
    gained, unchanged = result.test(8, "accuracy"), result.test(4, "accuracy")
    assert gained.ci_low > 0 and gained.excludes_zero and gained.p_value < 1e-6
    assert unchanged.ci_low == unchanged.ci_high == unchanged.mean_change == 0 and not unchanged.excludes_zero
    assert gained.mean_change == pytest.approx(
        finetuned[8]["accuracy"].mean() - baseline[8]["accuracy"].mean(), abs=1e-15
    )
    assert "over 400 sentences (2,000 resamples, seed 0)" in result.legend()
    assert result.legend("macro_f1") == (
        "95% CI and p-value: '-' (macro_f1 is not a mean over sentences; "
        "results.json has the tests of accuracy)."
    )
    table = primary_table("macro_f1", {8: {"macro_f1": 0.5}}, {8: {"macro_f1": 0.6}}, result)
    assert "| 8 | 0.5000 | 0.6000 | +0.1000 | - | - | - |" in table and "macro_f1 is not a mean" in table
    json.dumps(result.to_json(), allow_nan=False)
    assert sig.compare(None, finetuned, 2000).skipped.startswith("no baseline")
    assert sig.compare(None, None, 2000).skipped == "the evaluator has no per-example scores"
    assert sig.compare(baseline, finetuned, 0).skipped == "evaluation.bootstrap.resamples=0"
    shorter = {8: {"accuracy": baseline[8]["accuracy"][:10]}}
    assert "different examples" in sig.compare(shorter, finetuned, 100).skipped


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return models.build_tiny_model(str(tmp_path_factory.mktemp("tiny")), hidden_size=32, seed=3)


def _sentences(count: int, offset: int = 0) -> list[str]:
    words = [
        "river",
        "bank",
        "money",
        "tree",
        "music",
        "piano",
        "soccer",
        "goal",
        "rain",
        "cloud",
        "code",
        "bug",
    ]
    return [
        f"{words[(i * 7 + offset) % 12]} {words[(i * 5 + offset) % 12]} {words[i % 11]} number {i}"
        for i in range(count)
    ]


def _evaluators(tiny_model) -> list:
    a, b, c = _sentences(60), _sentences(60, 3), _sentences(60, 6)
    labels = [i % 2 for i in range(60)]
    queries = {f"q{i}": text for i, text in enumerate(a)}
    corpus = {f"d{i}": text for i, text in enumerate(b)}
    relevant = {f"q{i}": {f"d{i}", f"d{(i + 1) % 60}"} if i % 3 else {f"d{i}"} for i in range(60)}
    return [
        RetrievalEvaluator(
            queries, corpus, relevant, show_progress_bar=False, query_chunk_size=16, corpus_chunk_size=13
        ),
        PairBinaryEvaluator(a, b, labels, show_progress_bar=False),
        KnnClassificationEvaluator(
            b, [i % 4 for i in range(60)], a, [i % 4 for i in range(60)], k=3, show_progress_bar=False
        ),
        TripletEvaluator(a, b, [c, _sentences(60, 9)], show_progress_bar=False),
        SoftmaxAccuracyEvaluator(a, b, [i % 3 for i in range(60)], show_progress_bar=False),
    ]


@pytest.mark.slow
def test_per_example_means_equal_the_reported_metrics(tiny_model):
    from sentence_transformers.sentence_transformer.losses import SoftmaxLoss

    loss = SoftmaxLoss(tiny_model, sentence_embedding_dimension=32, num_labels=3)  # the softmax classifier
    for evaluator in _evaluators(tiny_model):
        metrics = evaluator(tiny_model, [32, 16, 8], loss)
        per_example = evaluator.last_per_example
        assert per_example is not None and set(per_example) == set(metrics), evaluator.name
        for dim, values in per_example.items():
            assert values, (evaluator.name, dim)
            for name, scores in values.items():
                assert scores.dtype == np.float64 and len(scores) == 60
                assert abs(scores.mean() - metrics[dim][name]) <= 1e-12, (evaluator.name, dim, name)
    retrieval = _evaluators(tiny_model)[0]
    reported = retrieval(tiny_model, [16])[16]
    assert set(retrieval.last_per_example[16]) == set(reported) and len(reported) == 15
    assert retrieval.example_ids == [f"q{i}" for i in range(60)]


class _StepEvaluator:
    """Stands in for an evaluator: each call returns the next score, with per-example scores."""

    name, primary_metric = "fake", "accuracy"

    def __init__(self, scores: list[float]) -> None:
        self.scores = iter(scores)
        self.last_per_example = None

    def __call__(self, model, dims, loss=None):
        score = next(self.scores)
        self.last_per_example = {8: {"accuracy": np.full(4, score)}}
        return {8: {"accuracy": score}}


def test_callback_keeps_baseline_best_and_latest_and_checkpoints_them(tmp_path):
    evaluation = EvaluationCallback(_StepEvaluator([0.1, 0.5, 0.7, 0.7, 0.2]), [8])
    trainer = SimpleNamespace(
        global_step=0,
        is_global_zero=True,
        loggers=[],
        callback_metrics={},
        strategy=SimpleNamespace(broadcast=lambda value, src: value, root_device=torch.device("cpu")),
    )
    module = SimpleNamespace(training=True, model=None, loss=None, eval=lambda: None, train=lambda mode: None)
    evaluation.on_fit_start(trainer, module)
    for step in (2, 4, 6, 8):
        trainer.global_step = step
        evaluation.on_train_epoch_end(trainer, module)
    assert evaluation.baseline_examples[8]["accuracy"][0] == 0.1
    assert sorted(evaluation.examples) == [4, 8]  # best (the first of two 0.7s) and latest
    torch.save(evaluation.state_dict(), tmp_path / "state.pt")
    restored = EvaluationCallback(_StepEvaluator([]), [8])
    restored.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    np.testing.assert_array_equal(restored.examples[4][8]["accuracy"], np.full(4, 0.7))
    np.testing.assert_array_equal(restored.baseline_examples[8]["accuracy"], np.full(4, 0.1))


def test_bootstrap_settings_are_checked(make_cfg):
    with pytest.raises(ConfigError, match="evaluation.bootstrap.confidence"):
        validate_config(make_cfg(*FAST, "evaluation.bootstrap.confidence=95"))
    with pytest.raises(ConfigError, match="evaluation.bootstrap.resamples"):
        validate_config(make_cfg(*FAST, "evaluation.bootstrap.resamples=-1"))


@pytest.mark.slow
def test_a_run_saves_per_query_scores_and_intervals_recomputable_from_them(make_cfg, tmp_path):
    run = tmp_path / "run"
    _, objects = train(
        make_cfg(
            *FAST, "evaluation.bootstrap.resamples=3000", "seed=5", "scheduler.warmup_ratio=0", output_dir=run
        )
    )
    results = json.loads((run / "results.json").read_text())
    metric = results["primary_metric"]
    ids_before, baseline, step_before = sig.load_per_example(run / "per_example" / "baseline.npz")
    ids_after, finetuned, step_after = sig.load_per_example(run / "per_example" / "finetuned.npz")
    evaluator = objects["evaluation"].evaluator
    assert ids_before == ids_after == evaluator.query_ids and (step_before, step_after) == (
        -1,
        results["step"],
    )
    for side, per_query in (("baseline", baseline), ("finetuned", finetuned)):
        assert {str(dim) for dim in per_query} == set(results[side])
        for dim, values in per_query.items():
            assert set(values) == set(results[side][str(dim)])
            for name, scores in values.items():
                assert abs(scores.mean() - results[side][str(dim)][name]) <= 1e-12

    tests = results["significance"]
    assert tests["skipped"] is None and tests["resamples"] == 3000 and tests["seed"] == 5
    assert tests["n_examples"] == len(ids_after) and tests["unit"] == "queries"
    table = (run / "results.md").read_text()
    changed = 0
    for dim in finetuned:
        differences = finetuned[dim][metric] - baseline[dim][metric]
        (low,), (high,) = sig.paired_bootstrap(differences, 3000, 0.95, seed=5)
        saved = tests["by_dimension"][str(dim)][metric]
        assert saved["ci_low"] == pytest.approx(low, abs=1e-12) and saved["ci_high"] == pytest.approx(
            high, abs=1e-12
        )
        change = results["finetuned"][str(dim)][metric] - results["baseline"][str(dim)][metric]
        assert saved["mean_change"] == pytest.approx(change, abs=1e-12) and low <= change <= high
        changed += int((differences != 0).any() and low < high)
        assert saved["excludes_zero"] == (low > 0 or high < 0)
        mark = "*" if saved["excludes_zero"] else ""
        assert f"| {change:+.4f}{mark} | {low:+.4f} | {high:+.4f} |" in table
    assert changed  # the training step changed some rankings: a real interval was tested
    legend = f"paired bootstrap of the mean change over {len(ids_after):,} queries (3,000 resamples, seed 5)"
    assert "| 95% CI low | 95% CI high | p-value |" in table and legend in table
    report = (run / "report.md").read_text()
    assert "| 95% CI low | 95% CI high | p-value |" in report and legend in report


@pytest.mark.parametrize(
    "overrides",
    [["evaluation.baseline=false"], ["dataset_type=score", "loss=cosent"]],
    ids=["no-baseline", "no-per-example-scores"],
)
@pytest.mark.slow
def test_runs_without_a_test_show_dashes(make_cfg, tmp_path, overrides):
    run = tmp_path / "run"
    train(make_cfg(*FAST, *overrides, output_dir=run))
    tests = json.loads((run / "results.json").read_text())["significance"]
    assert tests["skipped"] and tests["by_dimension"] == {}
    table = (run / "results.md").read_text()
    assert "| 95% CI low | 95% CI high | p-value |" in table
    assert f"95% CI and p-value: '-' ({tests['skipped']})." in table
    rows = [line for line in table.splitlines() if line.startswith("| 32 |")]
    assert rows and rows[0].endswith("| - | - | - |")
    saved = (
        sorted(path.name for path in (run / "per_example").glob("*.npz"))
        if (run / "per_example").exists()
        else []
    )
    assert saved == (["finetuned.npz"] if overrides == ["evaluation.baseline=false"] else [])


@pytest.mark.slow
def test_a_resumed_run_tests_against_the_checkpointed_baseline(make_cfg, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    common = [
        "model=tiny",
        "evaluation.show_progress_bar=false",
        "data.max_eval_samples=16",
        "data.max_samples=32",
        "data.batch_size=8",
        "logger=none",
        "evaluation.bootstrap.resamples=500",
    ]
    train(make_cfg(*common, "trainer.max_epochs=1", "checkpoints.keep=last", output_dir=first))
    checkpoint = first / "checkpoints" / "last.ckpt"
    train(make_cfg(*common, "trainer.max_epochs=2", f"ckpt_path={checkpoint}", output_dir=second))
    ids, baseline, _ = sig.load_per_example(first / "per_example" / "baseline.npz")
    resumed_ids, resumed_baseline, _ = sig.load_per_example(second / "per_example" / "baseline.npz")
    assert resumed_ids == ids
    for dim, values in baseline.items():
        for name, scores in values.items():
            np.testing.assert_array_equal(resumed_baseline[dim][name], scores)
    results = json.loads((second / "results.json").read_text())
    assert results["significance"]["skipped"] is None and results["significance"]["by_dimension"]
    assert sig.load_per_example(second / "per_example" / "finetuned.npz")[2] == results["step"]
