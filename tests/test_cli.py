"""The command lines users type, run as real subprocesses."""

import json
import os
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from embedding_trainer.resolvers import PROJECT_ROOT
from embedding_trainer.runs.registry import RunRegistry

FAST = ["model=tiny", "debug=fdr", "logger=none", "evaluation.show_progress_bar=false"]


def _run(tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    command = [
        sys.executable,
        str(PROJECT_ROOT / "train.py"),
        *args,
        f"paths.log_dir={tmp_path}",
        f"paths.cache_dir={tmp_path / 'cache'}",
    ]
    return subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False
    )


def test_multirun_over_modifiers_writes_one_folder_per_run(tmp_path):
    result = _run(tmp_path, "-m", "modifier=matryoshka,adaptive_layer", *FAST)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = sorted(p for p in (tmp_path / "default" / "multiruns").glob("*/*") if p.is_dir())
    assert len(runs) == 2
    assert runs[0].name.startswith("0_") and "modifier=matryoshka" in runs[0].name
    assert runs[1].name.startswith("1_") and "modifier=adaptive_layer" in runs[1].name
    for run in runs:
        assert json.loads((run / "results.json").read_text())["finetuned"]
        assert (run / "model" / "modules.json").is_file()
    adaptive = OmegaConf.load(runs[1] / ".hydra" / "config.yaml")
    assert adaptive.modifier._target_.endswith("AdaptiveLayerLoss")
    assert "matryoshka_dims" not in adaptive.modifier


def test_bad_combination_exits_with_the_message_not_a_traceback(tmp_path):
    result = _run(tmp_path, "dataset_type=score", "loss=mnrl", *FAST)
    assert result.returncode != 0
    assert "Losses for dataset_type=score" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
    (run,) = RunRegistry(tmp_path / "runs.db").list()
    assert run["status"] == "failed" and run["error_type"] == "ConfigError"
    assert run["overrides"][:2] == ["dataset_type=score", "loss=mnrl"]


def test_hub_model_without_network_fails_fast_and_clearly(tmp_path):
    result = _run(tmp_path, "model=bge_base", "debug=fdr", "logger=none")
    assert result.returncode != 0
    output = result.stderr + result.stdout
    assert "Cannot load model 'BAAI/bge-base-en-v1.5'" in output
    assert "Traceback" not in output


ISSUE_CASES = {
    "negative learning rate": (["model.lr=-1e-5"], "The learning rate must be a positive number"),
    "no training step": (["debug=none", "trainer.max_epochs=0"], "This run would train 0 optimizer steps"),
    "not a checkpoint": (["ckpt_path=PATH/notes.ckpt"], "is not a PyTorch checkpoint"),
    "one-row batches for MNRL": (["data.batch_size=1"], "every batch here has 1 row"),
}


@pytest.mark.parametrize("case", list(ISSUE_CASES))
def test_numbers_that_cannot_work_end_in_a_message(tmp_path, case):
    (tmp_path / "notes.ckpt").write_text("not a checkpoint")
    overrides, message = ISSUE_CASES[case]
    result = _run(tmp_path, *FAST, *(override.replace("PATH", str(tmp_path)) for override in overrides))
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    assert message in output and "Traceback" not in output
    (folder,) = (tmp_path / "default" / "runs").iterdir()
    assert sorted(path.name for path in folder.iterdir()) == [".hydra", "train.log"]  # Hydra's own files only
