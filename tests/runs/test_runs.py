"""The run registry: real SQLite in a temp folder, written by real runs, read by the CLI."""

import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import contextmanager

import pytest

from conftest import FAST
from embedding_trainer.runs.__main__ import main as runs_cli
from embedding_trainer.runs.lifecycle import RunPlace, tracked_run
from embedding_trainer.runs.registry import RunRegistry
from embedding_trainer.runs.tracking import RunTracker, config_text
from embedding_trainer.settings.resolvers import PROJECT_ROOT
from embedding_trainer.train import train
from embedding_trainer.utils.errors import ConfigError


@pytest.mark.slow
def test_a_successful_run_is_recorded_with_metrics_and_model(make_cfg, tmp_path):
    cfg = make_cfg(*FAST, "registry.progress_every_n_steps=1")
    _, objects = train(cfg)
    run = RunRegistry(cfg.registry.path).get(objects["run_id"])
    assert run["status"] == "success" and run["task"] == "default"
    assert run["step"] == 1 and run["total_steps"] == 1 and run["percent"] == 100.0
    assert run["model_path"].endswith("model") and run["output_dir"] == cfg.paths.output_dir
    assert run["metrics"]["primary_metric"] == "ndcg@10"
    assert set(run["metrics"]["finetuned"]) == {"32", "16", "8"}
    assert "MultipleNegativesRankingLoss" in run["config"]
    assert run["ended_at"] >= run["started_at"] and run["error_type"] is None


def test_a_failing_run_is_recorded_as_failed_and_still_raises(make_cfg):
    cfg = make_cfg(*FAST, "dataset_type=score", "loss=mnrl")
    with pytest.raises(ConfigError):
        train(cfg)
    (run,) = RunRegistry(cfg.registry.path).list()
    assert run["status"] == "failed" and run["error_type"] == "ConfigError"
    assert "cannot train on dataset_type=score" in run["error_message"]


def test_only_rank_zero_writes(monkeypatch, tmp_path):
    from pytorch_lightning.utilities import rank_zero_only

    monkeypatch.setattr(rank_zero_only, "rank", 1)
    tracker = RunTracker(str(tmp_path / "runs.db"), "task", tmp_path)
    tracker.start("name: task\n", str(tmp_path))
    assert tracker.registry is None and not (tmp_path / "runs.db").exists()


def _hammer(path: str, worker: int) -> None:
    registry = RunRegistry(path, timeout_s=60)
    run_id = f"run-{worker}"
    registry.start(run_id, f"task{worker % 2}", [f"seed={worker}"], "cfg: 1", "/tmp")
    for step in range(1, 41):
        registry.progress(run_id, step, 40)
    registry.finish(run_id, "success", {"finetuned": {"8": {"accuracy": worker / 10}}}, "/tmp/model")


@pytest.mark.slow
def test_a_run_is_kept_at_the_place_its_config_names(make_cfg):
    cfg = make_cfg(*FAST, "overwrite=true")
    place = RunPlace.from_config(cfg)
    assert place == RunPlace(cfg.paths.output_dir, cfg.registry.path, True, config_text(cfg))
    results = {"score": 1.0}
    _, objects = tracked_run(place, "task", lambda tracker: ({}, {"results": results, "model_path": None}))
    run = RunRegistry(place.registry_path).get(objects["run_id"])
    assert run["status"] == "success" and run["task"] == "task" and run["output_dir"] == place.output_dir
    assert run["config"] == place.config and "MultipleNegativesRankingLoss" in run["config"]


@pytest.mark.slow  # starts processes
def test_several_processes_write_at_once(tmp_path):
    path = str(tmp_path / "runs.db")
    RunRegistry(path)
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_hammer, args=(path, worker)) for worker in range(6)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(120)
    assert [process.exitcode for process in workers] == [0] * 6
    runs = RunRegistry(path).list()
    assert sorted(run["run_id"] for run in runs) == [f"run-{w}" for w in range(6)]
    assert all(run["status"] == "success" and run["step"] == 40 and run["percent"] == 100.0 for run in runs)
    assert len(RunRegistry(path).list(task="task0")) == 3


def test_statuses_are_constrained(tmp_path):
    registry = RunRegistry(tmp_path / "runs.db")
    registry.start("r", "t", [], "", "/tmp")
    with pytest.raises(sqlite3.IntegrityError):
        registry.finish("r", "finished-ish")
    registry.finish("r", "pruned")
    assert registry.get("r")["status"] == "pruned"


