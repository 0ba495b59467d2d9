"""Where a run came from, so that it can be reproduced from its folder: the project's git commit and
uncommitted changes, the library versions, the machine and its devices, and fingerprints of the base
model and of the training and evaluation data. `record_provenance` writes them to `provenance.json`
(and a dirty tree's diff to `provenance/git.diff`) in the run folder."""

import importlib.metadata
import json
import os
import platform
import socket
import subprocess
from pathlib import Path

import datasets
import pytorch_lightning as pl
import torch
from sentence_transformers import SentenceTransformer

from embedding_trainer.data import EmbeddingDataModule
from embedding_trainer.data.objectives import ObjectivesDataModule
from embedding_trainer.settings.reporting import RunDescription
from embedding_trainer.settings.resolvers import PROJECT_ROOT
from embedding_trainer.utils.fingerprints import (
    file_fingerprint,
    model_fingerprint,
    rows_fingerprint,
    texts_fingerprint,
)

DISTRIBUTIONS = (
    "embedding-trainer",
    "torch",
    "transformers",
    "sentence-transformers",
    "pytorch-lightning",
    "hydra-core",
    "omegaconf",
    "datasets",
    "optuna",
    "tokenizers",
    "numpy",
)
PROVENANCE_FILE = "provenance.json"
DIFF_FILE = "provenance/git.diff"
GIT_TIMEOUT_S = 60


