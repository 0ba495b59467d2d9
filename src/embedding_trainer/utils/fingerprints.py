"""Short content fingerprints that key cached artefacts and record what a run used: of a model's
weights, of everything that decides a SentenceTransformer's embeddings, of texts, of rows and of files."""

import hashlib
import json
from pathlib import Path

import datasets
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.modules import Router


def model_fingerprint(model: torch.nn.Module) -> str:
    """16 hex digits from every weight's name, shape, dtype and bytes (all of them: one changed value
    changes it): two models with the same fingerprint have the same weights. Hashes at about
    1.5 GB/s on one CPU core (all-MiniLM-L6-v2: 0.06 s)."""
    return _state_fingerprint(model.state_dict())


def modules_fingerprint(modules: list[torch.nn.Module]) -> str:
    """`model_fingerprint` of a SentenceTransformer made of `modules` in this order (so of a plain
    SentenceTransformer's own modules, its `model_fingerprint`)."""
    return _state_fingerprint(
        {
            f"{index}.{name}": tensor
            for index, module in enumerate(modules)
            for name, tensor in module.state_dict().items()
        }
    )


def _state_fingerprint(state: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(state.items()):
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().reshape(-1).cpu().contiguous().view(torch.uint8).numpy())
    return digest.hexdigest()[:16]


def encoder_fingerprint(model: SentenceTransformer, task: str | None = None) -> str:
    """16 hex digits from everything that decides what `model.encode(..., task=task)` returns for a
    text: the weights, each module's class and configuration (a transformer's with its architecture
    config), the maximum sequence length, the tokenizer, the prompts, the default prompt name and
    `truncate_dim`. Equal fingerprints: the same embeddings, up to the device's arithmetic; a copy of
    a model saved and loaded elsewhere keeps its fingerprint.

    A model that routes by task (a `Router` module, as a query adapter's model has) counts only the
    modules `task` goes through (`route_modules`): its document route, made of the frozen model's own
    modules, fingerprints as that model, whose cached document embeddings it can read."""
    modules = route_modules(model, task)
    return settings_fingerprint(
        {
            "weights": modules_fingerprint(modules),
            "modules": [_module_settings(module) for module in modules],
            "max_seq_length": getattr(modules[0], "max_seq_length", None),
            "tokenizer": _tokenizer_settings(getattr(modules[0], "tokenizer", None)),
            "prompts": model.prompts,
            "default_prompt_name": model.default_prompt_name,
            "truncate_dim": model.truncate_dim,
        }
    )


def route_modules(model: SentenceTransformer, task: str | None = None) -> list[torch.nn.Module]:
    """The modules a text encoded with `task` (None: the model's default) goes through, in order: a
    `Router` replaced by the modules of the route it picks for text of that task."""
    modules = []
    for module in model:
        if isinstance(module, Router):
            modules.extend(module.sub_modules[module._resolve_route(task=task, modality="text")])
        else:
            modules.append(module)
    return modules


def _module_settings(module: torch.nn.Module) -> list:
    """A module's class, its sentence-transformers config and its Hugging Face architecture config
    (activation, layer norm epsilon...; None where it has none)."""
    architecture = getattr(module, "config", None)
    return [
        f"{type(module).__module__}.{type(module).__qualname__}",
        module.get_config_dict() if hasattr(module, "get_config_dict") else None,
        architecture.to_diff_dict() if hasattr(architecture, "to_diff_dict") else None,
    ]


def _tokenizer_settings(tokenizer) -> dict | None:
    """A tokenizer's vocabulary, normalizer and pre- and post-processing, without the truncation and
    padding state that each encode call sets; None without a tokenizer."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None if tokenizer is None else {"vocabulary": tokenizer.get_vocab()}
    state = json.loads(backend.to_str())
    return {key: value for key, value in state.items() if key not in ("truncation", "padding")}


def texts_fingerprint(*columns: list[str]) -> str:
    """16 hex digits from the texts of `columns`, in order."""
    digest = hashlib.sha256()
    for column in columns:
        for text in column:
            digest.update(text.encode("utf-8"))
            digest.update(b"\0")
        digest.update(b"\1")
    return digest.hexdigest()[:16]


def rows_fingerprint(rows: datasets.Dataset) -> str:
    """16 hex digits from the column names of `rows` and every value (as text), in order."""
    columns = rows.column_names
    return texts_fingerprint(columns, *((str(value) for value in rows[column]) for column in columns))


def file_fingerprint(path: str | Path) -> str:
    """16 hex digits from the bytes of the file at `path`, or of a folder's files (a retrieval folder):
    each file's path inside it and its bytes, in path order."""
    path = Path(path)
    if not path.is_dir():
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    digest = hashlib.sha256()
    for file in sorted(f for f in path.rglob("*") if f.is_file()):
        digest.update(file.relative_to(path).as_posix().encode("utf-8") + b"\0")
        digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()[:16]


def settings_fingerprint(settings: dict) -> str:
    """16 hex digits from a dict of settings (key order does not matter); values JSON cannot hold
    count by their `str`."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]