@pytest.mark.slow
def test_cli_lists_shows_and_compares(make_cfg, tmp_path, capsys):
    first = make_cfg(*FAST, "name=alpha", output_dir=tmp_path / "a")
    second = make_cfg(*FAST, "name=beta", "modifier=none", output_dir=tmp_path / "b")
    _, run_a = train(first)
    _, run_b = train(second)
    with pytest.raises(ConfigError):
        train(make_cfg(*FAST, "name=gamma", "modifier.matryoshka_dims=[8,16]", output_dir=tmp_path / "c"))
    db = first.registry.path

    assert runs_cli(["--db", db, "list"]) == 0
    listing = capsys.readouterr().out
    assert run_a["run_id"] in listing and run_b["run_id"] in listing and "gamma" in listing
    assert runs_cli(["--db", db, "list", "--status", "failed"]) == 0
    failed = capsys.readouterr().out
    assert "gamma" in failed and "ConfigError" in failed and run_a["run_id"] not in failed
    assert runs_cli(["--db", db, "list", "--task", "beta", "--since", "1h"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[2:]] == [run_b["run_id"]]
    assert runs_cli(["--db", db, "list", "--since", "2999-01-01"]) == 0
    assert capsys.readouterr().out.strip() == "no runs"

    assert runs_cli(["--db", db, "show", run_a["run_id"]]) == 0
    shown = capsys.readouterr().out
    assert shown.startswith("ndcg@10 by dimension") and "success" in shown and "config:" not in shown
    assert runs_cli(["--db", db, "show", run_a["run_id"], "--config"]) == 0
    assert "config:\n" in capsys.readouterr().out

    assert runs_cli(["--db", db, "compare", run_a["run_id"], run_b["run_id"]]) == 0
    compared = capsys.readouterr().out.splitlines()
    assert run_a["run_id"] in compared[0] and run_b["run_id"] in compared[0]
    ndcg_32 = next(line for line in compared if line.startswith("32") and "ndcg@10" in line)
    assert ndcg_32.count("->") == 2

    assert runs_cli(["--db", db, "show", "no-such-run"]) == 2
    assert "No run 'no-such-run'" in capsys.readouterr().err


@pytest.mark.slow
def test_ctrl_c_leaves_failed_not_running(tmp_path):
    db = tmp_path / "runs.db"
    # PYTHONFAULTHANDLER: a run that does not stop prints every thread's stack on SIGABRT (below).
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "PYTHONFAULTHANDLER": "1"}
    command = [
        sys.executable,
        str(PROJECT_ROOT / "train.py"),
        "model=tiny",
        "logger=none",
        "callbacks=none",
        "evaluation.show_progress_bar=false",
        "evaluation.baseline=false",
        "data.max_eval_samples=8",
        "data.max_samples=64",
        "data.batch_size=8",
        "trainer.max_epochs=1000",
        "registry.progress_every_n_steps=1",
        f"paths.log_dir={tmp_path}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        f"registry.path={db}",
    ]
    # As from a shell: the run starts with Ctrl-C at its default, whatever an earlier test left this
    # process doing with SIGINT (an ignored SIGINT is inherited, and Python then never raises
    # KeyboardInterrupt; a handler is reset to the default by exec).
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        process = subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
    finally:
        signal.signal(signal.SIGINT, inherited)
    deadline = time.time() + 240
    while time.time() < deadline:
        runs = RunRegistry(db).list() if db.exists() else []
        if runs and runs[0]["step"] >= 3:
            break
        time.sleep(0.5)
    assert runs and runs[0]["status"] == "running", "the run never got going"
    process.send_signal(signal.SIGINT)
    try:
        _, stderr = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:  # seen once in a full CI run: say where it was stuck
        process.send_signal(signal.SIGABRT)
        _, stderr = process.communicate(timeout=60)
        stack = stderr[stderr.rfind("Fatal Python error") :]
        pytest.fail(
            f"the run did not stop within 120 s of Ctrl-C (SIGINT in the test process: {inherited}); "
            f"its threads then:\n{stack[:8000]}"
        )
    assert process.returncode != 0
    (run,) = RunRegistry(db).list()
    assert run["status"] == "failed", stderr[-2000:]
    assert run["error_type"] == "KeyboardInterrupt" and run["error_message"] == "interrupted"


def test_an_interrupt_after_a_write_committed_stays_an_interrupt(tmp_path):
    """Ctrl-C landing just after a registry write's COMMIT: the interrupt is raised, not a failed rollback."""

    class InterruptAfterCommit(RunRegistry):
        @contextmanager
        def _connect(self):
            with super()._connect() as connection:
                yield _InterruptingConnection(connection)

    RunRegistry(tmp_path / "runs.db").start("run-1", "task", [], "{}", str(tmp_path))
    with pytest.raises(KeyboardInterrupt):
        InterruptAfterCommit(tmp_path / "runs.db").progress("run-1", 3, 10)
    assert RunRegistry(tmp_path / "runs.db").get("run-1")["step"] == 3  # the write itself was kept


class _InterruptingConnection:
    """A connection that raises KeyboardInterrupt right after executing a COMMIT."""

    def __init__(self, connection) -> None:
        self.connection = connection

    def __getattr__(self, name):
        return getattr(self.connection, name)

    def execute(self, sql, *args):
        cursor = self.connection.execute(sql, *args)
        if sql == "COMMIT":
            raise KeyboardInterrupt
        return cursor


