"""Short content fingerprints that key cached artefacts and record what a run used: of a model's
weights, of texts, of rows and of files."""

import hashlib
import json
from pathlib import Path

import datasets
import torch

SAMPLED_VALUES = 4096  # of each weight tensor: a strided sample, so large models hash in seconds


def model_fingerprint(model: torch.nn.Module) -> str:
    """16 hex digits from every weight's name, shape, dtype and a strided sample of its values:
    two models with the same fingerprint are, for caching, the same model."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().reshape(-1)
        sample = flat[:: max(1, flat.numel() // SAMPLED_VALUES)].to("cpu", torch.float32)
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(sample.numpy().tobytes())
    return digest.hexdigest()[:16]


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
    return texts_fingerprint(columns, *([str(value) for value in rows[column]] for column in columns))


def file_fingerprint(path: str | Path) -> str:
    """16 hex digits from the bytes of the file at `path`."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def settings_fingerprint(settings: dict) -> str:
    """16 hex digits from a JSON-serialisable dict of settings (key order does not matter)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
