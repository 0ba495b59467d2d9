"""Own data without traps, a saved model's own dimensions, and held-out validation by default (issue 27,
parts 2-4): the commands users type, run as real subprocesses, and the splits behind them."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from conftest import FAST
from embedding_trainer.data.build import build_datamodule
from embedding_trainer.evaluate import evaluate
from embedding_trainer.models.loading import build_tiny_model
from embedding_trainer.settings.resolvers import CONFIG_DIR, PROJECT_ROOT
from embedding_trainer.train import train
from embedding_trainer.utils.errors import DataError

SQUAD = PROJECT_ROOT / "data" / "squad_pairs"


def run_script(script: str, tmp_path: Path, model_cache: Path, *args: str) -> subprocess.CompletedProcess:
    """`python <script> <args>` as a user runs it, writing under `tmp_path` (its outputs/ and run/)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    command = [
        sys.executable,
        str(PROJECT_ROOT / script),
        *args,
        f"paths.log_dir={tmp_path / 'outputs'}",
        f"paths.cache_dir={model_cache}",
    ]
    return subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900, check=False
    )


def own_pairs(path: Path, count: int = 30) -> Path:
    """A JSONL file of `count` (question, passage) rows with columns of its own: distinct SQuAD questions."""
    queries = [json.loads(line) for line in (SQUAD / "queries.jsonl").read_text().splitlines()]
    corpus = [json.loads(line) for line in (SQUAD / "corpus.jsonl").read_text().splitlines()]
    questions = list(dict.fromkeys(query["text"] for query in queries))[:count]
    path.write_text(
        "".join(
            json.dumps({"question": q, "passage": doc["text"]}) + "\n" for q, doc in zip(questions, corpus)
        )
    )
    return path


def rows_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def shipped_cfg(tmp_path: Path, model_cache: Path, *overrides: str):
    """The composed training config with the shipped data defaults as they are (the held-out validation
    that conftest's `make_cfg` turns off included)."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=[
                f"paths.output_dir={tmp_path / 'run'}",
                f"paths.log_dir={tmp_path / 'outputs'}",
                f"paths.cache_dir={model_cache}",
                "evaluation.forgetting_guard=null",
                "evaluation.health=null",
                "data.min_steps=null",
                *overrides,
            ],
        )
    with open_dict(cfg):
        cfg.pop("hydra", None)
    return cfg


@pytest.mark.slow
def test_own_train_path_alone_holds_out_test_and_validation_parts(tmp_path, model_cache):
    """`data.train_path` (and its column map) alone: no shipped SQuAD eval data, a seeded test part and
    validation queries of the user's rows, said in the one `Data:` line; evaluate.py scores the same test part."""
    data = own_pairs(tmp_path / "mine.jsonl")
    mine = [f"data.train_path={data}", "data.column_map={question: anchor, passage: positive}"]
    result = run_script("train.py", tmp_path, model_cache, *FAST, *mine, f"hydra.run.dir={tmp_path / 'run'}")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    [line] = [line for line in output.splitlines() if "- Data: " in line]
    assert (
        "Data: 24 training rows, 3 eval rows, 3 validation rows (pair): no data.eval_path, so 3 rows " in line
    )
    assert "(data.test_size=0.1) held out of data.train_path as test data" in line
    assert "3 validation queries (data.validation_size=0.1) held out of the training rows (seed 42)" in line
    prepared = tmp_path / "run" / "data"
    parts = {
        name: {row["anchor"] for row in rows_of(prepared / f"{name}.jsonl")}
        for name in ("train", "eval", "validation")
    }
    assert parts["train"].isdisjoint(parts["eval"]) and parts["train"].isdisjoint(parts["validation"])
    assert set().union(*parts.values()) == {row["question"] for row in rows_of(data)}
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["selection"]["same_data"] is False
    assert "data.test_size=0.1 held out" in results["selection"]["scored_on"]
    assert "squad" not in json.dumps(results["provenance"]["data"])

    evaluated = run_script(
        "evaluate.py", tmp_path, model_cache, *FAST, *mine, f"hydra.run.dir={tmp_path / 'eval'}"
    )
    assert evaluated.returncode == 0, (evaluated.stdout + evaluated.stderr)[-3000:]
    provenance = json.loads((tmp_path / "eval" / "results.json").read_text())["provenance"]["data"]
    assert provenance["eval"]["rows"] == 3
    assert provenance["eval"]["fingerprint"] == results["provenance"]["data"]["eval"]["fingerprint"]


@pytest.mark.parametrize(
    ("script", "overrides", "message"),
    [
        (
            "train.py",
            ["data.eval_path=null", "data.test_size=null"],
            "ConfigError: dataset_type=pair is scored on eval data, but data.eval_path and data.test_size are "
            + "both null: set data.eval_path=<your test data>, or data.test_size=0.1",
        ),
        (
            "train.py",
            ["data.train_path=null"],
            "ConfigError: data.train_path is null: set it to the training data",
        ),
        (
            "evaluate.py",
            ["data.train_path=null", "data.eval_path=null"],
            "ConfigError: dataset_type=pair is scored on data.eval_path, which is null, and data.train_path",
        ),
    ],
)
@pytest.mark.slow
def test_commands_without_the_data_they_score_end_in_one_line(
    tmp_path, model_cache, script, overrides, message
):
    data = own_pairs(tmp_path / "mine.jsonl")
    result = run_script(script, tmp_path, model_cache, *FAST, f"data.train_path={data}", *overrides)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    assert message in output and "Traceback" not in output


