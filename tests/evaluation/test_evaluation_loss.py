"""The training loss reaches the evaluators that score with it as an argument: the softmax classifier of
loss=softmax scores the validation evaluation and the held-out test (before training and on the chosen
model), and without the loss that evaluator says what it needs."""

import pytest
import torch

from conftest import FAST
from embedding_trainer.evaluation.classification import SoftmaxAccuracyEvaluator
from embedding_trainer.models.loading import build_tiny_model
from embedding_trainer.train import train


def test_the_softmax_evaluator_without_the_training_loss_says_it_needs_it(tmp_path):
    tiny_model = build_tiny_model(str(tmp_path), seed=3)
    evaluator = SoftmaxAccuracyEvaluator(["a cat"], ["a dog"], [0], show_progress_bar=False)
    with pytest.raises(ValueError, match="needs the SoftmaxLoss classifier"):
        evaluator(tiny_model, [32])
    with pytest.raises(ValueError, match="needs the SoftmaxLoss classifier"):
        evaluator(tiny_model, [32], torch.nn.Linear(1, 1))


@pytest.mark.slow
def test_a_softmax_run_scores_validation_and_held_out_test_with_its_classifier(make_cfg):
    cfg = make_cfg(
        *FAST,
        "dataset_type=pair_class",
        "loss=softmax",
        "data.validation_size=0.2",
        "data.max_samples=60",
        "data.max_eval_samples=30",
        "callbacks=none",
        "trainer.max_steps=2",
    )
    _, objects = train(cfg)
    test = objects["test"]
    assert test is not None and test.loss is objects["module"].loss
    for metrics in (test.baseline, test.finetuned, objects["evaluation"].latest()[1]):
        assert list(metrics) == [32] and 0 <= metrics[32]["accuracy"] <= 1
