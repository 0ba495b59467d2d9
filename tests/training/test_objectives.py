"""Several objectives in one run: two objectives of different dataset types trained through the real
`train(cfg)` in each batch order, the weighted loss and val/score, the resumable mixed loader, the
checks that name the objective, and the shipped experiments."""

import json
import math
from pathlib import Path

import pytest
import torch
from ddp_probe import run_ddp_sim

from conftest import logged_rows
from embedding_trainer.data.build import build_datamodule
from embedding_trainer.models.loading import load_model
from embedding_trainer.models.settings import ModelSettings
from embedding_trainer.settings.checks import validate_config
from embedding_trainer.train import train
from embedding_trainer.training.declared import LoggedTerms
from embedding_trainer.training.losses import build_loss
from embedding_trainer.training.objectives import WeightedObjectiveLoss, objective_view
from embedding_trainer.utils.errors import ConfigError

# Retrieval (SQuAD pairs, MNRL) and STS (scores, CoSENT), both in Matryoshka, on the tiny model:
# 3 retrieval batches of 16 and 2 STS batches of 16.
TWO_OBJECTIVES = [
    "model=tiny",
    "objectives=[retrieval,sts]",
    "evaluation.show_progress_bar=false",
    "callbacks.progress_bar.refresh_rate=0",
    "trainer.log_every_n_steps=1",
    "objectives.retrieval.data.max_samples=48",
    "objectives.retrieval.data.batch_size=16",
    "objectives.retrieval.data.max_eval_samples=16",
    "objectives.sts.data.max_samples=32",
    "objectives.sts.data.max_eval_samples=40",
    # No held-out validation (as conftest's GUARDS_OFF for one objective): val/score is the eval data's.
    "objectives.retrieval.data.validation_size=null",
    "objectives.sts.data.validation_size=null",
]


def batch_objectives(cfg) -> list[str]:
    """The objective of each batch of one epoch of the run's training loader."""
    datamodule = build_datamodule(cfg)
    datamodule.load()
    datamodule.use_model(load_model(ModelSettings.from_config(cfg.model)))
    return [objective for _, _, objective in datamodule.train_dataloader()]


@pytest.mark.parametrize(
    ("sampling", "expected_counts"),
    [("round_robin", {"retrieval": 2, "sts": 2}), ("proportional", {"retrieval": 3, "sts": 2})],
)
@pytest.mark.slow
def test_two_objectives_of_different_types_train_in_one_run(make_cfg, sampling, expected_counts):
    cfg = make_cfg(*TWO_OBJECTIVES, f"objective_sampling={sampling}")
    order = batch_objectives(cfg)
    assert {name: order.count(name) for name in expected_counts} == expected_counts
    if sampling == "round_robin":
        assert order == ["retrieval", "sts", "retrieval", "sts"]

    metrics, objects = train(cfg)

    run = objects["results"]
    assert objects["trainer"].global_step == len(order)
    tables = run["objectives"]
    assert (tables["retrieval"]["primary_metric"], tables["sts"]["primary_metric"]) == (
        "ndcg@10",
        "spearman_cosine",
    )
    for table in tables.values():
        assert set(table["finetuned"]) == {"32", "16", "8"} and set(table["baseline"]) == {"32", "16", "8"}
    # val/score: the mean over dimensions of the equally weighted primary metrics
    finetuned = objects["finetuned"]
    expected = sum(
        (values["retrieval/ndcg@10"] + values["sts/spearman_cosine"]) / 2 for values in finetuned.values()
    ) / len(finetuned)
    assert metrics["val/score"] == pytest.approx(expected, abs=1e-9)
    # each batch logged its objective's loss under its name; the weighted total as train/loss
    rows = logged_rows(_run(cfg))
    losses = [
        {name: row[f"train/loss/{name}"] for name in ("retrieval", "sts")}
        for row in rows
        if row.get("train/loss")
    ]
    assert [[name for name, value in step.items() if value != "nan"] for step in losses] == [
        [name] for name in order
    ]
    report = (_run(cfg) / "report.md").read_text()
    assert "### Objective retrieval: ndcg@10" in report and "### Objective sts: spearman_cosine" in report
    assert "objective sampling" in report
    for name in ("retrieval", "sts"):
        assert (_run(cfg) / "data" / name / "train.jsonl").exists()
    assert json.loads((_run(cfg) / "provenance.json").read_text())["data"]["objectives"].keys() == {
        "retrieval",
        "sts",
    }


def _run(cfg) -> Path:
    return Path(cfg.paths.output_dir)


