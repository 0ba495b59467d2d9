"""scripts/bench/serve_load.py at tiny settings: `serve.py model=<a saved model folder>` starts as a
process, 4 clients load it on loopback with zero errors, and its vectors equal model.encode's."""

import json
import subprocess
import sys

import pytest

from embedding_trainer.models.loading import build_tiny_model
from embedding_trainer.settings.resolvers import PROJECT_ROOT

pytestmark = pytest.mark.slow  # two processes load a model: ~30 s on 2 cores


def test_the_load_benchmark_runs_against_serve_py_on_a_model_folder(tmp_path, model_cache):
    folder = tmp_path / "tiny_model"
    build_tiny_model(str(model_cache)).save(str(folder))
    command = [
        sys.executable,
        str(PROJECT_ROOT / "scripts" / "bench" / "serve_load.py"),
        "--model",
        str(folder),
    ]
    command += [
        "--texts",
        "24",
        "--clients",
        "4",
        "--per-request",
        "2",
        "--repeats",
        "2",
        "--max-seconds",
        "60",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=400, cwd=PROJECT_ROOT, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["errors"] == 0 and result["unsent"] == 0 and result["same_as_encode"]
    assert result["server_texts_per_s"]["min"] > 0 and result["encode_texts_per_s"]["min"] > 0
    assert result["p50_ms"]["median"] <= result["p99_ms"]["median"]
