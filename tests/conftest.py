"""Shared fixtures: compose the real conf/ tree with Hydra's compose API, offline, in temp folders."""

import copy
import csv
import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["WANDB_MODE"] = "offline"
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from embedding_trainer.runs.registry import RunRegistry
from embedding_trainer.settings.resolvers import CONFIG_DIR, register_resolvers

register_resolvers()

# A fast job on the tiny offline model: one batch of training, evaluation on a few rows.
FAST = ["model=tiny", "debug=fdr", "logger=none", "evaluation.show_progress_bar=false"]
# One training step on the STS score data (the cheapest evaluation), no checkpoints.
SCORE_STEP = [*FAST, "dataset_type=score", "loss=cosent", "callbacks=none"]
# The job preemption tests stop and resume: 6 batches per epoch, 2 epochs; dropout on; the default
# (generator-driven) shuffled batch sampler; progress in the registry at every step.
PREEMPTION_JOB = [
    "model=tiny",
    "dataset_type=score",
    "loss=cosent",
    "logger=none",
    "evaluation.show_progress_bar=false",
    "data.max_samples=48",
    "data.batch_size=8",
    "data.max_eval_samples=60",
    "trainer.max_epochs=2",
    "callbacks.progress_bar.refresh_rate=0",
    "registry.progress_every_n_steps=1",
]


def _slurm_cluster_answers() -> bool:
    """Whether a SLURM cluster answers here with a node that can run jobs."""
    if shutil.which("sinfo") is None:
        return False
    result = subprocess.run(
        ["sinfo", "--noheader", "--format=%T"], capture_output=True, text=True, timeout=30, check=False
    )
    return result.returncode == 0 and any(state in result.stdout for state in ("idle", "mixed", "allocated"))


# The marks of a test file that needs the real SLURM cluster: `pytestmark = NEEDS_SLURM_CLUSTER`.
NEEDS_SLURM_CLUSTER = [
    pytest.mark.slurm,
    pytest.mark.slow,
    pytest.mark.skipif(
        not _slurm_cluster_answers(), reason="no SLURM cluster answers (scripts/slurm/local_cluster.sh up)"
    ),
]


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    """One folder for the tiny model, built once per test session."""
    return tmp_path_factory.mktemp("model_cache")


# The forgetting guard and the embedding-health probe cost seconds per run even on the tiny model, the
# pair data's 100-step minimum would train a 64-row test set for dozens of epochs, and the shipped data's
# held-out validation adds an evaluation to every one: off in composed configs unless a test names them
# (tests/evaluation/test_forgetting_and_health.py, tests/training/test_min_steps.py, tests/data/test_validation_split.py do).
GUARDS_OFF = {
    # the guard and its max drop, under their names and the deprecated ones (str.startswith takes a tuple)
    ("evaluation.forgetting", "evaluation.general"): "evaluation.forgetting_guard=null",
    "evaluation.health": "evaluation.health=null",
    "data.min_steps": "data.min_steps=null",
    "data.validation_size": "data.validation_size=null",
}


# Composing the real conf/ tree costs ~0.3 s; a test session composes the same overrides many times.
# Composed once per (config name, overrides) with placeholder paths, each test gets a deep copy with its
# own folders filled in (a placeholder a test's own override replaced is left as the test set it).
_COMPOSED: dict[tuple[str, tuple[str, ...]], DictConfig] = {}
_PLACEHOLDER = "@per-test@"


def _composed(config_name: str, overrides: tuple[str, ...]) -> DictConfig:
    key = (config_name, overrides)
    if key not in _COMPOSED:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(
                config_name=config_name,
                overrides=[
                    *(
                        f"paths.{name}={_PLACEHOLDER}{name}"
                        for name in ("output_dir", "log_dir", "cache_dir")
                    ),
                    *(
                        off
                        for key, off in GUARDS_OFF.items()
                        if not any(o.startswith(key) for o in overrides)
                    ),
                    *overrides,
                ],
            )
        with open_dict(cfg):
            cfg.pop("hydra", None)
        _COMPOSED[key] = cfg
    return copy.deepcopy(_COMPOSED[key])