@pytest.mark.slow
def test_evaluate_reads_no_training_data(tmp_path, model_cache, make_cfg):
    """`evaluate.py data.train_path=null` scores the shipped test questions; a training file that could not
    be read at all does not matter to it either."""
    result = run_script(
        "evaluate.py",
        tmp_path,
        model_cache,
        *FAST,
        "data.train_path=null",
        f"hydra.run.dir={tmp_path / 'eval'}",
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "Data: 32 eval rows (pair)" in output
    data = json.loads((tmp_path / "eval" / "results.json").read_text())["provenance"]["data"]
    assert data["train"] is None and data["eval"]["source"] == str(SQUAD) and data["eval"]["rows"] == 32

    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"nothing": "fits"}\n')
    with pytest.raises(DataError):  # training reads it
        build_datamodule(make_cfg(*FAST, f"data.train_path={broken}", f"data.eval_path={SQUAD}")).load()
    cfg = make_cfg(*FAST, f"data.train_path={broken}", f"data.eval_path={SQUAD}", config_name="evaluate")
    _, objects = evaluate(cfg)
    assert objects["datamodule"].train_dataset is None and len(objects["datamodule"].eval_data.rows) == 32


@pytest.mark.slow
def test_model_local_reads_its_dimensions_from_the_saved_model(tmp_path, model_cache, make_cfg):
    """A model this harness saved is evaluated at the dimensions of its card, a plain sentence-transformers
    folder at its full dimension, with no model.dimension or evaluation.dims given; set ones win."""
    _, trained = train(make_cfg(*FAST, "dataset_type=score", "loss=cosent", output_dir=tmp_path / "trained"))
    plain = tmp_path / "plain"
    build_tiny_model(str(model_cache)).save(str(plain), create_model_card=False)
    result = run_script(
        "evaluate.py",
        tmp_path,
        model_cache,
        "-m",
        "model=local",
        f"model.name_or_path={trained['model_path']},{plain}",
        "debug=fdr",
        "logger=none",
        "evaluation.show_progress_bar=false",
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    [folder] = (tmp_path / "outputs" / "default" / "evaluation_multiruns").iterdir()
    evaluated = {
        json.loads(path.read_text())["model"]: list(json.loads(path.read_text())["evaluated"])
        for path in folder.glob("*/results.json")
    }
    assert evaluated == {trained["model_path"]: ["32", "16", "8"], str(plain): ["32"]}

    local = ["model=local", f"model.name_or_path={trained['model_path']}"]
    assert make_cfg(*local).model.dimension == 32
    assert list(make_cfg(*local, "model.matryoshka_dims=[16,8]").evaluation.dims) == [16, 8]
    assert list(make_cfg(*local, "evaluation.dims=[8]", config_name="evaluate").evaluation.dims) == [8]
    assert make_cfg(*local, "model.dimension=16").model.dimension == 16


@pytest.mark.slow
def test_the_default_job_validates_on_unused_training_questions(tmp_path, model_cache):
    """2,048 training pairs as before; 500 validation questions from the pairs max_samples leaves unused,
    ranked among the training split's 947 paragraphs only; the 5,492 test questions score the table."""
    with_validation = build_datamodule(shipped_cfg(tmp_path, model_cache))
    with_validation.load()
    without = build_datamodule(shipped_cfg(tmp_path, model_cache, "data.validation_size=null"))
    without.load()
    assert with_validation.train_dataset["anchor"] == without.train_dataset["anchor"]
    assert len(with_validation.train_dataset) == 2048
    validation = with_validation.validation_data
    assert len(validation.retrieval.queries) == 500
    assert set(validation.rows["anchor"]).isdisjoint(with_validation.train_dataset["anchor"])
    train_docs = {
        line.split("\t")[1] for line in (SQUAD / "qrels" / "train.tsv").read_text().splitlines()[1:]
    }
    assert set(validation.retrieval.corpus) == train_docs and len(train_docs) == 947
    test = with_validation.eval_data.retrieval
    assert len(test.queries) == 5492 and len(test.corpus) == 2067
    assert set(test.queries).isdisjoint(validation.retrieval.queries)


# Each shipped default as the README's table types it, with a loss that fits.
SHIPPED = {
    "pair": "mnrl",
    "triplet": "mnrl",
    "n_tuple": "mnrl",
    "score": "cosent",
    "pair_class": "softmax",
    "pair_binary": "contrastive",
    "single_class": "batch_hard_triplet",
    "single": "contrastive_tension",
}


@pytest.mark.parametrize("dataset_type", list(SHIPPED))
@pytest.mark.slow
def test_every_shipped_default_chooses_on_held_out_validation(tmp_path, model_cache, dataset_type):
    """`python train.py dataset_type=X loss=Y` runs, and its checkpoint is never chosen on the data that
    scores its table: held-out validation rows (none of them trained on), or an evaluation set of its own."""
    cfg = shipped_cfg(
        tmp_path, model_cache, *FAST, f"dataset_type={dataset_type}", f"loss={SHIPPED[dataset_type]}"
    )
    _, objects = train(cfg)
    selection = json.loads((tmp_path / "run" / "results.json").read_text())["selection"]
    datamodule = objects["datamodule"]
    if dataset_type == "single":  # scored on the STS benchmark, a set of its own: one evaluation chose
        assert (
            datamodule.validation_data is None
            and selection["candidates"] == 1
            and selection["warning"] is None
        )
        return
    first = datamodule.train_dataset.column_names[0]
    assert selection["same_data"] is False and "data.validation_size=" in selection["selected_on"]
    assert set(datamodule.validation_data.rows[first]).isdisjoint(datamodule.train_dataset[first])