@pytest.mark.slow
def test_loss_and_score_weights(make_cfg, caplog):
    cfg = make_cfg(
        *TWO_OBJECTIVES,
        "objectives.retrieval.score_weight=3",
        "objectives.sts.weight=0.25",
        "debug=fdr",
        "logger=none",
    )
    metrics, objects = train(cfg)
    finetuned = objects["finetuned"]
    expected = sum(
        (3 * values["retrieval/ndcg@10"] + values["sts/spearman_cosine"]) / 4 for values in finetuned.values()
    ) / len(finetuned)
    assert metrics["val/score"] == pytest.approx(expected, abs=1e-9)
    for values in finetuned.values():
        assert values["score"] == pytest.approx(
            (3 * values["retrieval/ndcg@10"] + values["sts/spearman_cosine"]) / 4
        )
    assert objects["module"].loss.weights == {"retrieval": 1.0, "sts": 0.25}
    # gradient clipping (trainer.gradient_clip_val, 1.0 by default) would undo the weights: said
    assert "undoes an objective's weight" in caplog.text


@pytest.mark.slow
def test_weighted_loss_is_the_objectives_loss_times_its_weight(make_cfg):
    cfg = make_cfg(*TWO_OBJECTIVES)
    model = load_model(ModelSettings.from_config(cfg.model))
    datamodule = build_datamodule(cfg)
    datamodule.load()
    datamodule.use_model(model)
    view = objective_view(cfg, "sts")
    cosent = build_loss(view.loss, view.modifier, model, 1, 0)
    weighted = WeightedObjectiveLoss({"sts": cosent}, {"sts": 0.25})
    features, labels, objective = next(batch for batch in datamodule.train_dataloader() if batch[2] == "sts")
    torch.manual_seed(0)
    alone = cosent(features, labels)
    torch.manual_seed(0)
    assert weighted(features, labels, objective).item() == pytest.approx(0.25 * alone.item(), rel=1e-6)
    assert weighted.logged_terms()["loss/sts"].item() == pytest.approx(alone.item(), rel=1e-6)


class TermsLoss(torch.nn.Module, LoggedTerms):
    """A loss of `value` with one logged term, `name`."""

    def __init__(self, value: float, name: str) -> None:
        super().__init__()
        self.value, self.name = torch.tensor(value), name

    def forward(self, features, labels):
        return self.value

    def logged_terms(self):
        return {self.name: self.value * 10}


def test_weighted_loss_logs_each_objectives_loss_and_the_terms_of_the_one_that_ran():
    weighted = WeightedObjectiveLoss(
        {"a": TermsLoss(1.0, "reg/variance"), "b": TermsLoss(2.0, "masked_pairs")}, {"a": 1.0, "b": 0.5}
    )
    assert weighted.logged_terms() == {}
    assert weighted([], torch.zeros(1), "b").item() == 1.0
    terms = weighted.logged_terms()
    assert set(terms) == {"loss/a", "loss/b", "masked_pairs"}
    assert math.isnan(terms["loss/a"].item()) and terms["loss/b"].item() == 2.0
    assert terms["masked_pairs"].item() == 20.0


@pytest.mark.parametrize("sampling", ["round_robin", "proportional"])
@pytest.mark.slow
def test_the_mixed_loader_resumes_mid_epoch_with_the_same_batches(make_cfg, sampling):
    cfg = make_cfg(*TWO_OBJECTIVES, f"objective_sampling={sampling}")
    model = load_model(ModelSettings.from_config(cfg.model))

    def loader(state=None):
        datamodule = build_datamodule(cfg)
        datamodule.load()
        datamodule.use_model(model)
        if state is not None:
            datamodule.load_state_dict(state)
        return datamodule, datamodule.train_dataloader()

    def keys(batch):
        features, _, objective = batch
        return objective, tuple(features[0]["input_ids"][:, 1].tolist())

    datamodule, first = loader()
    assert len([keys(batch) for batch in first]) == len(first)  # epoch 0
    first.batch_sampler.set_epoch(1)  # as Lightning does: epoch 1 reshuffles; stop inside it
    iterator = iter(first)
    seen = [keys(next(iterator)) for _ in range(2)]
    state = datamodule.state_dict()
    rest = [keys(batch) for batch in iterator]
    _, resumed = loader(state)
    assert rest and [keys(batch) for batch in resumed] == rest
    assert {objective for objective, _ in seen + rest} == {"retrieval", "sts"}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["loss@objectives.sts.loss=mnrl"], "In objective 'sts'"),
        (["objectives.sts.weight=0"], "objectives.sts.weight must be a number above 0"),
        (["objectives.sts.score_weight=-1"], "objectives.sts.score_weight must be a number 0 or more"),
        (
            ["objectives.sts.score_weight=0", "objectives.retrieval.score_weight=0"],
            "Every objective's score_weight is 0",
        ),
        (["objective_sampling=random"], "objective_sampling must be one of round_robin, proportional"),
        (["teacher=tiny"], "knowledge distillation (teacher=...) trains one objective"),
        (["adapter=linear"], "a query adapter (adapter=...) trains one objective"),
        (
            ["objectives.retrieval.data.hard_negatives.num_negatives=2"],
            "objectives.retrieval.data.hard_negatives",
        ),
        (["objectives.sts.data.batch_size=0"], "In objective 'sts'"),
    ],
)
def test_bad_objectives_are_refused_before_anything_loads(make_cfg, no_model_loading, overrides, message):
    cfg = make_cfg(*TWO_OBJECTIVES, *overrides)
    with pytest.raises(ConfigError) as raised:
        train(cfg)
    assert message in str(raised.value)
    assert not (_run(cfg) / "data").exists()