def record_provenance(
    output_dir: Path,
    run: RunDescription,
    model: SentenceTransformer,
    datamodule: EmbeddingDataModule,
    trainer: pl.Trainer,
    root: Path | None = None,
) -> dict:
    """The provenance of `run` about to train `model` (the base model, as loaded) on the data
    `datamodule` loaded, written to `output_dir/provenance.json` and returned (JSON-able):
    `git` (`git_state` of `root`, default: the project's folder), `versions`, `devices`,
    `base_model` (hub id, the folder or id it loaded from or the factory that built it, and a
    fingerprint of its weights) and `data` (`run_data_fingerprints`)."""
    provenance = {
        "git": git_state(root or PROJECT_ROOT, output_dir),
        "versions": package_versions(),
        "devices": device_info(trainer),
        "base_model": {
            "hub_id": run.base_model.hub_id,
            "source": run.base_model.source,  # or its factory
            "fingerprint": model_fingerprint(model),
        },
        "data": run_data_fingerprints(run, datamodule),
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
    return provenance


def git_state(root: Path, output_dir: Path) -> dict:
    """The git checkout whose top folder is `root`: `commit`, `branch` (None when detached), `dirty`
    (tracked files changed, staged or not, or untracked files present), `modified` and `untracked`
    (their paths), and `diff`: when tracked files changed, `git diff HEAD --binary` (apply it to the
    commit with `git apply`) is written to `output_dir/provenance/git.diff` and this is that path
    relative to `output_dir`, else None (and no such file is left). Untracked files are listed, not
    saved.

    When `root` is not the top of a git checkout with a commit (an installed wheel, git missing):
    {"commit": None, "reason": why}."""
    diff_file = output_dir / DIFF_FILE
    diff_file.unlink(missing_ok=True)  # a resumed run's earlier diff is not this tree's
    try:
        top = _git(root, "rev-parse", "--show-toplevel").decode().strip()
        if Path(top).resolve() != root.resolve():
            return {
                "commit": None,
                "reason": f"{root} is not a git checkout: it lies inside the checkout {top}",
            }
        commit = _git(root, "rev-parse", "--verify", "HEAD").decode().strip()
        branch = _git(root, "branch", "--show-current").decode().strip() or None
        modified = _paths(_git(root, "diff", "HEAD", "--name-only", "-z"))
        untracked = _paths(_git(root, "ls-files", "--others", "--exclude-standard", "-z"))
        diff = None
        if modified:
            diff_file.parent.mkdir(parents=True, exist_ok=True)
            diff_file.write_bytes(_git(root, "diff", "HEAD", "--binary"))
            diff = DIFF_FILE
    except FileNotFoundError:
        return {"commit": None, "reason": "git is not installed, so the project's commit is unknown"}
    except subprocess.CalledProcessError as error:
        message = error.stderr.decode(errors="replace").strip()
        return {"commit": None, "reason": f"{root} is not a git checkout with a commit ({message})"}
    return {
        "commit": commit,
        "branch": branch,
        "dirty": bool(modified or untracked),
        "modified": modified,
        "untracked": untracked,
        "diff": diff,
    }


def _git(root: Path, *args: str) -> bytes:
    """The output of `git -C root args`; CalledProcessError when git fails. Takes no optional locks,
    so it never blocks git commands run in the same checkout at the same time."""
    environment = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
    return subprocess.run(
        ["git", "-C", str(root), *args],
        check=True,
        capture_output=True,
        env=environment,
        timeout=GIT_TIMEOUT_S,
    ).stdout


def _paths(output: bytes) -> list[str]:
    return [path for path in output.decode(errors="replace").split("\0") if path]


def package_versions() -> dict[str, str | None]:
    """Python's version and the installed version of each of DISTRIBUTIONS (None: not installed)."""
    versions = {"python": platform.python_version()}
    for name in DISTRIBUTIONS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def device_info(trainer: pl.Trainer) -> dict:
    """This machine (rank zero's, in a multi-node run): host, platform, CPU model, cores (all, and
    usable by this process), CUDA version and devices; and what `trainer` runs on."""
    cuda_count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    cuda_devices = [torch.cuda.get_device_name(index) for index in range(cuda_count)]
    return {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpu_cores_usable": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "cuda_version": torch.version.cuda,
        "cuda_device_count": len(cuda_devices),
        "cuda_devices": cuda_devices,
        "trainer": {
            "accelerator": type(trainer.accelerator).__name__,
            "strategy": type(trainer.strategy).__name__,
            "devices_per_node": trainer.num_devices,
            "nodes": trainer.num_nodes,
            "precision": trainer.precision,
        },
    }


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def run_data_fingerprints(
    run: RunDescription, datamodule: EmbeddingDataModule | ObjectivesDataModule
) -> dict:
    """`data_fingerprints` of `run`'s data; with several objectives, each one's under
    `objectives.<name>`."""
    if not run.objectives:
        return data_fingerprints(datamodule, run.data.evaluator_path)
    return {
        "objectives": {
            name: data_fingerprints(datamodule.datamodules[name], data.evaluator_path)
            for name, data in run.objectives.items()
        }
    }


def data_fingerprints(datamodule: EmbeddingDataModule, evaluator_file: str | None = None) -> dict:
    """Where the training and evaluation data came from, with row counts and content fingerprints
    of the rows as loaded and normalized (before stages that need the model, such as hard-negative
    mining). A retrieval split adds its corpus; an evaluator that reads a set of its own (no eval
    rows) is described by its `evaluator_file`; `eval` is None when nothing is evaluated, `train`
    when no training row was read (an evaluation that needs none)."""
    train_path, train_split = datamodule.train_source
    eval_path, eval_split = datamodule.eval_source
    data = datamodule.eval_data
    evaluation = None
    if data.rows is not None:
        evaluation = {"source": eval_path, "split": eval_split, **_rows(data.rows)}
        if data.retrieval is not None:
            ids = sorted(data.retrieval.corpus)
            evaluation["corpus"] = len(ids)
            evaluation["corpus_fingerprint"] = texts_fingerprint(ids, [data.retrieval.corpus[i] for i in ids])
    elif evaluator_file:
        evaluation = {"source": str(evaluator_file), "file_fingerprint": file_fingerprint(evaluator_file)}
    return {
        "train": None
        if datamodule.train_dataset is None
        else {"source": train_path, "split": train_split, **_rows(datamodule.train_dataset)},
        "eval": evaluation,
    }


def _rows(rows: datasets.Dataset) -> dict:
    return {"rows": len(rows), "columns": rows.column_names, "fingerprint": rows_fingerprint(rows)}
