"""Provenance: a real run records its commit, versions, devices and data fingerprints in
results.json, provenance.json, the registry row and the logged config; git states come from real
temporary repositories; the model card names the base model by its hub id."""

import json
import shutil
import subprocess

import pytest
import yaml
from hydra.utils import instantiate

from conftest import FAST
from embedding_trainer.models.settings import ModelSettings
from embedding_trainer.reporting.model_card import write_model_card
from embedding_trainer.reporting.trained import TrainedLength
from embedding_trainer.runs.provenance import git_state, record_provenance
from embedding_trainer.runs.registry import RunRegistry
from embedding_trainer.settings.reporting import ReportSettings, RunDescription
from embedding_trainer.settings.resolvers import PROJECT_ROOT
from embedding_trainer.train import train
from embedding_trainer.utils.fingerprints import file_fingerprint

# What a card's run trained: two epochs raised from one by data.min_steps, 20 steps, the last kept.
TRAINED = TrainedLength(
    epochs=2,
    steps=20,
    kept_step=20,
    max_epochs=2,
    configured_epochs=1,
    max_steps=None,
    min_steps=20,
    smoke_run=False,
)

# One logged training step (Lightning turns loggers off under fast_dev_run).
LOGGED = [
    *(o for o in FAST if not o.startswith("logger=")),
    "trainer.fast_dev_run=false",
    "trainer.max_steps=1",
    "callbacks=none",
]


def git(repo, *args: str) -> str:
    command = ["git", "-C", str(repo), "-c", "user.name=test", "-c", "user.email=test@example.com", *args]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path):
    """A git checkout with one commit of `a.txt`."""
    folder = tmp_path / "repo"
    folder.mkdir()
    git(folder, "init", "-q")
    (folder / "a.txt").write_text("one\n")
    git(folder, "add", "a.txt")
    git(folder, "commit", "-q", "-m", "first")
    return folder


@pytest.mark.slow
def test_a_run_records_its_provenance_everywhere(make_cfg, tmp_path):
    run = tmp_path / "run"
    cfg = make_cfg(*LOGGED, "logger=csv", output_dir=run)
    _, objects = train(cfg)

    provenance = json.loads((run / "provenance.json").read_text())
    assert json.loads((run / "results.json").read_text())["provenance"] == provenance
    assert RunRegistry(cfg.registry.path).get(objects["run_id"])["metrics"]["provenance"] == provenance
    assert yaml.safe_load((run / "csv" / "hparams.yaml").read_text())["provenance"] == provenance

    state = provenance["git"]
    assert state["commit"] == git(PROJECT_ROOT, "rev-parse", "HEAD")
    assert (run / "provenance" / "git.diff").is_file() == (state["diff"] == "provenance/git.diff")
    versions = provenance["versions"]
    for name in (
        "python",
        "torch",
        "transformers",
        "sentence-transformers",
        "pytorch-lightning",
        "hydra-core",
        "datasets",
        "optuna",
    ):
        assert versions[name], name
    devices = provenance["devices"]
    assert (
        devices["cpu"]
        and devices["cpu_cores"] >= 1
        and devices["cuda_device_count"] == len(devices["cuda_devices"])
    )
    assert devices["trainer"]["devices_per_node"] == 1
    assert provenance["base_model"]["hub_id"] is None and len(provenance["base_model"]["fingerprint"]) == 16
    train_data, eval_data = provenance["data"]["train"], provenance["data"]["eval"]
    assert (
        train_data["rows"] == len(objects["datamodule"].train_dataset)
        and len(train_data["fingerprint"]) == 16
    )
    assert eval_data["corpus"] > 0 and eval_data["fingerprint"] != train_data["fingerprint"]

    # Outside a git checkout (an installed wheel) the rest is still recorded, and says why there is no commit.
    elsewhere = record_provenance(
        tmp_path / "again",
        RunDescription.from_config(cfg),
        objects["model"],
        objects["datamodule"],
        objects["trainer"],
        root=tmp_path / "run",
    )
    assert elsewhere["git"]["commit"] is None and "not a git checkout" in elsewhere["git"]["reason"]
    # Its model is the trained one now (debug=fdr's step moves the weights), so only the data must match.
    assert elsewhere["data"] == provenance["data"]
    assert elsewhere["base_model"]["fingerprint"] != provenance["base_model"]["fingerprint"]