def test_a_check_message_names_the_objective_and_the_fitting_losses(make_cfg):
    cfg = make_cfg(*TWO_OBJECTIVES, "loss@objectives.sts.loss=mnrl")
    with pytest.raises(ConfigError) as raised:
        validate_config(cfg)
    text = str(raised.value)
    assert (
        "objectives.sts" in text and "MultipleNegativesRankingLoss cannot train on dataset_type=score" in text
    )
    assert "cosent" in text


@pytest.mark.parametrize("experiment", ["retrieval_and_sts", "contrastive_and_similarity"])
def test_shipped_multi_objective_experiments_compose_and_pass_the_checks(make_cfg, experiment):
    cfg = make_cfg(f"experiment={experiment}")
    validate_config(cfg)
    assert len(cfg.objectives) == 2


@pytest.mark.slow
def test_the_seed_example_trains_with_early_stopping(make_cfg):
    cfg = make_cfg(
        "experiment=contrastive_and_similarity",
        "model=tiny",
        "logger=none",
        "evaluation.show_progress_bar=false",
        "callbacks.progress_bar.refresh_rate=0",
        "objectives.contrastive.data.max_samples=64",
        "objectives.contrastive.data.max_eval_samples=20",
        "objectives.sts.data.max_samples=64",
        "objectives.sts.data.max_eval_samples=40",
        "evaluation.every_n_steps=2",
        "callbacks.early_stopping.patience=1",
        "callbacks.early_stopping.min_delta=1.0",  # no rise counts: stops at the first evaluation (step 2)
    )
    _, objects = train(cfg)
    stopped = objects["results"]["early_stopping"]
    assert stopped["stopped_step"] == 2 and objects["trainer"].global_step == 2
    assert objects["results"]["objectives"]["contrastive"]["primary_metric"] == "accuracy_cosine"  # triplets
    assert math.isfinite(objects["results"]["objectives"]["sts"]["finetuned"]["8"]["spearman_cosine"])


@pytest.mark.slow
def test_an_objectives_validation_data_chooses_and_its_eval_data_reports(make_cfg):
    cfg = make_cfg(*TWO_OBJECTIVES, "objectives.retrieval.data.validation_size=8", "debug=fdr", "logger=none")
    metrics, objects = train(cfg)
    selection = objects["results"]["selection"]
    assert "retrieval: " in selection["selected_on"] and "validation_size=8" in selection["selected_on"]
    assert "sts: " in selection["scored_on"] and not selection["same_data"]
    # the reported tables are the held-out test's: every objective scored on its eval data
    assert any(key.startswith("test/objectives_retrieval/ndcg@10_dim") for key in metrics)
    test = objects["test"].finetuned
    reported = objects["results"]["objectives"]["retrieval"]["finetuned"]
    assert reported["32"]["ndcg@10"] == test[32]["retrieval/ndcg@10"]


@pytest.mark.slow
def test_two_objectives_train_under_ddp_with_one_val_score(tmp_path):
    outputs, probe = tmp_path / "outputs", tmp_path / "probe"
    run_ddp_sim(
        [
            "model=tiny", "trainer.max_steps=4", "trainer.log_every_n_steps=1", "objectives=[retrieval,sts]",
            "objectives.retrieval.data.max_samples=32", "objectives.retrieval.data.batch_size=8",
            "objectives.retrieval.data.max_eval_samples=16", "objectives.sts.data.max_samples=32",
            "objectives.sts.data.batch_size=8", "objectives.sts.data.max_eval_samples=40",
            "evaluation.show_progress_bar=false", "evaluation.forgetting_guard=null", "evaluation.health=null",
        ],
        outputs,
        probe,
    )  # fmt: skip
    (run,) = (outputs / "default" / "runs").iterdir()
    seen = [json.loads((probe / f"val_score_rank{rank}.json").read_text()) for rank in range(2)]
    assert seen[0] == seen[1]
    results = json.loads((run / "results.json").read_text())
    assert results["step"] == 4 and set(results["objectives"]) == {"retrieval", "sts"}
    rows = logged_rows(run)
    order = [
        [n for n in ("retrieval", "sts") if row[f"train/loss/{n}"] != "nan"]
        for row in rows
        if row.get("train/loss")
    ]
    assert order == [["retrieval"], ["sts"], ["retrieval"], ["sts"]]