@pytest.fixture
def make_cfg(tmp_path, model_cache):
    """compose(overrides) -> the real training config (config_name="evaluate": the evaluation
    config), writing into this test's temp folder."""

    def _compose(*overrides: str, output_dir: Path | None = None, config_name: str = "train") -> DictConfig:
        cfg = _composed(config_name, overrides)
        folders = {
            "output_dir": output_dir or tmp_path / "run",
            "log_dir": tmp_path / "outputs",
            "cache_dir": model_cache,
        }
        for name, folder in folders.items():
            if cfg.paths._get_node(name)._value() == f"{_PLACEHOLDER}{name}":
                cfg.paths[name] = str(folder)
        return cfg

    return _compose


def assert_same_metrics(found: dict, expected: dict) -> None:
    """Two evaluations' per-dimension metrics agree: the same dimensions and names, values to 1e-6."""
    assert found.keys() == expected.keys()
    for dim, values in expected.items():
        assert found[dim].keys() == values.keys()
        for name, value in values.items():
            assert found[dim][name] == pytest.approx(value, abs=1e-6), (dim, name)


@pytest.fixture
def no_model_loading(monkeypatch):
    """Fail the test if anything tries to build or load a model."""
    from embedding_trainer.models import loading as models

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the input was checked")

    monkeypatch.setattr(models, "build_tiny_model", refuse)
    monkeypatch.setattr(models, "load_pretrained", refuse)
    monkeypatch.setattr(models, "from_transformer", refuse)


def logged_rows(run_dir: Path) -> list[dict[str, str]]:
    """The rows of a run's CSV log (`logger=csv`: <run_dir>/csv/metrics.csv), each {column: value, "" when unset}."""
    with (run_dir / "csv" / "metrics.csv").open() as handle:
        return list(csv.DictReader(handle))


def files_of(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (relative path -> bytes): compare before and after to show nothing changed."""
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def assert_refused_before_the_model(cfg, earlier_run: Path, error_type: type, fragments: list[str]) -> None:
    """`train(cfg)` raises `error_type` whose message holds every fragment, leaving `earlier_run` as it was
    and no output folder (with the `no_model_loading` fixture: before any model loads)."""
    from embedding_trainer.train import train

    before = files_of(earlier_run)
    with pytest.raises(error_type) as caught:
        train(cfg)
    for fragment in fragments:
        assert fragment in str(caught.value), f"{fragment!r} not in: {caught.value}"
    assert files_of(earlier_run) == before
    assert not Path(cfg.paths.output_dir).exists()


@pytest.fixture
def earlier_run(tmp_path) -> Path:
    """The folder of an earlier, finished run (results, model, report, run id) in this test's outputs,
    which no later run, failing or not, may change."""
    folder = tmp_path / "outputs" / "default" / "runs" / "earlier"
    (folder / "model").mkdir(parents=True)
    (folder / "results.json").write_text('{"kept": true}')
    (folder / "report.md").write_text("# earlier run\n")
    (folder / "model" / "config.json").write_text("{}")
    (folder / ".run_id").write_text("default-earlier\n")
    return folder


def wait_for_registry_row(
    process: subprocess.Popen, registry_path: Path, wanted: Callable[[dict], bool], what: str, timeout: float
) -> dict:
    """Block until a row of the run registry at `registry_path` satisfies `wanted` (described as
    `what` in the failure), while `process` (with its output in `process.log`) still runs; that row."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the run ended before {what}:\n{process.log.read_text()[-3000:]}"
        rows = RunRegistry(registry_path).list() if registry_path.exists() else []
        for row in rows:
            if wanted(row):
                return row
        time.sleep(0.1)
    pytest.fail(f"no {what} within {timeout:.0f} s")
