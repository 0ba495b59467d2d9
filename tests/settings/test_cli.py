"""The command lines users type, run as real subprocesses."""

import json
import os
import re
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from embedding_trainer.cli import config_groups, option_description
from embedding_trainer.runs.registry import RunRegistry
from embedding_trainer.settings.resolvers import PROJECT_ROOT

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


@pytest.mark.slow
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


@pytest.mark.slow
def test_bad_combination_exits_with_the_message_not_a_traceback(tmp_path):
    result = _run(tmp_path, "dataset_type=score", "loss=mnrl", *FAST)
    assert result.returncode != 0
    assert "Losses for dataset_type=score" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
    (run,) = RunRegistry(tmp_path / "runs.db").list()
    assert run["status"] == "failed" and run["error_type"] == "ConfigError"
    assert run["overrides"][:2] == ["dataset_type=score", "loss=mnrl"]


@pytest.mark.slow
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
@pytest.mark.slow
def test_numbers_that_cannot_work_end_in_a_message(tmp_path, case):
    (tmp_path / "notes.ckpt").write_text("not a checkpoint")
    overrides, message = ISSUE_CASES[case]
    result = _run(tmp_path, *FAST, *(override.replace("PATH", str(tmp_path)) for override in overrides))
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    assert message in output and "Traceback" not in output
    assert not (tmp_path / "default").exists()  # refused at its start: the folder it began is removed


HEAVY_MODULES = [
    "torch",
    "pytorch_lightning",
    "lightning_fabric",
    "sentence_transformers",
    "transformers",
    "optuna",
]
HELP_EXAMPLES = {
    "train.py": [
        "python train.py  ",
        "loss=cosent dataset_type=score",
        "-m modifier=matryoshka,adaptive_layer",
        "-m hparams_search=mnrl_matryoshka",
        "data.train_path=",
        "trainer=ddp",
        "--cfg job",
    ],
    "evaluate.py": [
        "python evaluate.py  ",
        "model=local model.name_or_path=",
        "-m model=tiny,minilm",
        "--cfg job",
    ],
}


def _command(script: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, str(PROJECT_ROOT / script), *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.parametrize("script", ["train.py", "evaluate.py"])
@pytest.mark.slow
def test_help_describes_the_program_with_examples_and_every_option(script):
    result = _command(script, "--help", "loss=cosent", "dataset_type=score")
    assert result.returncode == 0, result.stderr[-3000:]
    text = result.stdout
    assert text.startswith(f"{script}: ") and f"Usage: python {script} " in text and "Examples:" in text
    for example in HELP_EXAMPLES[script]:
        assert example in text
    lines = text.splitlines()
    for group, options in config_groups().items():
        assert group in lines
        for option in options:
            assert any(re.match(rf"  [ *] {option.stem} +\S", line) for line in lines), (group, option)
    assert "_common" not in text and "powered by Hydra" not in text
    assert "lora: null" not in text  # the config itself is --cfg job's
    assert {line.split()[1] for line in lines if line.startswith("  * ")} >= {"cosent", "score", "minilm"}


def test_every_option_describes_itself_in_its_first_comment():
    undescribed = [
        f"{group}/{path.name}"
        for group, options in config_groups().items()
        for path in options
        if not option_description(path)
    ]
    assert not undescribed, f"add a first comment line (train.py --help shows it) to conf/{undescribed}"


def test_option_description_is_the_first_sentence_of_the_header(tmp_path):
    option = tmp_path / "x.yaml"
    option.write_text(
        "# @package _global_\n# Pairs, e.g. (q, p); scored\n# as retrieval. Then more.\nkey: 1  # no\n"
    )
    assert option_description(option) == "Pairs, e.g. (q, p); scored as retrieval."
    option.write_text("key: 1\n# a later comment\n")
    assert option_description(option) == ""


@pytest.mark.parametrize(
    ("entry", "args", "expected"),
    [
        ("train_main", ["--cfg", "job"], "matryoshka_dims:"),
        ("train_main", ["--help"], "Examples:"),
        ("train_main", ["--info"], "Defaults List"),
        ("evaluate_main", ["--cfg", "hydra", "--package", "hydra.job.name"], "evaluate"),
    ],
)
@pytest.mark.slow
def test_commands_that_run_no_job_import_no_training_library(entry, args, expected):
    program = (
        "import json, sys\n"
        f"sys.argv = ['prog', *{args!r}]\n"
        f"from embedding_trainer.cli import {entry}\n"
        "try:\n"
        f"    {entry}()\n"
        "except SystemExit as end:\n"
        "    assert not end.code, end.code\n"
        f"print(json.dumps([name for name in {HEAVY_MODULES!r} if name in sys.modules]))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", program], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert expected in result.stdout
    assert json.loads(result.stdout.splitlines()[-1]) == []
