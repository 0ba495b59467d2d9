"""Selection and reporting on different data: a validation split picks the checkpoint (val/score),
the eval data scores the reported table, and the report says which did which."""

import csv
import json
import shutil
from pathlib import Path

import datasets
import pytest
from sentence_transformers import SentenceTransformer

from conftest import FAST
from embedding_trainer.data.build import build_datamodule
from embedding_trainer.data.holdout import hold_out
from embedding_trainer.evaluation import RetrievalEvaluator
from embedding_trainer.train import train
from embedding_trainer.utils.errors import ConfigError, DataError

SQUAD = Path(__file__).resolve().parents[2] / "data" / "squad_pairs"
# Four optimizer steps with an evaluation every two: the checkpoint is chosen among two evaluations.
SEVERAL_EVALUATIONS = [
    "model=tiny",
    "logger=csv",
    "evaluation.show_progress_bar=false",
    "callbacks.progress_bar.refresh_rate=0",
    "data.max_samples=64",
    "data.batch_size=16",
    "data.max_eval_samples=24",
    "trainer.max_epochs=1",
    "evaluation.every_n_steps=2",
    "model.lr=1e-3",
    "scheduler.warmup_ratio=0",
]


def rows_of(anchors: list[str]) -> datasets.Dataset:
    return datasets.Dataset.from_dict({"anchor": anchors, "positive": [f"doc {a}" for a in anchors]})


def test_hold_out_keeps_every_row_of_a_query_on_one_side_seeded():
    rows = rows_of(["a", "a", "b", "c", "c", "c", "d", "e", "f", "g"])
    kept, held = hold_out(rows, 0.3, seed=3)
    assert set(kept["anchor"]).isdisjoint(held["anchor"])
    assert len(set(held["anchor"])) == 2 and len(kept) + len(held) == len(rows)  # 30% of 7 queries: 2
    assert sorted(list(kept["anchor"]) + list(held["anchor"])) == sorted(rows["anchor"])
    assert list(hold_out(rows, 0.3, seed=3)[1]["anchor"]) == list(held["anchor"])
    assert {tuple(hold_out(rows, 2, seed=s)[1]["anchor"]) for s in range(8)} != {tuple(held["anchor"])}
    assert len(set(hold_out(rows, 6, seed=0)[1]["anchor"])) == 6


@pytest.mark.parametrize("size", [7, 100, 2.5, 0])
def test_hold_out_refuses_sizes_that_leave_nothing_or_make_no_sense(size):
    with pytest.raises(DataError, match="data.validation_size"):
        hold_out(rows_of(list("abcdefg")), size, seed=0)


def evaluate_saved(run: Path, eval_data, dims: list[int]) -> dict:
    return RetrievalEvaluator.from_eval_data(eval_data, show_progress_bar=False)(
        SentenceTransformer(str(run / "model"), device="cpu"), dims
    )


@pytest.mark.slow
def test_validation_queries_choose_and_the_eval_data_scores_the_table(make_cfg, tmp_path):
    run = tmp_path / "run"
    metrics, objects = train(make_cfg(*SEVERAL_EVALUATIONS, "data.validation_size=16", output_dir=run))
    datamodule = objects["datamodule"]
    validation, test = datamodule.validation_data, datamodule.eval_data

    # 16 training questions held out, ranked among the training split's paragraphs (not the test split's);
    # none of them trained on.
    train_docs = {
        line.split("\t")[1] for line in (SQUAD / "qrels" / "train.tsv").read_text().splitlines()[1:]
    }
    assert len(validation.retrieval.queries) == 16 and set(validation.retrieval.corpus) == train_docs
    assert validation.retrieval.corpus.items() <= test.retrieval.corpus.items()
    assert set(validation.rows["anchor"]).isdisjoint(datamodule.train_dataset["anchor"])
    written = [json.loads(line) for line in (run / "data" / "validation.jsonl").read_text().splitlines()]
    assert [row["anchor"] for row in written] == validation.rows["anchor"]

    # val/score: the validation evaluations; the reported table: the test data, before and after.
    results = json.loads((run / "results.json").read_text())
    evaluation = objects["evaluation"]
    step = results["step"]
    assert len(evaluation.history) == 2 and metrics["val/score"] == evaluation.score(evaluation.history[step])
    dims = sorted(evaluation.history[step], reverse=True)
    after = evaluate_saved(run, test, dims)
    for dim in dims:
        for name, value in after[dim].items():
            assert results["finetuned"][str(dim)][name] == pytest.approx(value, abs=1e-6)
            assert metrics[f"test/retrieval_{name}_dim{dim}"] == pytest.approx(value, abs=1e-6)
    assert results["finetuned"] != {str(d): v for d, v in evaluation.history[step].items()}
    assert results["baseline"] == {str(d): v for d, v in objects["test"].baseline.items()}
    assert results["significance"]["n_examples"] == len(test.retrieval.queries)

    selection = results["selection"]
    assert selection["same_data"] is False and selection["warning"] is None and selection["candidates"] == 2
    assert "data.validation_size=16 training queries held out" in selection["selected_on"]
    report = (run / "report.md").read_text()
    assert f"chosen by val/score on {selection['selected_on']} among 2 evaluation(s)" in report
    assert f"the table is scored on {selection['scored_on']}, which chose nothing" in report
    assert "**Warning:** The reported metrics are scored on the data that chose" not in report

    # Loggers get test/... before training (step 0) and after (the chosen step).
    logged = list(csv.DictReader(next(run.rglob("metrics.csv")).open()))
    key = f"test/retrieval_ndcg@10_dim{dims[0]}"
    test_rows = {int(row["step"]): float(row[key]) for row in logged if row.get(key)}
    assert test_rows == {
        0: pytest.approx(results["baseline"][str(dims[0])]["ndcg@10"], abs=1e-6),
        step: pytest.approx(results["finetuned"][str(dims[0])]["ndcg@10"], abs=1e-6),
    }


