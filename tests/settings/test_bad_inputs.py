"""A battery of bad inputs (numbers, trainer settings, files, checkpoints, folders, a signal): each
ends in a message that says what to change, before the model loads where it can, and leaves an
earlier run's folder exactly as it was and the failing run's folder empty (gone)."""

import json
import os
import signal
from pathlib import Path

import pytest
import torch

from conftest import assert_refused_before_the_model, files_of
from embedding_trainer.runs.preemption import RunPreempted
from embedding_trainer.runs.registry import RunRegistry
from embedding_trainer.runs.run_folder import CLAIM_FILE, RunFolderError
from embedding_trainer.train import train
from embedding_trainer.utils.errors import ConfigError, DataError

TINY = ["model=tiny", "logger=none", "evaluation.show_progress_bar=false", "debug=fdr"]


def _pairs(tmp_path: Path, rows: int) -> str:
    path = tmp_path / f"pairs_{rows}.jsonl"
    path.write_text(
        "".join(
            json.dumps({"anchor": f"question {i}", "positive": f"passage {i}"}) + "\n" for i in range(rows)
        )
    )
    return str(path)


def _file(tmp_path: Path, name: str, content: str | bytes) -> str:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return str(path)


def _torch_file(tmp_path: Path, name: str, content: dict) -> str:
    torch.save(content, tmp_path / name)
    return str(tmp_path / name)


# The distillation experiment on the tiny model (two layers: the experiment's layer choice dropped).
DISTIL_TINY = ["~model.encoder.keep_layers", "teacher=tiny", "data.max_samples=64"]

BROKEN_JSONL = '{"anchor": "question", "positive": "passage"}\n{"anchor": "cut off here\n'

# (case, overrides given the test's tmp_path, error type, fragments the message must hold)
BEFORE_THE_MODEL = [
    (
        "negative learning rate",
        lambda t: ["model.lr=-1e-5"],
        ConfigError,
        ["learning rate must be a positive", "-1e-05"],
    ),
    (
        "zero learning rate",
        lambda t: ["model.lr=0"],
        ConfigError,
        ["learning rate must be a positive", "model.lr="],
    ),
    ("learning rate that is no number", lambda t: ["model.lr=fast"], ConfigError, ["'fast'"]),
    (
        "warmup ratio above 1",
        lambda t: ["scheduler.warmup_ratio=1.5"],
        ConfigError,
        ["warmup_ratio", "[0, 1)", "1.5"],
    ),
    ("warmup over the whole run", lambda t: ["scheduler.warmup_ratio=1.0"], ConfigError, ["[0, 1)"]),
    (
        "unknown schedule",
        lambda t: ["scheduler.name=cosine_annealing"],
        ConfigError,
        ["not a transformers schedule", "cosine_with_restarts"],
    ),
    (
        "zero epochs",
        lambda t: ["debug=none", "trainer.max_epochs=0", "data.max_samples=64"],
        ConfigError,
        [
            "0 optimizer steps",
            "64 training rows in batches of 32 = 2 batches per epoch",
            "trainer.max_epochs=0",
        ],
    ),
    (
        "zero steps",
        lambda t: ["debug=none", "trainer.max_steps=0"],
        ConfigError,
        ["0 optimizer steps", "trainer.max_steps=0"],
    ),
    (
        "no training batches",
        lambda t: ["debug=none", "+trainer.limit_train_batches=0"],
        ConfigError,
        ["0 optimizer steps", "trainer.limit_train_batches=0"],
    ),
    (
        "unknown precision",
        lambda t: ["trainer.precision=17"],
        ConfigError,
        ["Lightning Trainer refused", "17"],
    ),
    (
        "unknown accelerator",
        lambda t: ["trainer.accelerator=abacus"],
        ConfigError,
        ["Lightning Trainer refused", "abacus"],
    ),
    (
        "zero accumulation",
        lambda t: ["trainer.accumulate_grad_batches=0"],
        ConfigError,
        ["trainer.accumulate_grad_batches must be a whole number of at least 1"],
    ),
    (
        "zero batch size",
        lambda t: ["data.batch_size=0"],
        ConfigError,
        ["data.batch_size must be a whole number of at least 1"],
    ),
    (
        "batch size that is no number",
        lambda t: ["data.batch_size=many"],
        ConfigError,
        ["data.batch_size", "'many'"],
    ),
    (
        "zero training rows asked for",
        lambda t: ["data.max_samples=0"],
        ConfigError,
        ["data.max_samples", "or null"],
    ),
    (
        "negative eval batch size",
        lambda t: ["evaluation.batch_size=-1"],
        ConfigError,
        ["evaluation.batch_size", "-1"],
    ),
    (
        "negative loader workers",
        lambda t: ["data.num_workers=-2"],
        ConfigError,
        ["data.num_workers", "at least 0"],
    ),
    (
        "held-out fraction above 1",
        lambda t: ["data.eval_path=null", "data.test_size=1.5"],
        DataError,
        ["data.test_size", "(0, 1)"],
    ),
    (
        "one training row for in-batch negatives",
        lambda t: [f"data.train_path={_pairs(t, 1)}", f"data.eval_path={_pairs(t, 4)}"],
        ConfigError,
        ["MultipleNegativesRankingLoss", "every batch here has 1 row", "cannot learn"],
    ),
    (
        "batches of one row for in-batch negatives",
        lambda t: ["data.batch_size=1"],
        ConfigError,
        ["every batch here has 1 row", "data.batch_size=1"],
    ),
    (
        "checkpoint that is a text file",
        lambda t: [f"ckpt_path={_file(t, 'notes.ckpt', 'not a checkpoint')}"],
        ConfigError,
        ["is not a PyTorch checkpoint", "checkpoints/last.ckpt"],
    ),
    (
        "checkpoint of something else",
        lambda t: [f"ckpt_path={_torch_file(t, 'weights.pt', {'weight': torch.zeros(2)})}"],
        ConfigError,
        ["not a Lightning checkpoint of this harness"],
    ),
    (
        "registry that is a folder",
        lambda t: [f"registry.path={t}"],
        ConfigError,
        ["Cannot open the run registry", "registry.path=null"],
    ),
    (
        "malformed JSON lines",
        lambda t: [f"data.train_path={_file(t, 'broken.jsonl', BROKEN_JSONL)}"],
        DataError,
        ["broken.jsonl"],
    ),
    (
        "eval folder without the retrieval layout",
        lambda t: [f"data.eval_path={t}"],
        DataError,
        ["not in the retrieval layout"],
    ),
    (
        "distillation evaluator folder without the retrieval layout",
        lambda t: ["experiment=distill_minilm_l3", *DISTIL_TINY, f"dataset_type.evaluator.path={t}"],
        DataError,
        ["dataset_type.evaluator.path=", "is not a retrieval folder"],
    ),
    (
        "distillation evaluator split the folder does not have",
        lambda t: ["experiment=distill_minilm_l3", *DISTIL_TINY, "dataset_type.evaluator.split=dev"],
        DataError,
        ["has no qrels/dev.tsv", "['test', 'train']", "Set dataset_type.evaluator.split"],
    ),
    (
        "more negatives than distinct positives",
        lambda t: [
            "dataset_type=n_tuple",
            f"data.train_path={_pairs(t, 3)}",
            f"data.eval_path={_pairs(t, 3)}",
        ],
        DataError,
        ["data.negatives_per_anchor=3", "has 3"],
    ),
]