# The run registry from a shell: one single run and one multi-run whose first job is refused (cosent
# needs score data, the default data is pairs) and whose second trains, then `python -m
# embedding_trainer.runs` in the folder they were started from.
TRAIN = [sys.executable, str(PROJECT_ROOT / "train.py")]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}


@pytest.fixture(scope="module")
def shell_runs(tmp_path_factory, model_cache) -> dict:
    """The folder the commands ran in (`cwd`), the single run's folder (`single`), the multi-run's
    folder (`multirun`) and its outputs' registry (`registry`)."""
    cwd = tmp_path_factory.mktemp("shell")
    for extra in ([], ["-m", "loss=cosent,mnrl"]):  # -m first: Hydra's flags precede the overrides
        command = [
            *TRAIN,
            *extra,
            *FAST,
            f"paths.log_dir={cwd / 'outputs'}",
            f"paths.cache_dir={model_cache}",
        ]
        result = subprocess.run(
            command, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=600, check=False
        )
        assert result.returncode == (1 if extra else 0), result.stderr[-3000:]  # -m: one job failed
    (single,) = (cwd / "outputs" / "default" / "runs").iterdir()
    (multirun,) = (cwd / "outputs" / "default" / "multiruns").iterdir()
    (member,) = [path for path in multirun.iterdir() if path.is_dir()]  # the refused job's folder is gone
    return {
        "cwd": cwd,
        "single": single,
        "multirun": multirun,
        "member": member,
        "registry": RunRegistry(cwd / "outputs" / "runs.db"),
    }


def _runs(shell_runs: dict, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "embedding_trainer.runs", "--db", "outputs/runs.db", *args]
    return subprocess.run(
        command, cwd=shell_runs["cwd"], env=ENV, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.slow
def test_a_run_folder_is_named_by_its_registry_id(shell_runs):
    single, multirun, registry = shell_runs["single"], shell_runs["multirun"], shell_runs["registry"]
    row = registry.get(single.name)
    assert row["status"] == "success" and row["output_dir"] == str(single)
    # Members: `<multi-run folder>_<job number>`; the refused job 0 left no folder, its row says why.
    member = shell_runs["member"]
    assert member.name.startswith("1_") and "loss=mnrl" in member.name
    trained, refused = registry.get(f"{multirun.name}_1"), registry.get(f"{multirun.name}_0")
    assert trained["status"] == "success" and trained["output_dir"] == str(member)
    assert refused["status"] == "failed" and refused["error_type"] == "ConfigError"
    assert refused["output_dir"] is None and "loss=cosent" in refused["overrides"]


@pytest.mark.slow
def test_list_shows_each_run_folder_relative_to_where_it_is_typed(shell_runs):
    result = _runs(shell_runs, "list")
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines()[2:]}
    single, multirun, member = shell_runs["single"], shell_runs["multirun"], shell_runs["member"]
    assert lines[single.name].endswith(f"  outputs/default/runs/{single.name}")
    assert lines[f"{multirun.name}_1"].endswith(f"  outputs/default/multiruns/{multirun.name}/{member.name}")
    assert lines[f"{multirun.name}_0"].split()[-2:] == ["ConfigError", "-"]  # refused: no folder


@pytest.mark.slow
def test_show_finds_a_run_by_id_start_or_folder_and_leads_with_its_results(shell_runs):
    single = shell_runs["single"]
    relative = str(single.relative_to(shell_runs["cwd"]))
    shown = {
        reference: _runs(shell_runs, "show", reference)
        for reference in (single.name, single.name[:-2], relative + "/", str(single))
    }
    assert {result.returncode for result in shown.values()} == {0}
    assert len({result.stdout for result in shown.values()}) == 1
    lines = shown[single.name].stdout.splitlines()
    assert lines[0] == "ndcg@10 by dimension (retrieval, step 1)"
    assert lines[1].split() == ["dimension", "baseline", "fine-tuned", "change", "95%", "interval"]
    assert [line.split()[0] for line in lines[3:6]] == ["32", "16", "8"]
    assert f"folder     {relative}" in lines and "status     success" in lines
    assert "config:" not in shown[single.name].stdout
    assert "\nconfig:\n" in _runs(shell_runs, "show", single.name, "--config").stdout


@pytest.mark.slow
def test_show_says_in_one_line_when_a_run_is_ambiguous_or_unknown(shell_runs):
    multirun = shell_runs["multirun"].name
    ambiguous = _runs(shell_runs, "show", multirun)  # the start of both of its members' ids
    assert ambiguous.returncode == 2 and ambiguous.stdout == ""
    assert ambiguous.stderr.count("\n") == 1 and f"{multirun}_0" in ambiguous.stderr
    assert f"{multirun}_1 (" in ambiguous.stderr and "matches 2 runs" in ambiguous.stderr
    unknown = _runs(shell_runs, "show", "1999-01-01")
    assert unknown.returncode == 2 and unknown.stderr.count("\n") == 1
    assert unknown.stderr.startswith("No run '1999-01-01' in ")