@pytest.mark.slow
def test_choosing_and_scoring_on_the_same_data_warns_only_when_something_was_chosen(make_cfg, tmp_path):
    chosen = tmp_path / "chosen"
    train(make_cfg(*SEVERAL_EVALUATIONS, output_dir=chosen))
    selection = json.loads((chosen / "results.json").read_text())["selection"]
    assert selection["same_data"] and selection["candidates"] == 2
    assert "data.validation_size" in selection["warning"]
    assert f"> **Warning:** {selection['warning']}" in (chosen / "report.md").read_text()

    single = tmp_path / "single"
    train(make_cfg(*FAST, output_dir=single))
    selection = json.loads((single / "results.json").read_text())["selection"]
    assert selection["same_data"] and selection["candidates"] == 1 and selection["warning"] is None
    assert "the table is scored on the same data" in (single / "report.md").read_text()


def squad_with_dev_split(folder: Path) -> Path:
    """The shipped SQuAD folder with a `dev` qrels split: the first 40 test questions."""
    shutil.copytree(SQUAD, folder)
    lines = (folder / "qrels" / "test.tsv").read_text().splitlines()
    (folder / "qrels" / "dev.tsv").write_text("\n".join(lines[:41]) + "\n")
    (folder / "qrels" / "test.tsv").write_text("\n".join([lines[0], *lines[41:]]) + "\n")
    return folder


def test_a_dev_split_of_the_eval_folder_is_the_validation_data(make_cfg, tmp_path):
    """Given validation data wins over data.validation_size (the held-out default)."""
    folder = squad_with_dev_split(tmp_path / "squad")
    cfg = make_cfg(
        *FAST,
        f"data.train_path={folder}",
        f"data.eval_path={folder}",
        "data.validation_split=dev",
        "data.validation_size=8",
    )
    datamodule = build_datamodule(cfg)
    datamodule.load()
    dev_ids = {line.split("\t")[0] for line in (folder / "qrels" / "dev.tsv").read_text().splitlines()[1:]}
    assert set(datamodule.validation_data.retrieval.queries) <= dev_ids
    assert set(datamodule.eval_data.retrieval.queries).isdisjoint(dev_ids)
    assert datamodule.selection_data is datamodule.validation_data


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        (["data.validation_size=-3"], DataError, "data.validation_size must be"),
        (["data.validation_size=100000"], DataError, "distinct training queries"),
        (
            ["data.validation_path=/no/such/folder"],
            DataError,
            "data.validation_path=/no/such/folder does not exist",
        ),
        (
            ["dataset_type=score", "loss=cosent", "data.eval_path=null", "data.validation_split=dev"],
            DataError,
            "needs a source",
        ),
        (
            ["dataset_type=single", "loss=contrastive_tension", "data.validation_size=10"],
            ConfigError,
            "would change nothing",
        ),
    ],
)
def test_bad_validation_settings_fail_before_the_model_loads(
    make_cfg, tmp_path, no_model_loading, overrides, error, message
):
    run = tmp_path / "run"
    with pytest.raises(error, match=message):
        train(make_cfg(*FAST, *overrides, output_dir=run))
    assert not (run / "model").exists() and not (run / "results.json").exists()


def test_the_leakage_check_counts_the_queries_evaluated(make_cfg):
    datamodule = build_datamodule(make_cfg(*FAST, "data.max_eval_samples=7"))
    datamodule.load()
    assert len(datamodule.eval_data.retrieval.queries) == 7 and datamodule.leakage.query_total == 7