@pytest.mark.parametrize(
    "case, overrides, error_type, fragments", BEFORE_THE_MODEL, ids=[case[0] for case in BEFORE_THE_MODEL]
)
def test_bad_input_is_refused_before_the_model_loads(
    make_cfg, earlier_run, no_model_loading, tmp_path, case, overrides, error_type, fragments
):
    assert_refused_before_the_model(make_cfg(*TINY, *overrides(tmp_path)), earlier_run, error_type, fragments)


def test_a_checkpoint_of_another_model_names_what_to_use(make_cfg, earlier_run, tmp_path):
    state = {
        "pytorch-lightning_version": "2.6.0",
        "state_dict": {"model.0.auto_model.other.weight": torch.zeros(2)},
    }
    before = files_of(earlier_run)
    with pytest.raises(ConfigError) as caught:
        train(make_cfg(*TINY, f"ckpt_path={_torch_file(tmp_path, 'other.ckpt', state)}"))
    assert "weights of another model or loss" in str(caught.value) and "model=" in str(caught.value)
    assert files_of(earlier_run) == before


def test_the_run_folder_under_a_file_says_where_to_write(make_cfg, earlier_run, tmp_path):
    blocker = Path(_file(tmp_path, "blocker", "kept"))
    with pytest.raises(RunFolderError, match="Cannot create the run folder"):
        train(make_cfg(*TINY, output_dir=blocker / "run"))
    assert blocker.read_text() == "kept"


def test_a_signal_while_data_loads_ends_the_run_cleanly(make_cfg, earlier_run, tmp_path, monkeypatch):
    """SIGTERM before training: RunPreempted (exit 143 from the command line), the registry row
    failed, the claim released, nothing of the earlier run touched."""
    from embedding_trainer.data import EmbeddingDataModule

    def load_then_terminated(self):
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(EmbeddingDataModule, "load", load_then_terminated)
    before = files_of(earlier_run)
    cfg = make_cfg(*TINY)
    with pytest.raises(RunPreempted) as caught:
        train(cfg)
    assert caught.value.exit_code == 128 + signal.SIGTERM and "outside training" in str(caught.value)
    [run] = RunRegistry(Path(cfg.registry.path)).list()
    assert run["status"] == "failed" and run["error_type"] == "RunPreempted"
    assert not (Path(cfg.paths.output_dir) / CLAIM_FILE).exists()
    assert files_of(earlier_run) == before
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
