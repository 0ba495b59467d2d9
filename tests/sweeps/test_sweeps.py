"""Optuna sweeps through `python train.py -m hparams_search=...`: real subprocesses, real Optuna storage
(SQLite and journal file), the tiny model on the STS score data (cheap evaluation)."""

import json
import os
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import optuna
import pytest
import yaml
from hydra import compose, initialize_config_dir
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from conftest import SCORE_STEP
from embedding_trainer.runs.registry import RunRegistry
from embedding_trainer.settings.checks import validate_config
from embedding_trainer.settings.resolvers import CONFIG_DIR, PROJECT_ROOT
from embedding_trainer.sweeps.search_space import parse_search_space
from embedding_trainer.sweeps.storage import open_storage

# One training batch, no baseline: each trial takes a few seconds.
JOB = [*SCORE_STEP, "evaluation.baseline=false", "model.lr=0.001"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}


def sweep_command(tmp_path, model_cache, *overrides: str) -> list[str]:
    return [
        sys.executable,
        str(PROJECT_ROOT / "train.py"),
        "-m",
        "hparams_search=lr",
        *JOB,
        f"paths.log_dir={tmp_path / 'outputs'}",
        f"paths.cache_dir={model_cache}",
        *overrides,
    ]


def run_sweep(command: list[str], tmp_path) -> subprocess.CompletedProcess:
    result = subprocess.run(
        command, check=False, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def trial_states(database: Path) -> list[TrialState]:
    """States of the trials in an Optuna SQLite file, read-only ([] before the sweep has created them)."""
    try:
        with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as connection:
            return [TrialState[state] for (state,) in connection.execute("SELECT state FROM trials")]
    except sqlite3.OperationalError:  # no file or no table yet
        return []


def test_search_space_maps_override_grammar_to_optuna_distributions():
    space = parse_search_space(
        {
            "modifier.matryoshka_dims": "choice([384,256,128,64],[384,128])",
            "model.lr": "tag(log, interval(1e-5, 1e-4))",
            "data.batch_size": "range(16,65,16)",
            "trainer.max_steps": "int(interval(10, 100))",
            "seed": "7",
        },
        ["loss=mnrl,gist", "data.batch_size=32"],  # the command line wins over the config's params
    )
    assert space.distributions == {
        "modifier.matryoshka_dims": CategoricalDistribution(["[384,256,128,64]", "[384,128]"]),
        "model.lr": FloatDistribution(1e-5, 1e-4, log=True),
        "trainer.max_steps": IntDistribution(10, 100),
        "loss": CategoricalDistribution(["mnrl", "gist"]),
    }
    assert space.fixed == ["data.batch_size=32", "seed=7"]
    params = {
        "modifier.matryoshka_dims": "[384,128]",
        "model.lr": 2.5e-05,
        "trainer.max_steps": 12,
        "loss": "gist",
    }
    assert space.overrides(params) == [
        "data.batch_size=32",
        "seed=7",
        "modifier.matryoshka_dims=[384,128]",
        "model.lr=2.5e-05",
        "trainer.max_steps=12",
        "loss=gist",
    ]
    assert parse_search_space({"data.batch_size": "range(16,65,16)"}, []).distributions == {
        "data.batch_size": IntDistribution(16, 64, step=16)
    }


def test_a_trial_killed_before_its_parameters_were_drawn_gets_them_when_lost():
    """A sweep killed inside `study.ask` leaves a RUNNING trial with none or some of its parameters:
    the worker that finds it lost draws the missing ones (a drawn one keeps its value) before failing it
    and enqueuing it again (`fail_lost_trials`)."""
    space = parse_search_space(
        {}, ["loss=cosent,angle", "model.lr=interval(1e-5,1e-4)", "data.batch_size=range(8,33,8)"]
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    bare, partial = study.ask(), study.ask()
    partial.suggest_categorical("loss", ["cosent", "angle"])
    drawn_loss = partial.params["loss"]
    for trial in (bare, partial):
        space.draw_missing(trial)
        assert set(trial.params) == set(space.distributions)
        assert trial.params["loss"] in ("cosent", "angle") and 1e-5 <= trial.params["model.lr"] <= 1e-4
        assert trial.params["data.batch_size"] in (8, 16, 24, 32)
    assert partial.params["loss"] == drawn_loss


def test_every_combination_of_the_shipped_search_passes_validation(make_cfg):
    """mnrl_matryoshka's choices (dims x loss) all fit the default model and pair data."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        sweeper = compose(
            "train", overrides=["hparams_search=mnrl_matryoshka"], return_hydra_config=True
        ).hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "maximize"
    space = parse_search_space(sweeper.params, [])
    choices = {
        key: d.choices for key, d in space.distributions.items() if isinstance(d, CategoricalDistribution)
    }
    assert set(choices) == {"modifier.matryoshka_dims", "loss"}
    for loss in choices["loss"]:
        cfg = make_cfg(f"loss={loss}")
        for dims in choices["modifier.matryoshka_dims"]:
            cfg.modifier.matryoshka_dims = yaml.safe_load(dims)
            validate_config(cfg)


@pytest.mark.slow
def test_interrupted_study_resumes_to_n_trials_with_a_failed_trial(tmp_path, model_cache):
    """Three trials, one loss each (brute force): mnrl cannot train on score data, so its trial fails
    with the ConfigError while the study goes on. The sweep is killed during its second trial; the same
    command then finds that trial's worker gone, fails it and runs it again once (a new trial with its
    parameters, in its own folder), and ends with exactly three trials besides the lost one."""
    command = sweep_command(
        tmp_path,
        model_cache,
        "loss=choice(cosent,angle,mnrl)",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.sampler=null",
        "hydra.sweeper.sampler={_target_:optuna.samplers.BruteForceSampler,seed:0}",
    )
    database = tmp_path / "outputs" / "optuna" / "default-lr.db"
    storage_url = f"sqlite:///{database}"
    first = subprocess.Popen(
        command, cwd=tmp_path, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 300
    try:
        while not (
            any(state.is_finished() for state in trial_states(database))
            and TrialState.RUNNING in trial_states(database)
        ):
            assert first.poll() is None, "the sweep ended before it could be interrupted"
            assert time.monotonic() < deadline, "no trial finished in time"
            time.sleep(0.2)
    finally:
        first.kill()
        first.wait()
    interrupted = optuna.load_study(study_name="default-lr", storage=storage_url)
    running = [t.number for t in interrupted.trials if t.state == TrialState.RUNNING]
    assert len(running) == 1 and len(interrupted.trials) == 2

    run_sweep(command, tmp_path)

    study = optuna.load_study(study_name="default-lr", storage=storage_url)
    lost = study.trials[running[0]]
    assert lost.state == TrialState.FAIL and lost.user_attrs["error"].startswith("worker lost")
    (retry,) = [trial for trial in study.trials if trial.system_attrs.get("failed_trial") == lost.number]
    assert retry.params == lost.params and retry.state.is_finished()
    counted = [trial for trial in study.trials if trial.number != lost.number]
    assert len(study.trials) == 4 and len(counted) == 3
    by_loss = {trial.params["loss"]: trial for trial in counted}
    assert sorted(by_loss) == ["angle", "cosent", "mnrl"]
    assert by_loss["mnrl"].state == TrialState.FAIL
    assert (
        by_loss["mnrl"]
        .user_attrs["error"]
        .startswith("ConfigError: loss MultipleNegativesRankingLoss cannot train")
    )
    assert by_loss["cosent"].state == by_loss["angle"].state == TrialState.COMPLETE
    folders = [Path(trial.user_attrs["output_dir"]) for trial in counted]
    assert [folder.name.split("_")[0] for folder in folders] == [str(trial.number) for trial in counted]
    assert len(set(folders)) == 3
    best = study.best_trial
    assert os.path.isdir(best.user_attrs["model_path"])
    best_dir = Path(best.user_attrs["output_dir"])
    results = json.loads((best_dir / "results.json").read_text())
    # The objective is the run's val/score at its chosen step: on the held-out validation queries (the
    # default data.validation_size), not on the eval data that scores results.json's table.
    assert "data.validation_size" in results["selection"]["selected_on"]
    assert not results["selection"]["same_data"]
    assert f"Step {results['step']}: val/score {best.value:.4f} " in (best_dir / "train.log").read_text()
    report = (tmp_path / "outputs" / "default" / "sweeps" / "default-lr" / "sweep.md").read_text()
    assert f"Best trial #{best.number}" in report and best.user_attrs["model_path"] in report


@pytest.mark.slow
def test_pruned_trial_on_journal_storage(tmp_path, model_cache):
    """A pruner that prunes at any report (val/score below 1.1), and evaluation after every step: the
    3-step trial stops after its first step and is pruned, in Optuna and in the registry; the 1-step
    trial's only report is its last step, so it completes. The study lives in a journal file."""
    journal = tmp_path / "study.log"
    run_sweep(
        sweep_command(
            tmp_path,
            model_cache,
            "hydra.sweeper.n_trials=2",
            f"hydra.sweeper.storage=journal:{journal}",
            "hydra.sweeper.pruner=null",
            "hydra.sweeper.pruner={_target_:optuna.pruners.ThresholdPruner,lower:1.1}",
            "hydra.sweeper.sampler=null",
            "hydra.sweeper.sampler={_target_:optuna.samplers.BruteForceSampler,seed:0}",
            "trainer.fast_dev_run=false",
            "trainer.max_steps=choice(1,3)",
            "evaluation.every_n_steps=1",
            "registry.progress_every_n_steps=1",
        ),
        tmp_path,
    )
    study = optuna.load_study(study_name="default-lr", storage=open_storage(f"journal:{journal}"))
    by_steps = {trial.params["trainer.max_steps"]: trial for trial in study.trials}
    assert by_steps[3].state == TrialState.PRUNED and "pruned at step 1" in by_steps[3].user_attrs["pruned"]
    assert list(by_steps[3].intermediate_values) == [1]
    assert (
        by_steps[1].state == TrialState.COMPLETE and by_steps[1].value == by_steps[1].intermediate_values[1]
    )
    rows = {row["total_steps"]: row for row in RunRegistry(tmp_path / "outputs" / "runs.db").list()}
    assert rows[3]["status"] == "pruned" and rows[3]["step"] == 1
    assert rows[1]["status"] == "success"


@pytest.mark.slow
def test_a_sweep_encodes_its_baseline_once(tmp_path):
    """Every trial starts from the same model on the same data: the first trial's baseline fills the
    embedding cache, the others read it (and say so in the log)."""
    result = run_sweep(
        sweep_command(
            tmp_path,
            tmp_path / "cache",  # this test's own cache: the tiny model and the embeddings, filled by trial 0
            "hydra.sweeper.n_trials=3",
            "evaluation.baseline=true",
        ),
        tmp_path,
    )
    log = result.stdout + result.stderr
    encoded = log.count("not in the cache yet")
    assert encoded >= 1 and log.count("read from the cache") == 2 * encoded
    trial_logs = sorted((tmp_path / "outputs").rglob("train.log"))
    assert len(trial_logs) == 3
    first, *others = (path.read_text() for path in trial_logs)
    assert "not in the cache yet" in first and all(
        "read from the cache" in text and "not in the cache yet" not in text for text in others
    )