@pytest.mark.slow
def test_the_wandb_config_holds_the_provenance(make_cfg, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    run = tmp_path / "run"
    train(make_cfg(*LOGGED, "logger=wandb", output_dir=run))
    fingerprint = json.loads((run / "provenance.json").read_text())["base_model"]["fingerprint"]
    [record] = (run / "wandb").glob("offline-run-*/run-*.wandb")  # protobuf with the config as JSON values
    assert b"provenance" in record.read_bytes() and fingerprint.encode() in record.read_bytes()


def test_a_dirty_checkout_saves_a_diff_that_reproduces_it(repo, tmp_path):
    (repo / "a.txt").write_text("one\ntwo\n")
    (repo / "new.txt").write_text("untracked\n")
    state = git_state(repo, tmp_path / "run")
    assert state == {
        "commit": git(repo, "rev-parse", "HEAD"),
        "branch": git(repo, "branch", "--show-current"),
        "dirty": True,
        "modified": ["a.txt"],
        "untracked": ["new.txt"],
        "diff": "provenance/git.diff",
    }
    git(repo, "checkout", "-q", "--", "a.txt")  # back to the commit, then the saved diff makes the run's tree
    git(repo, "apply", str(tmp_path / "run" / "provenance" / "git.diff"))
    assert (repo / "a.txt").read_text() == "one\ntwo\n"


def test_a_clean_checkout_saves_no_diff(repo, tmp_path):
    git(repo, "checkout", "-q", "--detach")
    (tmp_path / "provenance").mkdir()
    (tmp_path / "provenance" / "git.diff").write_text("an earlier run's diff")  # as in a resumed run's folder
    state = git_state(repo, tmp_path)
    assert state["dirty"] is False and state["diff"] is None and state["branch"] is None
    assert not (tmp_path / "provenance" / "git.diff").exists()


def test_untracked_files_alone_make_a_checkout_dirty_without_a_diff(repo, tmp_path):
    (repo / "notes.txt").write_text("x\n")
    state = git_state(repo, tmp_path)
    assert state["dirty"] is True and state["untracked"] == ["notes.txt"] and state["diff"] is None


@pytest.mark.parametrize("where", ["plain folder", "inside a checkout", "no commit yet"])
def test_no_git_checkout_is_reported_not_raised(where, repo, tmp_path):
    root = {
        "plain folder": tmp_path / "plain",
        "inside a checkout": repo / "sub",
        "no commit yet": tmp_path / "empty",
    }[where]
    root.mkdir()
    if where == "no commit yet":
        git(root, "init", "-q")
    state = git_state(root, tmp_path)
    assert state["commit"] is None and str(root) in state["reason"]


def test_git_missing_is_reported_not_raised(monkeypatch, repo, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path / "no_bin"))
    assert git_state(repo, tmp_path) == {
        "commit": None,
        "reason": "git is not installed, so the project's commit is unknown",
    }


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("minilm", "sentence-transformers/all-MiniLM-L6-v2"),
        ("bge_base", "BAAI/bge-base-en-v1.5"),
        ("tiny", None),
    ],
)
def test_hub_ids(make_cfg, model, expected):
    assert ModelSettings.from_config(make_cfg(f"model={model}").model).hub_id == expected


def test_a_local_folder_has_no_hub_id(make_cfg, tmp_path):
    cfg = make_cfg("model=bge_base", f"model.encoder.name_or_path={tmp_path}")
    assert ModelSettings.from_config(cfg.model).hub_id is None


def test_the_model_card_names_the_base_model_by_its_hub_id(make_cfg, tmp_path, caplog):
    cfg = make_cfg("model=minilm", "model_card.model_name=my-embedder")
    model = instantiate(make_cfg("model=tiny").model.encoder)  # its weights do not matter to the card
    finetuned = {384: {"ndcg@10": 0.75, "mrr@10": 0.7}, 64: {"ndcg@10": 0.6, "mrr@10": 0.55}}
    baseline = {384: {"ndcg@10": 0.7, "mrr@10": 0.65}, 64: {"ndcg@10": 0.5, "mrr@10": 0.45}}
    provenance = {
        "git": {"commit": None, "reason": "not a checkout"},
        "versions": {"torch": "2.13.0", "optuna": None},
    }
    (tmp_path / "model").mkdir()

    card = write_model_card(
        tmp_path / "model",
        ReportSettings.from_config(cfg),
        model,
        "retrieval",
        "ndcg@10",
        baseline,
        finetuned,
        provenance,
        TRAINED,
    ).read_text()

    assert not [record for record in caplog.records if "Error" in record.getMessage()]
    _, front, body = card.split("---\n", 2)
    metadata = yaml.safe_load(front)
    assert metadata["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert metadata["language"] == ["en"] and metadata["license"] == "apache-2.0"
    assert metadata["library_name"] == "sentence-transformers" and "embedding-trainer" in metadata["tags"]
    [index] = metadata["model-index"]
    assert index["name"] == "my-embedder"
    # Evaluated on the default pair data (by its name, not `dim 384`), a metric per metric and dimension.
    [result] = index["results"]
    assert result["dataset"] == {"name": "squad pairs test", "type": "squad_pairs-test"}
    assert {m["type"]: m["value"] for m in result["metrics"]} == {
        f"{name}_dim{dim}": value for dim, values in finetuned.items() for name, value in values.items()
    }
    assert index["results"][0]["task"]["type"] == "information-retrieval"
    assert "| epochs trained | 2 |" in body and "(raised from 1 by data.min_steps=20)" in body
    assert (
        "from [`sentence-transformers/all-MiniLM-L6-v2`](https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2)"
        in body
    )
    assert "| base model | [`sentence-transformers/all-MiniLM-L6-v2`]" in body and "site-packages" not in card
    assert "- git commit: unknown (not a checkout)" in body and "- torch: 2.13.0" in body
    assert "optuna" not in body


def test_a_model_without_hub_id_is_called_local(make_cfg, tmp_path):
    cfg = make_cfg("model=bge_base", f"model.encoder.name_or_path={tmp_path}")
    model = instantiate(make_cfg("model=tiny").model.encoder)
    (tmp_path / "model").mkdir()
    provenance = {"git": {"commit": "abc", "dirty": True}, "versions": {}}
    card = write_model_card(
        tmp_path / "model",
        ReportSettings.from_config(cfg),
        model,
        "similarity",
        "spearman_cosine",
        None,
        {32: {"spearman_cosine": 0.5}},
        provenance,
        TRAINED,
    ).read_text()
    _, front, body = card.split("---\n", 2)
    assert "base_model" not in yaml.safe_load(front)
    assert (
        f"from a local model (`{tmp_path.name}`)" in body
        and "- git commit: `abc` with uncommitted changes" in body
    )
    assert str(tmp_path) not in card  # the hub has no local folders


def test_a_folders_fingerprint_covers_every_files_name_and_bytes(tmp_path):
    folder = tmp_path / "folder"
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text('{"_id": "d1", "text": "a"}\n')
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    first = file_fingerprint(folder)
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    assert file_fingerprint(copy) == first
    (copy / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t2\n")
    assert file_fingerprint(copy) != first
    shutil.rmtree(copy)
    shutil.copytree(folder, copy)
    (copy / "qrels" / "test.tsv").rename(copy / "qrels" / "dev.tsv")
    assert file_fingerprint(copy) != first
